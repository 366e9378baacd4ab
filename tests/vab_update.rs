//! Virtual A/B snapshot updates through the updater, on a host device directory with a real
//! `super.img` (`super_image::write`, byte-identical to lpmake's) and `ro.virtual_ab.enabled`:
//! a delta payload with compressed snapshots (COW v3, lz4, 64 KiB, `merge_operations`) is
//! written as COWs in `<name>_b-cow` partitions of super. AOSP's `lpdump` reads the target
//! slot's metadata (UPDATED partitions on the running slot's extents, the `cow` group and its
//! partitions); `protoc --decode` reads libsnapshot's state files with proto/snapshot.proto;
//! AOSP's `lpunpack` extracts each COW and `applycow` over the old image gives the new one.
//! After a simulated reboot into slot b and mark-successful, the merge (`abupdate merge`,
//! killed with `kill -9` at random points) leaves the new images in place, the cow partitions
//! gone and the state None. Booting the old slot again instead cancels the update.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use abupdate::device::cow_image::ImageDir;
use abupdate::engine::ApplyOptions;
use abupdate::lp;
use abupdate::payload::Vabc;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::snapshot_state::OtaDir;
use abupdate::ErrorCode;
use common::vab::*;

#[test]
fn snapshot_update_writes_cows_in_super_then_merges_after_the_reboot() {
    let fx = Fixture::new(0x0ab_5eed, true);
    let super_before = std::fs::read(fx.super_img()).unwrap();
    let source_before = fx.metadata(Slot::A);
    let outcome = fx.apply().unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));

    // The target metadata as lpdump reads it: UPDATED partitions on slot a's extents, the cow
    // group with one COW partition per snapshot.
    let dump = run(Command::new(tool("lpdump"))
        .arg("--slot=1")
        .arg(fx.super_img()));
    for name in ["system", "vendor"] {
        let block = dump
            .split("Name: ")
            .find(|b| b.starts_with(&format!("{name}_b\n")))
            .unwrap_or_else(|| panic!("no {name}_b in\n{dump}"));
        assert!(block.contains("readonly,updated"), "{block}");
        assert!(block.contains("Group: main_b"), "{block}");
        let cow = dump
            .split("Name: ")
            .find(|b| b.starts_with(&format!("{name}_b-cow\n")))
            .unwrap_or_else(|| panic!("no {name}_b-cow in\n{dump}"));
        assert!(cow.contains("Group: cow"), "{cow}");
    }
    assert!(!dump.contains("Name: system_a\n"), "{dump}");
    let target = fx.metadata(Slot::B);
    for (name, old, _) in &fx.images {
        let t = target.partition(&format!("{name}_b")).unwrap();
        let s = source_before.partition(&format!("{name}_a")).unwrap();
        // The base: slot a's extent, grown in place (or followed by new ones).
        let (te, se) = (target.extents_of(t)[0], source_before.extents_of(s)[0]);
        assert_eq!(te.target, se.target);
        assert!(te.num_sectors >= se.num_sectors);
        assert!(target.partition_size(t) > old.len() as u64);
    }
    // The running slot's metadata and partitions are untouched.
    assert_eq!(fx.metadata(Slot::A), source_before);
    for (name, old, _) in &fx.images {
        assert!(fx.read(name, Slot::A) == *old, "{name}_a changed");
    }
    let region = source_before.geometry().primary_offset(0).unwrap() as usize;
    let len = source_before.geometry().metadata_max_size as usize;
    let super_after = std::fs::read(fx.super_img()).unwrap();
    assert_eq!(
        super_after[region..region + len],
        super_before[region..region + len]
    );

    // libsnapshot's state, read with its own schema.
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(state.contains("state: Unverified"), "{state}");
    // What libsnapshot records of the running build at Initiated (CreateUpdateSnapshots) and
    // carries over: its fingerprint, and io_uring for the snapuserd init starts. Checked by
    // AOSP's field numbers (snapshot.proto: source_build_fingerprint = 8,
    // io_uring_enabled = 10), not through our copy of the schema.
    let raw = decode_raw(&fx.ota().join("state"));
    assert!(raw.contains(&format!("8: \"{FINGERPRINT}\"")), "{raw}");
    assert!(raw.contains("10: 1"), "{raw}");
    assert!(!raw.contains("12: "), "o_direct is not enabled: {raw}");
    assert_eq!(
        std::fs::read_to_string(fx.ota().join("snapshot-boot")).unwrap(),
        "_a"
    );
    assert_eq!(
        misc_status(&fx),
        Some((2, 0)),
        "misc: SNAPSHOTTED from slot a"
    );

    // Each COW, out of super with lpunpack: AOSP's reader accepts it and, over the old image,
    // makes the new one.
    let unpacked = fx.root.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    for (name, _, new) in &fx.images {
        let status = decode(
            "SnapshotStatus",
            &fx.ota().join(format!("snapshots/{name}_b")),
        );
        for want in [
            format!("name: \"{name}_b\""),
            "state: CREATED".to_string(),
            format!("device_size: {}", new.len()),
            "compression_algorithm: \"lz4\"".to_string(),
            "compression_factor: 65536".to_string(),
            // libsnapshot's kReadAheadSizeKb: the fixture sets no ro.virtual_ab.read_ahead_size.
            "read_ahead_size: 32".to_string(),
        ] {
            assert!(status.contains(&want), "{want} not in {status}");
        }
        let cow = fx.lpunpack_cow(name, &unpacked);
        fx.assert_aosp_reads_cow(name, &cow, new);
    }

    // Another update before the merge: 39, nothing written.
    let err = fx.apply().unwrap_err();
    assert_eq!(err.code, ErrorCode::MergePending, "{err}");

    // The reboot into slot b, marked successful; the merge killed at random points within
    // the time a clean merge of a copy of the device takes.
    // Booted into slot b but not yet marked successful: no merge (the update is still
    // pending, which the command reports as its failure).
    let out = fx.merge_cmd().output().unwrap();
    assert!(!out.status.success());
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(state.contains("state: Unverified"), "{state}");
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
    fx.updater(Slot::B).mark_boot_successful().unwrap();
    // A kill that left a merge checkpoint behind: the next run resumes from it.
    // A merge killed after its end is run again: it has nothing left to do.
    let (kills, mid_merge, full) =
        fx.kill_until_done(merge_cmd, || false, "metadata/ota/merge", 0x9_e7e);
    eprintln!("merged after {kills} kills, {mid_merge} in the merge; a clean merge: {full} ms");
    fx.assert_slot_b_new();
    let meta = fx.metadata(Slot::B);
    assert!(meta.groups().iter().all(|g| g.name != lp::COW_GROUP));
    assert!(meta.partition("system_b-cow").is_none());
    assert_eq!(
        meta.partition("system_b").unwrap().attributes,
        lp::ATTR_READONLY
    );
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(!state.contains("state:"), "state is not None: {state}");
    assert!(!fx.ota().join("snapshot-boot").exists());
    assert!(std::fs::read_dir(fx.ota().join("snapshots"))
        .unwrap()
        .next()
        .is_none());
    assert_eq!(misc_status(&fx), Some((0, 1)));
    // Merged: running it again has nothing to do.
    run(&mut fx.merge_cmd());
    for (name, _, new) in &fx.images {
        assert!(fx.read(name, Slot::B)[..new.len()] == new[..]);
    }
}

