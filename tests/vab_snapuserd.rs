//! The Virtual A/B merge asked of snapuserd, as libsnapshot asks it on Android, against a
//! stand-in daemon (tests/common/snapuserd.rs: AOSP's control protocol on a unix socket, the
//! merge itself done by AOSP's `applycow --mode merge` from the COWs the update wrote, written
//! over the bases in `super.img` in steps). A host has no dm-user, so the stand-in is what
//! answers; what is proven is our side: the requests, the polling, the state files, the
//! cleanup, and that we never write a base ourselves when the daemon merges.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abupdate::device::LogicalMapper;
use abupdate::lp::{self, ExtentTarget};
use abupdate::slot::Slot;
use abupdate::snapuserd::Config;
use abupdate::updater::Updater;
use abupdate::ErrorCode;
use common::snapuserd::{Handler, Mode, StandIn};
use common::vab::*;
use common::Rng;

/// The fixture applied, rebooted into slot b and marked successful: waiting for its merge.
fn applied(seed: u64) -> Fixture {
    let fx = Fixture::new(seed, true);
    assert_eq!(fx.apply().unwrap().switched_to, Some(Slot::B));
    fx.updater(Slot::B).mark_boot_successful().unwrap();
    fx
}

/// What the daemon serves: each snapshot's base through its extents in `super.img` (slot b's
/// metadata) and its COW, out of super with AOSP's lpunpack.
fn handlers(fx: &Fixture) -> Vec<Handler> {
    let meta = fx.metadata(Slot::B);
    let unpacked = fx.root.join("cows");
    std::fs::create_dir_all(&unpacked).unwrap();
    fx.images
        .iter()
        .map(|(name, _, new)| {
            let part = meta.partition(&format!("{name}_b")).unwrap();
            let extents = meta
                .extents_of(part)
                .iter()
                .map(|e| match e.target {
                    ExtentTarget::Linear {
                        physical_sector, ..
                    } => (physical_sector * 512, e.num_sectors * 512),
                    ExtentTarget::Zero => panic!("zero extent"),
                })
                .collect();
            let cow = fx.lpunpack_cow(name, &unpacked);
            Handler {
                name: format!("{name}_b"),
                file: fx.super_img(),
                extents,
                cow,
                size: new.len() as u64,
            }
        })
        .collect()
}

/// The stand-in's socket where a host device directory's updater looks for it.
fn socket(fx: &Fixture) -> PathBuf {
    fx.dev.join("dev/socket/snapuserd")
}

fn start(fx: &Fixture, mode: Mode) -> StandIn {
    StandIn::start(
        &socket(fx),
        &fx.root.join("standin"),
        handlers(fx),
        mode,
        &[],
    )
}

/// Quick timeouts, quick polls.
fn quick(fx: &Fixture) -> Config {
    Config {
        connect_timeout: Duration::from_millis(300),
        reply_timeout: Duration::from_millis(300),
        poll_interval: Duration::from_millis(20),
        ..Config::at(socket(fx))
    }
}

fn state(fx: &Fixture) -> String {
    decode("SnapshotUpdateStatus", &fx.ota().join("state"))
}

fn assert_new(fx: &Fixture) {
    for (name, _, new) in &fx.images {
        assert!(fx.read(name, Slot::B)[..new.len()] == new[..], "{name}_b");
    }
}

fn assert_old(fx: &Fixture) {
    for (name, old, _) in &fx.images {
        assert!(
            fx.read(name, Slot::B)[..old.len()] == old[..],
            "{name}_b written"
        );
    }
}

fn assert_cleaned(fx: &Fixture) {
    let meta = fx.metadata(Slot::B);
    assert!(meta.groups().iter().all(|g| g.name != lp::COW_GROUP));
    assert!(meta.partition("system_b-cow").is_none());
    assert!(!state(fx).contains("state:"), "state is not None");
    assert!(!fx.ota().join("snapshot-boot").exists());
    assert!(std::fs::read_dir(fx.ota().join("snapshots"))
        .unwrap()
        .next()
        .is_none());
    assert_eq!(vab_misc(fx), Some((0, 1)));
}

fn vab_misc(fx: &Fixture) -> Option<(u8, u8)> {
    abupdate::boot_control::vab_message::read(&fx.dev.join("misc.img")).unwrap()
}

