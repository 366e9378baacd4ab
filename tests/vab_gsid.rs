//! A Virtual A/B update whose COWs overflow `super`, with the COW images made through gsid
//! (`src/device/image_service.rs`) as on Android, over real RPC Binder against the stand-in
//! gsid (`common/gsid.rs`), which keeps real images (allocated, written, FIEMAP extents in
//! its `lp_metadata`). gsid refusing for want of room is 37 with gsid's words and nothing in
//! the target slot's metadata; with room, the images gsid was asked for have libsnapshot's
//! names, sizes (`cow_file_size`) and flags, were mapped, and each COW (its `-cow` partition,
//! lpunpack'd, then its image) is accepted by AOSP's `inspect_cow` and `applycow` makes the new
//! image from it; the merge after the reboot leaves the new images and has gsid remove every
//! image. The device directory has no `data/`: nothing went around gsid. abupdated with
//! `--gsid-binder` does the same for the updates it is ordered; a cancel has gsid remove the
//! images, and a new update an earlier one's.

mod common;
#[path = "common/gsid.rs"]
mod gsid;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abupdate::device::cow_image::image_name;
use abupdate::device::image_service::GsidImages;
use abupdate::engine::ApplyOptions;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::snapshot_state::OtaDir;
use abupdate::updater::Updater;
use abupdate::ErrorCode;
use common::vab::*;
use gsid::{Call, GsidStandIn};

const MIB: u64 = 1 << 20;

/// `fx`'s updater on slot `current`, its COW images made by `gsid`.
fn updater(fx: &Fixture, current: Slot, gsid: &GsidStandIn) -> Updater {
    let updater = fx.updater(current);
    let images = GsidImages::open(&gsid.transport()).unwrap();
    assert!(updater.device().set_image_service(Arc::new(images)));
    updater
}

fn apply(fx: &Fixture, gsid: &GsidStandIn) -> abupdate::Result<abupdate::updater::Outcome> {
    let options = ApplyOptions {
        threads: 2,
        ..common::unsigned_options()
    };
    updater(fx, Slot::A, gsid).apply(
        &mut Source::file(&fx.payload)?,
        &options,
        &abupdate::engine::Quiet,
    )
}

#[test]
fn cows_that_overflow_super_go_into_gsids_images_then_merge_and_are_removed() {
    let fx = Fixture::sized(0x0da7a, true, 8 * MIB);
    let gsid = GsidStandIn::start();

    // Room on gsid's /data for system_b's image (2.5 MiB) but not vendor_b's too (3.3 MiB):
    // 37 with gsid's words, the target metadata untouched.
    gsid.set_room(3 * MIB);
    let target_before = fx.metadata(Slot::B);
    let err = apply(&fx, &gsid).unwrap_err();
    assert_eq!(err.code, ErrorCode::SuperNoSpace, "{err}");
    assert!(err.message.contains("gsid:"), "{err}");
    assert!(err.message.contains("not enough free space"), "{err}");
    assert_eq!(fx.metadata(Slot::B), target_before, "nothing written");

    gsid.set_room(u64::MAX);
    let outcome = apply(&fx, &gsid).unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));
    assert!(!fx.dev.join("data").exists(), "an image went around gsid");
    let spaces = OtaDir::new(fx.ota()).snapshots().unwrap();
    let overflowing: Vec<_> = spaces.iter().filter(|s| s.cow_file_size > 0).collect();
    assert!(!overflowing.is_empty(), "no COW overflowed super");
    assert!(
        spaces
            .iter()
            .any(|s| s.cow_partition_size > 0 && s.cow_file_size > 0),
        "no COW is split between super and an image: {spaces:?}"
    );
    {
        let state = gsid.state();
        eprintln!("snapshots: {spaces:?}\ngsid's calls: {:?}", state.calls);
        for s in &overflowing {
            let image = image_name(&s.name);
            let created: Vec<_> = state
                .calls
                .iter()
                .filter_map(|c| match c {
                    Call::Create {
                        name,
                        size,
                        flags,
                        progress,
                    } if *name == image => Some((*size, *flags, *progress)),
                    _ => None,
                })
                .collect();
            // system_b's image, made in the refused run, is kept for the next; vendor_b's was
            // refused, then made.
            let times = if image.starts_with("system") { 1 } else { 2 };
            assert_eq!(created.len(), times, "{image}: {:?}", state.calls);
            for (size, flags, progress) in created {
                assert_eq!(size as u64, s.cow_file_size, "{image}");
                assert_eq!(flags, 0, "{image}: CREATE_IMAGE_DEFAULT");
                assert!(!progress);
            }
            assert!(
                state
                    .calls
                    .iter()
                    .any(|c| matches!(c, Call::Map(n, _) if *n == image)),
                "{image} was never mapped"
            );
            assert!(
                state.calls.contains(&Call::Unmap(image.clone())),
                "{image} was never unmapped"
            );
        }
        // The apply ends with every image unmapped, as update_engine's does
        // (UnmapAllSnapshots): the next boot maps them.
        assert!(state.mapped.is_empty(), "still mapped: {:?}", state.mapped);
    }

    let unpacked = fx.root.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    for (name, _, new) in &fx.images {
        let space = spaces
            .iter()
            .find(|s| s.name == format!("{name}_b"))
            .unwrap();
        let mut cow = Vec::new();
        if space.cow_partition_size > 0 {
            cow = std::fs::read(fx.lpunpack_cow(name, &unpacked)).unwrap();
        }
        if space.cow_file_size > 0 {
            let image = gsid.images.image_path(&image_name(&space.name));
            let bytes = std::fs::read(&image).unwrap();
            cow.extend_from_slice(&bytes[..space.cow_file_size as usize]);
        }
        let cow_path = fx.root.join(format!("{name}.cow"));
        std::fs::write(&cow_path, &cow).unwrap();
        fx.assert_aosp_reads_cow(name, &cow_path, new);
    }

    // The reboot into slot b: the merge reads the COWs through gsid's mappings, then has gsid
    // remove every image.
    let calls_before = gsid.state().calls.len();
    let after = updater(&fx, Slot::B, &gsid);
    after.mark_boot_successful().unwrap();
    after.finish_previous_update().unwrap();
    fx.assert_slot_b_new();
    assert!(gsid.state().calls[calls_before..].contains(&Call::RemoveAll));
    assert!(gsid.image_files().is_empty(), "{:?}", gsid.image_files());
    assert!(!gsid.images.metadata_path().exists());
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(!state.contains("state:"), "state is not None: {state}");
}