/// A snapshot payload with a physical partition (vbmeta) on a device with AVB: vbmeta is written
/// in place, the pre-switch check reads the new hashes against the snapshots (base plus COW;
/// the base extents still hold the old images), and the slot is switched to.
#[test]
fn avb_checks_a_snapshot_update_through_its_snapshots() {
    let fx = Fixture::with_avb(0x0ab_a7b, true, true);
    let outcome = fx.apply().unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));
    let target = fx.metadata(Slot::B);
    assert!(target.partition("vbmeta_b-cow").is_none());
    assert!(target.partition("system_b-cow").is_some());
    let new_vbmeta = std::fs::read(fx.root.join("vbmeta.img")).unwrap();
    assert!(std::fs::read(fx.dev.join("vbmeta_b.img")).unwrap() == new_vbmeta);
    fx.merge_after_reboot();
}

#[test]
fn an_update_applied_but_not_switched_to_is_started_over() {
    let fx = Fixture::new(0x0ab_5117, true);
    let mut options = ApplyOptions {
        threads: 2,
        ..common::unsigned_options()
    };
    options.properties.switch_slot_on_reboot = false;
    let apply = |options: &ApplyOptions| {
        fx.updater(Slot::A).apply(
            &mut Source::file(&fx.payload).unwrap(),
            options,
            &abupdate::engine::Quiet,
        )
    };
    assert_eq!(apply(&options).unwrap().switched_to, None);
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(state.contains("state: Unverified"), "{state}");
    // Not switched to, as a kill before the switch leaves it: libsnapshot's BeginUpdate
    // cancels it, and the update is made again (not refused with 39).
    options.properties.switch_slot_on_reboot = true;
    assert_eq!(apply(&options).unwrap().switched_to, Some(Slot::B));
    // Switched to: it waits for the reboot and the merge.
    assert_eq!(apply(&options).unwrap_err().code, ErrorCode::MergePending);
    fx.merge_after_reboot();
}