#[test]
fn the_merge_is_asked_of_snapuserd_and_ends_with_the_new_images_and_no_state() {
    let fx = applied(0x5a_0001);
    let daemon = start(&fx, Mode::Normal);
    let mut updater = fx.updater(Slot::B);
    updater.set_snapuserd(Some(quick(&fx)));
    let mut seen = Vec::new();
    let t = Instant::now();
    updater
        .finish_previous_update_with(&mut |p| seen.push(p))
        .unwrap();
    eprintln!("merged through the stand-in in {:?}", t.elapsed());
    assert_new(&fx);
    assert_cleaned(&fx);
    for h in ["system_b", "vendor_b"] {
        assert_eq!(daemon.initiated(h), 1, "{h}");
        assert!(daemon.complete(h), "{h}");
    }
    assert!(detached_soon(&daemon), "no detach after the merge");
    // The progress is the daemon's merge_percent, then 1.
    assert_eq!(seen.last(), Some(&1.0));
    assert!(seen.iter().any(|p| *p > 0.0 && *p < 1.0), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    // Done: running it again has nothing to do.
    updater.finish_previous_update().unwrap();
    assert_new(&fx);
}

#[test]
fn a_merge_snapuserd_fails_or_refuses_is_merge_failed_and_we_write_no_base() {
    let fx = applied(0x5a_0002);
    let config = quick(&fx);
    let mut updater = fx.updater(Slot::B);
    updater.set_snapuserd(Some(config));
    for (mode, says) in [
        (Mode::MergeFails, "reports that merging"),
        (Mode::Refuses, "refused to merge"),
    ] {
        let daemon = start(&fx, mode);
        let err = updater.finish_previous_update().unwrap_err();
        assert_eq!(err.code, ErrorCode::InstallFailed, "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(state(&fx).contains("state: MergeFailed"), "{}", state(&fx));
        assert_old(&fx);
        assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
        daemon.stop();
    }
    // MergeFailed is polled again: a daemon that merges finishes it (the snapshots marked
    // MERGING are resumed with initiate_merge).
    let daemon = start(&fx, Mode::Normal);
    updater.finish_previous_update().unwrap();
    assert_new(&fx);
    assert_cleaned(&fx);
    assert!(daemon.initiated("system_b") >= 1);
}

#[test]
fn a_daemon_that_hangs_hangs_up_or_answers_garbage_gives_an_error_not_a_hang() {
    let fx = applied(0x5a_0003);
    let mut updater = fx.updater(Slot::B);
    updater.set_snapuserd(Some(quick(&fx)));
    for (mode, says) in [
        (Mode::Garbage, "snapuserd answered getstatus with"),
        (Mode::Disconnects, "closed the connection"),
        (Mode::Hangs, "did not answer"),
    ] {
        let daemon = start(&fx, mode);
        let t = Instant::now();
        let err = updater.finish_previous_update().unwrap_err();
        eprintln!("{mode:?}: {err} after {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(10), "{mode:?}");
        assert_eq!(err.code, ErrorCode::DeviceError, "{err}");
        assert!(err.to_string().contains(says), "{mode:?}: {err}");
        assert!(state(&fx).contains("state: MergeFailed"));
        assert_old(&fx);
        daemon.stop();
    }
    // No daemon at all, once the merge began through one: an error, not our own merge.
    let t = Instant::now();
    let err = updater.finish_previous_update().unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_old(&fx);
    let _daemon = start(&fx, Mode::Normal);
    updater.finish_previous_update().unwrap();
    assert_new(&fx);
    assert_cleaned(&fx);
}

/// `abupdate merge --device DEV` on slot b (the daemon found at `DEV/dev/socket/snapuserd`).
fn merge_process(dev: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_abupdate"));
    c.args(["merge", "--current-slot", "b", "--device"])
        .arg(dev)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn kill_9_of_our_merge_mid_merge_then_a_rerun_polls_the_same_merge_to_its_end() {
    let fx = applied(0x5a_0004);
    let daemon = StandIn::start_with(
        &socket(&fx),
        &fx.root.join("standin"),
        handlers(&fx),
        Mode::Normal,
        &[],
        Duration::from_millis(200),
    );
    let mut rng = Rng(0x5a_4111);
    let (mut kills, mut mid) = (0, 0);
    loop {
        let child = merge_process(&fx.dev).spawn().unwrap();
        match common::kill_after(child, Duration::from_millis(200 + rng.below(1200))) {
            None => {
                kills += 1;
                if daemon.initiated("system_b") == 1 && !daemon.complete("system_b") {
                    mid += 1;
                }
            }
            Some(out) => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break;
            }
        }
        assert!(kills < 100, "the merge never finished");
    }
    eprintln!("merged through the stand-in after {kills} kills of our side, {mid} mid-merge");
    assert!(mid >= 2, "killed mid-merge only {mid} times");
    // Every snapshot initiated once: the reruns found it merging and only polled.
    assert_eq!(daemon.initiated("system_b"), 1);
    assert_eq!(daemon.initiated("vendor_b"), 1);
    assert_new(&fx);
    assert_cleaned(&fx);
}

#[test]
fn a_daemon_restarted_mid_merge_is_asked_to_resume() {
    let fx = applied(0x5a_0005);
    let step = Duration::from_millis(150);
    let (sock, scratch) = (socket(&fx), fx.root.join("standin"));
    let first = StandIn::start_with(&sock, &scratch, handlers(&fx), Mode::Normal, &[], step);
    let child = merge_process(&fx.dev).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.initiated("system_b") == 0 {
        assert!(Instant::now() < deadline, "the merge was never initiated");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!first.complete("system_b"), "merged before the restart");
    first.stop();
    std::thread::sleep(Duration::from_millis(300));
    // The new daemon reports `snapshot` for the unfinished merges: our side initiates them
    // again (it rode out the restart by connecting again).
    let second = StandIn::start_with(&sock, &scratch, handlers(&fx), Mode::Normal, &[], step);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(second.initiated("system_b"), 1);
    assert!(detached_soon(&second), "the daemon never heard detach");
    assert_new(&fx);
    assert_cleaned(&fx);
}

/// The fixture's device seen as by-name (Android's layout: `super` and `misc` by name), slot b
/// running, its state where the fixture wrote it, with `mapper` when given.
fn by_name_updater(fx: &Fixture, mapper: Option<Arc<dyn LogicalMapper>>) -> Updater {
    use abupdate::boot_control::MiscBootControl;
    use abupdate::device::{Device, Layout};
    use abupdate::updater::downgrade::RunningBuild;
    use abupdate::updater::UpdaterParts;
    let byname = fx.root.join("by-name");
    if !byname.exists() {
        std::fs::create_dir_all(&byname).unwrap();
        std::os::unix::fs::symlink(fx.super_img(), byname.join("super")).unwrap();
        std::os::unix::fs::symlink(fx.dev.join("misc.img"), byname.join("misc")).unwrap();
    }
    let boot = MiscBootControl::open(&byname.join("misc"), Some(Slot::B)).unwrap();
    let mut device = Device::new(Layout::ByName(byname), Slot::B);
    if let Some(mapper) = mapper {
        device = device.with_mapper(mapper);
    }
    let mut parts = UpdaterParts::new(
        device,
        Box::new(boot),
        fx.root.join("by-name-state"),
        None,
        RunningBuild::load_host(&fx.dev).unwrap(),
    )
    .unwrap();
    parts.ota_state = fx.ota().join("state");
    parts.snapuserd = Some(quick(fx));
    Updater::from_parts(parts)
}

/// On a by-name device (Android's layout) without device-mapper, the running partitions cannot
/// be collapsed: after snapuserd's merge the state is MergeNeedsReboot and the COW partitions
/// stay (another update is refused with 39) while the daemon still serves the snapshots; after
/// the reboot (no daemon) the cleanup runs. No `delete` is sent.
#[test]
fn on_a_by_name_device_the_cleanup_after_snapuserds_merge_waits_for_the_reboot() {
    let fx = applied(0x5a_0006);
    let updater = || by_name_updater(&fx, None);
    let daemon = start(&fx, Mode::Normal);
    let err = updater().finish_previous_update().unwrap_err();
    assert_eq!(err.code, ErrorCode::MergePending, "{err}");
    assert!(
        state(&fx).contains("state: MergeNeedsReboot"),
        "{}",
        state(&fx)
    );
    assert_new(&fx);
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
    assert!(!daemon.detached());
    // The same boot: the daemon still serves them, the cleanup still waits.
    let err = updater().finish_previous_update().unwrap_err();
    assert_eq!(err.code, ErrorCode::MergePending, "{err}");
    assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
    assert_eq!(daemon.initiated("system_b"), 1);
    assert!(daemon.deleted().is_empty(), "{:?}", daemon.deleted());
    // The reboot: no daemon serves the merged snapshots.
    daemon.stop();
    updater().finish_previous_update().unwrap();
    assert_new(&fx);
    assert_cleaned(&fx);
}

/// Whether the daemon hears `detach` within 5 s: it has no answer, so our side returns
/// without waiting for the daemon to read it.
fn detached_soon(daemon: &StandIn) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.detached() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.detached()
}

/// The running slot's device-mapper devices as the collapse asks for them, each step logged
/// (a host has no device-mapper: the VM test's vab-collapse steps reload real devices). Every
/// snapshot has a live device; a reload of `fail` fails.
struct Recorded {
    log: Arc<Mutex<Vec<String>>>,
    tables: Mutex<Vec<(String, Vec<lp::Extent>, bool)>>,
    fail: Option<&'static str>,
}

impl LogicalMapper for Recorded {
    fn map(&self, name: &str, _: &Path, _: &[lp::Extent]) -> abupdate::Result<PathBuf> {
        Err(abupdate::err!(DeviceError, "{name}: no device-mapper here"))
    }
    fn map_on(&self, name: &str, _: &[&Path], _: &[lp::Extent]) -> abupdate::Result<PathBuf> {
        Err(abupdate::err!(DeviceError, "{name}: no device-mapper here"))
    }
    fn unmap(&self, name: &str) -> abupdate::Result<()> {
        self.log.lock().unwrap().push(format!("unmap {name}"));
        Ok(())
    }
    fn collapse(
        &self,
        name: &str,
        super_path: &Path,
        extents: &[lp::Extent],
        read_only: bool,
    ) -> abupdate::Result<bool> {
        assert!(super_path.ends_with("by-name/super"), "{super_path:?}");
        if self.fail == Some(name) {
            return Err(abupdate::err!(DeviceError, "DM_TABLE_LOAD {name}: EINVAL"));
        }
        self.log.lock().unwrap().push(format!("collapse {name}"));
        let table = (name.to_owned(), extents.to_vec(), read_only);
        self.tables.lock().unwrap().push(table);
        Ok(true)
    }
}

fn recorded(fail: Option<&'static str>) -> Arc<Recorded> {
    Arc::new(Recorded {
        log: Arc::default(),
        tables: Mutex::default(),
        fail,
    })
}

/// With device-mapper, each snapshot is collapsed as soon as snapuserd reports its merge
/// complete, as libsnapshot's `OnSnapshotMergeComplete` does: its live device reloaded with the
/// base partition's extents from slot b's metadata (read-only, as the partition is), then
/// `delete,<name>` sent once, then its `-base`, `-src`, `-cow` and `-cow-img` devices removed;
/// the cleanup then runs in the same boot (state None, COW partitions gone, `detach`).
/// `vendor_b` shrank, so it merges alone first: it is deleted before `system_b` is initiated.
#[test]
fn with_device_mapper_each_merged_snapshot_is_collapsed_then_deleted_and_the_cleanup_runs() {
    let fx = applied(0x5a_0008);
    vendor_shrank(&fx);
    let meta = fx.metadata(Slot::B);
    let daemon = start(&fx, Mode::Normal);
    let mapper = recorded(None);
    let log = mapper.log.clone();
    daemon.on_delete(move |name| {
        log.lock().unwrap().push(format!("delete {name}"));
        true
    });
    let t = Instant::now();
    by_name_updater(&fx, Some(mapper.clone()))
        .finish_previous_update()
        .unwrap();
    eprintln!("merged and collapsed in {:?}", t.elapsed());
    assert_new(&fx);
    assert_cleaned(&fx);
    assert!(detached_soon(&daemon));
    // Each snapshot: its merge complete, then its delete, once. (Two that complete between
    // two polls are seen, and collapsed, in the statuses' order.)
    let events = daemon.events();
    eprintln!("daemon: {events:?}");
    let deleted: Vec<&str> = events
        .iter()
        .filter_map(|e| e.strip_prefix("delete "))
        .collect();
    let mut names = deleted.clone();
    names.sort();
    assert_eq!(names, ["system_b", "vendor_b"], "{events:?}");
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    for name in &deleted {
        assert!(at(&format!("complete {name}")) < at(&format!("delete {name}")));
    }
    assert!(
        at("delete vendor_b") < at("initiate system_b"),
        "{events:?}"
    );
    // Reload, delete, then the devices around it, per snapshot.
    let log = mapper.log.lock().unwrap().clone();
    let mut want = Vec::new();
    for name in &deleted {
        want.push(format!("collapse {name}"));
        want.push(format!("delete {name}"));
        for suffix in ["-base", "-src", "-cow", "-cow-img"] {
            want.push(format!("unmap {name}{suffix}"));
        }
    }
    assert_eq!(log, want);
    // The tables are the bases' extents in slot b's metadata, read-only.
    for (name, extents, read_only) in mapper.tables.lock().unwrap().iter() {
        let part = meta.partition(name).unwrap();
        assert_eq!(extents[..], meta.extents_of(part)[..], "{name}");
        assert!(*read_only, "{name}");
    }
}

/// A collapse that fails (a reload refused, or `delete` answered `fail`) leaves the state
/// MergeNeedsReboot with the COW partitions kept, as libsnapshot does when
/// `OnSnapshotMergeComplete` fails. A run again in the same boot collapses what is left (the
/// snapshots all merged, the daemon still serving one) and cleans up; so does the next boot
/// (no daemon).
#[test]
fn a_collapse_that_fails_leaves_the_cleanup_for_the_reboot() {
    for (seed, fail_reload, fail_delete) in [
        (0x5a_0009, Some("vendor_b"), None),
        (0x5a_000a, None, Some("system_b")),
    ] {
        let fx = applied(seed);
        let daemon = start(&fx, Mode::Normal);
        daemon.on_delete(move |name| Some(name) != fail_delete);
        let mapper = recorded(fail_reload);
        let err = by_name_updater(&fx, Some(mapper.clone()))
            .finish_previous_update()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::MergePending, "{err}");
        assert!(state(&fx).contains("state: MergeNeedsReboot"));
        assert_new(&fx);
        assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
        let log = mapper.log.lock().unwrap().clone();
        eprintln!(
            "{fail_reload:?} {fail_delete:?}: {log:?}, daemon {:?}",
            daemon.events()
        );
        if let Some(name) = fail_reload {
            assert!(!daemon.deleted().contains(&name.to_owned()));
        }
        if let Some(name) = fail_delete {
            // Its devices stay: the daemon may still hold them.
            assert!(!log.contains(&format!("unmap {name}-base")), "{log:?}");
        }
        if fail_reload.is_some() {
            // The same boot, the reload possible now: only the one left is collapsed.
            let mapper = recorded(None);
            by_name_updater(&fx, Some(mapper.clone()))
                .finish_previous_update()
                .unwrap();
            let log = mapper.log.lock().unwrap().clone();
            assert!(log.contains(&"collapse vendor_b".to_owned()), "{log:?}");
            assert!(detached_soon(&daemon));
        } else {
            daemon.stop();
            by_name_updater(&fx, None).finish_previous_update().unwrap();
        }
        assert_new(&fx);
        assert_cleaned(&fx);
    }
}

/// A snapshot that shrank merges first (libsnapshot's first merge phase: the others' merges
/// could overwrite its copies' sources), the others only once it is complete. `vendor_b`'s
/// status is made to say it shrank (its old partition recorded larger than the new one). The
/// state file's `merge_phase` says FIRST_PHASE, then SECOND_PHASE.
#[test]
fn a_snapshot_that_shrank_is_merged_before_the_others_are_initiated() {
    let fx = applied(0x5a_0007);
    vendor_shrank(&fx);
    let daemon = start(&fx, Mode::Normal);
    let mut updater = fx.updater(Slot::B);
    updater.set_snapuserd(Some(quick(&fx)));
    // The state file's merge_phase as protoc reads it at each progress report.
    let mut phases = Vec::new();
    updater
        .finish_previous_update_with(&mut |_| {
            let s = state(&fx);
            let phase = s
                .lines()
                .find_map(|l| l.strip_prefix("merge_phase: "))
                .map(str::to_owned);
            if let Some(p) = phase {
                if phases.last() != Some(&p) {
                    phases.push(p);
                }
            }
        })
        .unwrap();
    assert_eq!(phases, ["FIRST_PHASE", "SECOND_PHASE"]);
    let events = daemon.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(
        at("complete vendor_b") < at("initiate system_b"),
        "{events:?}"
    );
    assert_new(&fx);
    assert_cleaned(&fx);
}

/// `vendor_b`'s status made to say it shrank (its old partition recorded larger than the new
/// one): it merges alone, in the first phase.
fn vendor_shrank(fx: &Fixture) {
    let ota = abupdate::updater::snapshot_state::OtaDir::new(fx.ota());
    let mut vendor = ota
        .snapshots()
        .unwrap()
        .into_iter()
        .find(|s| s.name == "vendor_b")
        .unwrap();
    vendor.old_partition_size = vendor.device_size + 4096;
    let settings = abupdate::updater::snapshot_state::CowSettings::default();
    let created = abupdate::updater::snapshot_state::SnapshotState::Created;
    ota.write_snapshot(&vendor, &settings, created).unwrap();
}