/// abupdated `--gsid-binder URI`: the daemon's updates make their COW images through gsid too.
/// The same overflow update, ordered with `abupdate apply` over the daemon's socket, leaves
/// both images in the stand-in gsid and none under the device directory.
#[test]
fn abupdated_makes_the_images_through_gsid_at_gsid_binder() {
    let fx = Fixture::sized(0x0da7a, true, 8 * MIB);
    let gsid = GsidStandIn::start();
    let socket = fx.root.join("abupdate.sock");
    let uri = format!("unix://{}?profile=android13plus", socket.display());
    let log_path = fx.root.join("abupdated.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_abupdated"))
        .args(["--binder", &uri, "--device"])
        .arg(&fx.dev)
        .args(["--allow-unsigned", "--state-dir"])
        .arg(fx.root.join("state"))
        .args(["--gsid-binder", &gsid.uri])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(socket.exists()
        && std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("serving abupdate")))
    {
        assert!(Instant::now() < deadline, "abupdated is not serving");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(["apply", "--wait"])
        .arg(&fx.payload)
        .env("ABUPDATE_BINDER", &uri)
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("through gsid at"), "{log}");
    let created: Vec<_> = gsid
        .state()
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Create { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        vec![image_name("system_b"), image_name("vendor_b")]
    );
    assert_eq!(gsid.image_files().len(), 2);
    assert!(!fx.dev.join("data").exists(), "an image went around gsid");
}

/// Through gsid too, a cancel (the old slot booted again) has gsid remove the images, and an
/// earlier update's image gsid still keeps is removed when a new update makes its own.
#[test]
fn a_cancel_has_gsid_remove_the_images_and_a_new_update_purges_stale_ones() {
    let fx = Fixture::sized(0xda7a_c0de, true, 8 * MIB);
    let gsid = GsidStandIn::start();
    apply(&fx, &gsid).unwrap();
    assert_eq!(gsid.image_files().len(), 2);
    let calls_before = gsid.state().calls.len();
    let updater = updater(&fx, Slot::A, &gsid);
    updater.with_boot(|b| b.set_active(Slot::A)).unwrap();
    updater.mark_boot_successful().unwrap();
    updater.finish_previous_update().unwrap();
    assert!(gsid.state().calls[calls_before..].contains(&Call::RemoveAll));
    assert!(gsid.image_files().is_empty(), "{:?}", gsid.image_files());
    for (name, old, _) in &fx.images {
        assert!(fx.read(name, Slot::A) == *old, "{name}_a changed");
    }

    // An image of another update that gsid keeps: the next update removes it first.
    GsidImages::open(&gsid.transport())
        .unwrap()
        .create("odm_b-cow-img", 4096)
        .unwrap();
    apply(&fx, &gsid).unwrap();
    let mut names = GsidImages::open(&gsid.transport()).unwrap().all().unwrap();
    names.sort();
    assert_eq!(names, vec![image_name("system_b"), image_name("vendor_b")]);
}