/// `abupdate apply --device DEV` of `payload`, checkpointing every few ms.
/// `super` too small for the COWs: what does not fit goes into images on the device
/// directory's `data/` (libfiemap's "ota" images), recorded in `metadata/gsi/ota/lp_metadata`,
/// which AOSP's `lpdump` reads. Each COW (its `-cow` partition, lpunpack'd, then its image)
/// is accepted by `inspect_cow` and `applycow` makes the new image from it; after the reboot
/// the merge leaves the new images, and the images and their metadata are gone. Without
/// `data/` (no room anywhere) the update is refused with 37 before anything is written.
#[test]
fn cows_that_overflow_super_go_into_images_on_data_then_merge_and_are_removed() {
    let fx = Fixture::sized(0x0da7a, true, 8 * MIB);
    let target_before = fx.metadata(Slot::B);
    let err = fx.apply().unwrap_err();
    assert_eq!(err.code, ErrorCode::SuperNoSpace, "{err}");
    assert!(err.to_string().contains("no data partition"), "{err}");
    assert_eq!(fx.metadata(Slot::B), target_before, "nothing written");

    std::fs::create_dir(fx.dev.join("data")).unwrap();
    let outcome = fx.apply().unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));
    let spaces = OtaDir::new(fx.ota()).snapshots().unwrap();
    let images_dir = fx.dev.join("data/gsi/ota");
    let lp_metadata = fx.dev.join("metadata/gsi/ota/lp_metadata");
    // AOSP's reader of liblp image files.
    let dump = run(Command::new(tool("lpdump")).arg(&lp_metadata));
    eprintln!("{dump}");
    let unpacked = fx.root.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let mut in_super_only = 0;
    for (name, _, new) in &fx.images {
        let space = spaces
            .iter()
            .find(|s| s.name == format!("{name}_b"))
            .unwrap();
        let status = decode(
            "SnapshotStatus",
            &fx.ota().join(format!("snapshots/{name}_b")),
        );
        assert!(
            status.contains(&format!("cow_file_size: {}", space.cow_file_size)),
            "{status}"
        );
        let image = images_dir.join(format!("{name}_b-cow-img.img"));
        let mut cow = Vec::new();
        if space.cow_partition_size > 0 {
            cow = std::fs::read(fx.lpunpack_cow(name, &unpacked)).unwrap();
            assert_eq!(cow.len() as u64, space.cow_partition_size);
        }
        if space.cow_file_size == 0 {
            in_super_only += 1;
            assert!(!image.exists());
        } else {
            assert!(
                dump.contains(&format!("{name}_b-cow-img")),
                "{name}'s image is not in lp_metadata:\n{dump}"
            );
            let bytes = std::fs::read(&image).unwrap();
            cow.extend_from_slice(&bytes[..space.cow_file_size as usize]);
        }
        let cow_path = fx.root.join(format!("{name}.cow"));
        std::fs::write(&cow_path, &cow).unwrap();
        fx.assert_aosp_reads_cow(name, &cow_path, new);
    }
    assert!(in_super_only < fx.images.len(), "no COW overflowed super");
    assert!(
        spaces
            .iter()
            .any(|s| s.cow_partition_size > 0 && s.cow_file_size > 0),
        "no COW is split between super and an image: {spaces:?}"
    );

    fx.merge_after_reboot();
    assert!(!lp_metadata.exists(), "the image metadata is left");
    assert_eq!(std::fs::read_dir(&images_dir).unwrap().count(), 0);
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(!state.contains("state:"), "state is not None: {state}");
}

fn apply_cmd(payload: &Path, dev: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_abupdate"));
    c.arg("apply")
        .arg("--device")
        .arg(dev)
        .args([
            "--allow-unsigned",
            "--threads",
            "2",
            "--checkpoint-interval-ms",
            "5",
        ])
        .arg(payload)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn kill_9_while_writing_cows_in_super_resumes_to_the_new_images() {
    let fx = Fixture::new(0x0ab_4111, true);
    // Killed after the snapshots were created: the next run resumes their COWs, reopened from
    // the labels in the -cow partitions.
    // A run killed after the slot switch had applied the update: another is refused (39)
    // until the reboot, as the update waits for its merge.
    let apply = |dev: &Path| apply_cmd(&fx.payload, dev);
    let switched = || fx.updater(Slot::A).with_boot(|b| b.active_slot()).unwrap() == Slot::B;
    let (kills, mid_update, full) =
        fx.kill_until_done(apply, switched, "metadata/ota/state", 0x4111_c0de);
    eprintln!("applied after {kills} kills, {mid_update} in the update; a clean run: {full} ms");
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(state.contains("state: Unverified"), "{state}");
    for (name, old, _) in &fx.images {
        assert!(fx.read(name, Slot::A) == *old, "{name}_a changed");
    }
    // The COWs the resumed runs finished merge into the new images.
    fx.merge_after_reboot();
}

/// The same with COWs overflowing into images on `data/`: a killed run keeps the images it
/// made (their COW is resumed from its labels), and the merge gives the new images and removes
/// the images.
#[test]
fn kill_9_while_writing_cows_into_images_on_data_resumes_to_the_new_images() {
    let fx = Fixture::sized(0xda7a_4111, true, 8 * MIB);
    std::fs::create_dir(fx.dev.join("data")).unwrap();
    let apply = |dev: &Path| apply_cmd(&fx.payload, dev);
    let switched = || fx.updater(Slot::A).with_boot(|b| b.active_slot()).unwrap() == Slot::B;
    let (kills, mid_update, full) =
        fx.kill_until_done(apply, switched, "metadata/gsi/ota/lp_metadata", 0xda7a_c0de);
    eprintln!("applied after {kills} kills, {mid_update} with images made; a clean run: {full} ms");
    let spaces = OtaDir::new(fx.ota()).snapshots().unwrap();
    assert!(spaces.iter().any(|s| s.cow_file_size > 0), "{spaces:?}");
    fx.merge_after_reboot();
    assert!(!fx.dev.join("metadata/gsi/ota/lp_metadata").exists());
}

#[test]
fn booting_the_old_slot_again_cancels_the_snapshot_update() {
    let fx = Fixture::new(0x0ab_c0de, true);
    let super_img = fx.super_img();
    fx.apply().unwrap();
    let base_extents: Vec<u8> = std::fs::read(&super_img).unwrap();
    // The bootloader fell back to slot a: slot a is active and runs again.
    let updater = fx.updater(Slot::A);
    updater.with_boot(|b| b.set_active(Slot::A)).unwrap();
    updater.mark_boot_successful().unwrap();
    updater.finish_previous_update().unwrap();

    let meta = fx.metadata(Slot::B);
    assert!(meta.partition("system_b-cow").is_none());
    assert!(meta.groups().iter().all(|g| g.name != lp::COW_GROUP));
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(!state.contains("state:"), "state is not None: {state}");
    assert!(!fx.ota().join("snapshot-boot").exists());
    assert!(!updater.with_boot(|b| b.is_bootable(Slot::B)).unwrap());
    assert_eq!(updater.with_boot(|b| b.active_slot()).unwrap(), Slot::A);
    assert_eq!(misc_status(&fx).map(|s| s.0), Some(0));
    // No base data touched: slot a reads as before, and only metadata changed in super.
    for (name, old, _) in &fx.images {
        assert!(fx.read(name, Slot::A) == *old, "{name}_a changed");
    }
    let after = std::fs::read(&super_img).unwrap();
    let end = fx
        .metadata(Slot::A)
        .geometry()
        .total_metadata_size()
        .unwrap() as usize;
    assert!(after[end..] == base_extents[end..], "extents written");
    // A new update can start; a reset before its reboot cancels it too.
    fx.apply().unwrap();
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
    updater.reset().unwrap();
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_none());
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(!state.contains("state:"), "state is not None: {state}");
    assert_eq!(updater.with_boot(|b| b.active_slot()).unwrap(), Slot::A);
}

/// COW images go with a cancel (the old slot booted again, or a reset before the reboot), and
/// an earlier update's images left on `data/` are removed when a new update makes its own.
#[test]
fn cancelling_an_update_with_cow_images_removes_them() {
    let fx = Fixture::sized(0xda7a_c0de, true, 8 * MIB);
    std::fs::create_dir(fx.dev.join("data")).unwrap();
    let lp_metadata = fx.dev.join("metadata/gsi/ota/lp_metadata");
    let images_dir = fx.dev.join("data/gsi/ota");
    fx.apply().unwrap();
    assert!(lp_metadata.exists());
    let updater = fx.updater(Slot::A);
    updater.with_boot(|b| b.set_active(Slot::A)).unwrap();
    updater.mark_boot_successful().unwrap();
    updater.finish_previous_update().unwrap();
    assert!(
        !lp_metadata.exists(),
        "image metadata left after the cancel"
    );
    assert_eq!(std::fs::read_dir(&images_dir).unwrap().count(), 0);
    for (name, old, _) in &fx.images {
        assert!(fx.read(name, Slot::A) == *old, "{name}_a changed");
    }

    // An image of another update, recorded: the next update removes it.
    let images = ImageDir::new(
        &fx.dev.join("metadata/gsi/ota"),
        &images_dir,
        &fx.dev.join("data"),
    );
    images.create("odm_b-cow-img", 4096).unwrap();
    fx.apply().unwrap();
    let recorded = images.metadata().unwrap().unwrap();
    let names: Vec<_> = recorded
        .partitions()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert!(!names.contains(&"odm_b-cow-img"), "{names:?}");
    assert!(names.contains(&"vendor_b-cow-img"), "{names:?}");
    assert!(!images.image_path("odm_b-cow-img").exists());
    updater.reset().unwrap();
    assert!(!lp_metadata.exists(), "image metadata left after the reset");
    assert_eq!(std::fs::read_dir(&images_dir).unwrap().count(), 0);
}

#[test]
fn a_snapshot_payload_on_a_device_without_virtual_ab_takes_the_plain_path() {
    let fx = Fixture::new(0x0ab_0ff, false);
    fx.apply().unwrap();
    let target = fx.metadata(Slot::B);
    let source = fx.metadata(Slot::A);
    for (name, _, new) in &fx.images {
        let p = target.partition(&format!("{name}_b")).unwrap();
        assert_eq!(p.attributes, lp::ATTR_READONLY);
        let s = source.partition(&format!("{name}_a")).unwrap();
        assert_ne!(target.extents_of(p)[0], source.extents_of(s)[0]);
        assert!(fx.read(name, Slot::B)[..new.len()] == new[..]);
    }
    assert!(target.groups().iter().all(|g| g.name != lp::COW_GROUP));
    assert!(!fx.ota().exists());
}

/// Each COW of the update, out of super with lpunpack: AOSP's `inspect_cow` accepts it (its
/// merge sequence consistent) and `applycow` over the old image makes the new one. Returns
/// the COWs' versions.
fn check_cows_with_aosp(fx: &Fixture) -> Vec<u16> {
    let unpacked = fx.root.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let mut versions = Vec::new();
    for (name, _, new) in &fx.images {
        let cow = fx.lpunpack_cow(name, &unpacked);
        // The header: the magic (8 bytes), then the major version.
        let bytes = std::fs::read(&cow).unwrap();
        versions.push(u16::from_le_bytes([bytes[8], bytes[9]]));
        fx.assert_aosp_reads_cow(name, &cow, new);
    }
    versions
}

/// An Android 13/14 payload (COW v2, gz) on a Virtual A/B device takes the snapshot path:
/// v2 COWs in super, which AOSP's tools read as the new images, recorded as gz snapshots;
/// the merge after the reboot gives the new images.
#[test]
fn a_cow_v2_gz_update_writes_v2_cows_then_merges() {
    let fx = Fixture::v2(0x2_c0f);
    let outcome = fx.apply().unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
    for (name, old, _) in &fx.images {
        assert!(fx.read(name, Slot::A) == *old, "{name}_a changed");
        let status = decode(
            "SnapshotStatus",
            &fx.ota().join(format!("snapshots/{name}_b")),
        );
        assert!(status.contains("compression_algorithm: \"gz\""), "{status}");
    }
    assert_eq!(check_cows_with_aosp(&fx), vec![2; fx.images.len()]);
    fx.merge_after_reboot();
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_none());
}

/// `kill -9` while writing v2 COWs: each resumed run reopens them at the label of its
/// checkpoint (from their op streams), and the COWs AOSP's tools read and the merge give the
/// new images.
#[test]
fn kill_9_while_writing_v2_cows_resumes_to_the_new_images() {
    let fx = Fixture::v2(0x2_4111);
    let apply = |dev: &Path| apply_cmd(&fx.payload, dev);
    let switched = || fx.updater(Slot::A).with_boot(|b| b.active_slot()).unwrap() == Slot::B;
    let (kills, mid_update, full) =
        fx.kill_until_done(apply, switched, "metadata/ota/state", 0x2_c0de);
    eprintln!("applied after {kills} kills, {mid_update} in the update; a clean run: {full} ms");
    assert!(mid_update > 0, "no kill came while the COWs were written");
    let state = decode("SnapshotUpdateStatus", &fx.ota().join("state"));
    assert!(state.contains("state: Unverified"), "{state}");
    assert_eq!(check_cows_with_aosp(&fx), vec![2; fx.images.len()]);
    fx.merge_after_reboot();
}

/// A compressed-snapshot payload without a `cow_version` on a Virtual A/B device: libsnapshot
/// refuses such an update (no default version), so it is not written as snapshots; it takes
/// the dynamic-partitions path (the target slot's own extents).
#[test]
fn a_vabc_payload_without_cow_version_takes_the_plain_path() {
    let vabc = Vabc {
        enabled: true,
        compression_param: Some("gz".into()),
        cow_version: None,
        ..Vabc::default()
    };
    let fx = Fixture::build_with(0x0ab_0c0, true, 40 * MIB, false, vabc);
    fx.apply().unwrap();
    let target = fx.metadata(Slot::B);
    let source = fx.metadata(Slot::A);
    for (name, _, new) in &fx.images {
        let p = target.partition(&format!("{name}_b")).unwrap();
        let s = source.partition(&format!("{name}_a")).unwrap();
        assert_ne!(target.extents_of(p)[0], source.extents_of(s)[0]);
        assert!(fx.read(name, Slot::B)[..new.len()] == new[..]);
    }
    assert!(target.groups().iter().all(|g| g.name != lp::COW_GROUP));
    assert!(!fx.ota().join("snapshots").exists());
}

/// A snapshot payload whose `system` has a postinstall program. Where no nbd device can serve
/// the snapshots' views for it (here an empty sysfs; so on Android), the path choice keeps
/// the dynamic-partitions path as before: the target's own extents, no COW, no snapshot
/// state. Where one is listed, it takes the snapshot path, and postinstall serves `system_b`'s
/// view: the listed device is no device here, so the program cannot run: 44, the slot not
/// switched, the snapshots left Initiated (update_engine finishes the snapshot writes only
/// once postinstall passed), no postinstall record. (The images are not file systems: the
/// dynamic path's mount fails with 44 too; tests/vm/vab_postinstall.sh runs the program.)
#[test]
fn a_snapshot_payload_with_postinstall_takes_the_snapshot_path_only_where_views_can_be_served() {
    let sys = tempfile::tempdir().unwrap();
    let apply = |fx: &Fixture| {
        let mut updater = fx.updater(Slot::A);
        updater.set_postinstall(abupdate::postinstall::Config {
            nbd_sys: Some(sys.path().to_owned()),
            ..abupdate::postinstall::Config::default()
        });
        let options = ApplyOptions {
            threads: 2,
            ..common::unsigned_options()
        };
        let mut source = Source::file(&fx.payload).unwrap();
        updater
            .apply(&mut source, &options, &abupdate::engine::Quiet)
            .unwrap_err()
    };
    let active = |fx: &Fixture| fx.updater(Slot::A).with_boot(|b| b.active_slot()).unwrap();

    let fx = Fixture::with_postinstall(0x0ab_9051);
    let err = apply(&fx);
    assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
    let target = fx.metadata(Slot::B);
    let source = fx.metadata(Slot::A);
    let (t, s) = (
        target.partition("system_b").unwrap(),
        source.partition("system_a").unwrap(),
    );
    assert_ne!(target.extents_of(t)[0], source.extents_of(s)[0]);
    assert!(target.groups().iter().all(|g| g.name != lp::COW_GROUP));
    assert!(!fx.ota().join("snapshots").exists());
    assert_eq!(active(&fx), Slot::A);

    // A listed nbd device whose node does not exist.
    std::fs::create_dir(sys.path().join("nbd999")).unwrap();
    std::fs::write(sys.path().join("nbd999/size"), "0\n").unwrap();
    let fx = Fixture::with_postinstall(0x0ab_9052);
    let err = apply(&fx);
    assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
    assert!(err.message.contains("nbd999"), "{err}");
    let target = fx.metadata(Slot::B);
    let t = target.partition("system_b").unwrap();
    let s = fx.metadata(Slot::A);
    let s = s.partition("system_a").unwrap();
    assert_eq!(t.attributes & lp::ATTR_UPDATED, lp::ATTR_UPDATED);
    // The base: slot a's extent, grown in place.
    assert_eq!(
        target.extents_of(t)[0].target,
        fx.metadata(Slot::A).extents_of(s)[0].target
    );
    assert!(target.partition("system_b-cow").is_some());
    let ota = OtaDir::new(fx.ota());
    assert_eq!(
        ota.state().unwrap(),
        Some(abupdate::updater::ota_state::UpdateState::Initiated)
    );
    assert_eq!(ota.boot_indicator().unwrap(), None);
    assert_eq!(active(&fx), Slot::A);
    assert!(!fx.dev.join("state/postinstall").exists());
}
