//! Postinstall on a Virtual A/B snapshot update through snapuserd's dm-user views, as
//! update_engine does on Android (libsnapshot's `MapAllSnapshots`), on a host: no kernel here
//! has dm-user, so
//!
//! - snapuserd is the stand-in (tests/common/snapuserd.rs) on a real unix socket, speaking
//!   AOSP's protocol; started only when the updater sets `ctl.start=snapuserd` (the test's
//!   property store plays init: `init.svc.snapuserd=running`, `snapuserd.ready=true`);
//! - the mapper plays device-mapper and the kernel: each linear mapping is a file holding the
//!   bytes of its extents in `super.img`; the dm-user device is a file the stand-in fills on
//!   `start` with the view AOSP's `applycow --mode merge` computes from the COW device over the
//!   base device the updater passed; `/dev/dm-user/<misc_name>` is a file that exists while
//!   the dm-user mapping does. Every step is recorded among the stand-in's events.
//!
//! With the usual fixture's images (not file systems) the real mount (a loop device over the
//! served bytes) fails: 44, after which everything is unmapped. With two ext4 builds of
//! `system` the kernel mounts the served view and the new build's program runs from it. What
//! is proven is our side: the path choice, the requests and their order, the devices named in
//! them, the view's bytes (the new build), the mount and the program, and the cleanup. Not
//! proven: a kernel's dm-user device (here a file), a real snapuserd.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abupdate::device::snapshot_user::DmUserConfig;
use abupdate::device::LogicalMapper;
use abupdate::engine::ApplyOptions;
use abupdate::lp::{self, ExtentTarget};
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::sysprop::{Properties, SetProperties};
use abupdate::updater::snapshot_state::OtaDir;
use abupdate::ErrorCode;
use common::snapuserd::{Mode, StandIn};
use common::vab::*;

type Daemon = Arc<Mutex<Option<StandIn>>>;

/// Records a step among the daemon's events (or alone before it runs).
fn note(daemon: &Daemon, early: &Mutex<Vec<String>>, event: String) {
    match daemon.lock().unwrap().as_ref() {
        Some(d) => d.note(event),
        None => early.lock().unwrap().push(event),
    }
}

/// init's part: `ctl.start=snapuserd` starts the stand-in when `startable`.
struct Init {
    values: Mutex<HashMap<String, String>>,
    sets: Mutex<Vec<String>>,
    startable: bool,
    daemon: Daemon,
    socket: PathBuf,
    scratch: PathBuf,
    mode: Mode,
    served: PathBuf,
}

impl Properties for Init {
    fn get(&self, name: &str) -> abupdate::Result<Option<String>> {
        // A detached daemon exits: init says so.
        let detached = self
            .daemon
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|d| d.detached());
        if name == "init.svc.snapuserd" && detached {
            return Ok(Some("stopped".into()));
        }
        Ok(self.values.lock().unwrap().get(name).cloned())
    }
}

impl SetProperties for Init {
    fn set(&self, name: &str, value: &str) -> abupdate::Result<()> {
        self.sets.lock().unwrap().push(format!("{name}={value}"));
        if (name, value) == ("ctl.start", "snapuserd") && self.startable {
            let d = StandIn::start(&self.socket, &self.scratch, Vec::new(), self.mode, &[]);
            d.serve_views_at(&self.served);
            *self.daemon.lock().unwrap() = Some(d);
            let mut v = self.values.lock().unwrap();
            v.insert("init.svc.snapuserd".into(), "running".into());
            v.insert("snapuserd.ready".into(), "true".into());
        }
        Ok(())
    }
}

/// device-mapper's part, in files.
struct Mapper {
    dir: PathBuf,
    control: PathBuf,
    /// What each dm-user device held when it was removed.
    kept: PathBuf,
    user_target: bool,
    daemon: Daemon,
    early: Mutex<Vec<String>>,
}

impl Mapper {
    fn note(&self, event: String) {
        note(&self.daemon, &self.early, event)
    }
}

impl LogicalMapper for Mapper {
    fn map(
        &self,
        name: &str,
        super_path: &Path,
        extents: &[lp::Extent],
    ) -> abupdate::Result<PathBuf> {
        self.map_on(name, &[super_path], extents)
    }
    fn map_on(
        &self,
        name: &str,
        devices: &[&Path],
        extents: &[lp::Extent],
    ) -> abupdate::Result<PathBuf> {
        use std::os::unix::fs::FileExt;
        self.note(format!("map {name}"));
        let mut bytes = Vec::new();
        for e in extents {
            let len = (e.num_sectors * 512) as usize;
            match e.target {
                ExtentTarget::Linear {
                    block_device,
                    physical_sector,
                } => {
                    let f = std::fs::File::open(devices[block_device as usize]).unwrap();
                    let mut b = vec![0u8; len];
                    f.read_exact_at(&mut b, physical_sector * 512).unwrap();
                    bytes.extend_from_slice(&b);
                }
                ExtentTarget::Zero => bytes.resize(bytes.len() + len, 0),
            }
        }
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Ok(path)
    }
    fn unmap(&self, name: &str) -> abupdate::Result<()> {
        let path = self.dir.join(name);
        if path.exists() {
            self.note(format!("unmap {name}"));
            let control = self.control.join(name);
            if control.exists() {
                std::fs::copy(&path, self.kept.join(name)).unwrap();
                std::fs::remove_file(control).unwrap();
            }
            std::fs::remove_file(path).unwrap();
        }
        Ok(())
    }
    fn has_target(&self, kind: &str) -> abupdate::Result<bool> {
        Ok(self.user_target && kind == "user")
    }
    fn map_user(&self, name: &str, sectors: u64, misc_name: &str) -> abupdate::Result<PathBuf> {
        self.note(format!("user {name} {sectors} {misc_name}"));
        let path = self.dir.join(name);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(sectors * 512).unwrap();
        std::fs::write(self.control.join(misc_name), b"").unwrap();
        Ok(path)
    }
}

struct Run {
    fx: Fixture,
    init: Arc<Init>,
    mapper: Arc<Mapper>,
}

impl Run {
    fn new(seed: u64, startable: bool, user_target: bool, mode: Mode) -> Run {
        Run::with(
            Fixture::with_postinstall(seed),
            startable,
            user_target,
            mode,
        )
    }

    fn with(fx: Fixture, startable: bool, user_target: bool, mode: Mode) -> Run {
        let dirs = ["mapped", "dm-user", "kept", "served"].map(|d| fx.root.join(d));
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let daemon: Daemon = Arc::new(Mutex::new(None));
        let init = Arc::new(Init {
            values: Mutex::new(HashMap::new()),
            sets: Mutex::new(Vec::new()),
            startable,
            daemon: daemon.clone(),
            socket: fx.root.join("socket/snapuserd"),
            scratch: fx.root.join("standin"),
            mode,
            // The stand-in serves into the mapper's dm-user files.
            served: dirs[0].clone(),
        });
        let mapper = Arc::new(Mapper {
            dir: dirs[0].clone(),
            control: dirs[1].clone(),
            kept: dirs[2].clone(),
            user_target,
            daemon,
            early: Mutex::new(Vec::new()),
        });
        Run { fx, init, mapper }
    }

    fn apply(&self) -> abupdate::Error {
        self.try_apply().unwrap_err()
    }

    fn try_apply(&self) -> abupdate::Result<abupdate::updater::Outcome> {
        let mut updater = self.fx.updater(Slot::A);
        let quick = Duration::from_millis(300);
        updater.set_postinstall(abupdate::postinstall::Config {
            nbd_sys: None,
            dm_user: Some(DmUserConfig {
                snapuserd: abupdate::snapuserd::Config {
                    connect_timeout: quick,
                    reply_timeout: Duration::from_secs(30),
                    ..abupdate::snapuserd::Config::at(&self.init.socket)
                },
                properties: self.init.clone(),
                start_timeout: quick,
                control_dir: self.mapper.control.clone(),
                control_timeout: quick,
                mapper: Some(self.mapper.clone()),
            }),
            ..abupdate::postinstall::Config::default()
        });
        let options = ApplyOptions {
            threads: 2,
            ..common::unsigned_options()
        };
        let mut source = Source::file(&self.fx.payload).unwrap();
        updater.apply(&mut source, &options, &abupdate::engine::Quiet)
    }

    fn events(&self) -> Vec<String> {
        let mut all = self.mapper.early.lock().unwrap().clone();
        if let Some(d) = self.init.daemon.lock().unwrap().as_ref() {
            all.extend(d.events());
        }
        all
    }

    fn views(&self) -> Vec<String> {
        self.init
            .daemon
            .lock()
            .unwrap()
            .as_ref()
            .map_or_else(Vec::new, |d| d.views())
    }

    /// No mapping, no control device, no handler left.
    fn assert_nothing_left(&self) {
        for dir in [&self.mapper.dir, &self.mapper.control] {
            let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
            assert!(left.is_empty(), "{}: {left:?}", dir.display());
        }
        assert!(self.views().is_empty(), "{:?}", self.views());
    }

    /// The snapshot update written and left Initiated, the slot not switched, no record.
    fn assert_initiated_not_switched(&self) {
        let fx = &self.fx;
        assert!(fx.metadata(Slot::B).partition("system_b-cow").is_some());
        let ota = OtaDir::new(fx.ota());
        assert_eq!(
            ota.state().unwrap(),
            Some(abupdate::updater::ota_state::UpdateState::Initiated)
        );
        let active = fx.updater(Slot::A).with_boot(|b| b.active_slot()).unwrap();
        assert_eq!(active, Slot::A);
        assert!(!fx.dev.join("state/postinstall").exists());
    }

    /// What mapping `system_b`'s view records, in libsnapshot's order: the base, source and
    /// COW devices, the dm-user device of the base's size, then snapuserd's `init`.
    fn mapping(&self) -> Vec<String> {
        let (sectors, cow, src, base) = self.system();
        vec![
            "map system_b-base".to_owned(),
            "map system_b-src".into(),
            "map system_b-cow".into(),
            format!("user system_b {sectors} system_b"),
            format!("init system_b {cow} {src} {base}"),
        ]
    }

    /// A whole run that served `system_b`'s view once: what an earlier run left removed
    /// (snapuserd's handler, if any; none here), the view mapped and started, then unmapped.
    fn served_once(&self) -> Vec<String> {
        [
            vec!["delete system_b".to_owned()],
            self.mapping(),
            vec!["start system_b".to_owned()],
            Run::unmapping(),
        ]
        .concat()
    }

    /// What unmapping `system_b`'s view records (`UnmapUserspaceSnapshotDevice`), then the
    /// daemon's detach (`UnmapAllSnapshots`).
    fn unmapping() -> Vec<String> {
        [
            "unmap system_b",
            "delete system_b",
            "unmap system_b-cow",
            "unmap system_b-src",
            "unmap system_b-base",
            "detach",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The sectors of `system_b` (its base: the target's extents) and the device paths.
    fn system(&self) -> (u64, String, String, String) {
        let meta = self.fx.metadata(Slot::B);
        let p = meta.partition("system_b").unwrap();
        let sectors: u64 = meta.extents_of(p).iter().map(|e| e.num_sectors).sum();
        let at = |n: &str| self.mapper.dir.join(n).display().to_string();
        (
            sectors,
            at("system_b-cow"),
            at("system_b-src"),
            at("system_b-base"),
        )
    }
}

/// The snapshot path with snapuserd's view of `system_b`: started through `ctl.start`, the
/// devices mapped, the dm-user table made, `init` and `start` sent, the view mounted (the
/// kernel refuses it: no file system), then everything unmapped in libsnapshot's order. The
/// view held the new image, computed by AOSP's applycow from the COW and base we named.
#[test]
fn postinstall_mounts_snapuserds_view_of_each_snapshot_then_unmaps_it() {
    let run = Run::new(0xd0_0001, true, true, Mode::Normal);
    let err = run.apply();
    assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
    let node = run.mapper.dir.join("system_b");
    assert!(
        err.message
            .contains(&format!("{} (through", node.display())),
        "{err}"
    );
    assert!(err.message.contains("does not mount"), "{err}");
    assert_eq!(run.events(), run.served_once());
    assert_eq!(
        run.init.sets.lock().unwrap().clone(),
        vec!["ctl.start=snapuserd".to_owned()]
    );
    // The view served while mounted: the new image, then what the base holds.
    let served = std::fs::read(run.mapper.kept.join("system_b")).unwrap();
    let (_, _, new) = run
        .fx
        .images
        .iter()
        .find(|(n, _, _)| *n == "system")
        .unwrap();
    assert_eq!(served.len() as u64, run.system().0 * 512);
    assert!(
        served[..new.len()] == new[..],
        "the view is not the new image"
    );
    run.assert_nothing_left();
    run.assert_initiated_not_switched();
}

/// snapuserd refusing `init`: 44 (update_engine: kPostInstallMountError), the dm-user device
/// and the rest unmapped, nothing left, the update left Initiated and not switched to.
#[test]
fn a_daemon_refusing_init_is_44_with_nothing_left_mapped() {
    let run = Run::new(0xd0_0002, true, true, Mode::RefusesInit);
    let err = run.apply();
    assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
    assert!(err.message.contains("refused init"), "{err}");
    assert_eq!(
        run.events(),
        [
            vec!["delete system_b".to_owned()],
            run.mapping(),
            Run::unmapping(),
        ]
        .concat()
    );
    run.assert_nothing_left();
    run.assert_initiated_not_switched();
}

/// Where snapuserd cannot be started (init does not start it: `init.svc.snapuserd` never
/// says running), or the kernel has no dm-user target, the path choice keeps the
/// dynamic-partitions path before anything is written: no COW, no snapshot state, nothing
/// mapped through the mapper (the images are no file systems: the mount fails, 44).
#[test]
fn without_a_startable_snapuserd_or_dm_user_the_dynamic_path_is_kept() {
    for (seed, startable, user_target) in [(0xd0_0003, false, true), (0xd0_0004, true, false)] {
        let run = Run::new(seed, startable, user_target, Mode::Normal);
        let err = run.apply();
        assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
        let fx = &run.fx;
        let target = fx.metadata(Slot::B);
        assert!(target.groups().iter().all(|g| g.name != lp::COW_GROUP));
        assert!(target.partition("system_b-cow").is_none());
        assert!(!fx.ota().join("snapshots").exists());
        assert!(run.events().is_empty(), "{:?}", run.events());
        assert!(run.init.daemon.lock().unwrap().is_none());
        let sets = run.init.sets.lock().unwrap().clone();
        // Without the target, snapuserd is not even asked for.
        let want: &[&str] = if user_target {
            &["ctl.start=snapuserd"]
        } else {
            &[]
        };
        assert_eq!(sets, want, "{startable} {user_target}");
    }
}

/// What a crashed run left (its dm-user device and control node, its base mapping, and
/// snapuserd's handler of that name, which would make `init` fail): removed first, as
/// libsnapshot's `MapAllSnapshots` unmaps each snapshot before mapping it, then the view is
/// mapped anew.
#[test]
fn a_crashed_runs_device_and_handler_are_removed_before_the_view_is_mapped() {
    let run = Run::new(0xd0_0005, true, true, Mode::Normal);
    // The daemon runs already (started before), with a handler for system_b.
    run.init.set("ctl.start", "snapuserd").unwrap();
    let (dir, control) = (&run.mapper.dir, &run.mapper.control);
    for left in ["system_b", "system_b-base"] {
        std::fs::write(dir.join(left), vec![0u8; 4096]).unwrap();
    }
    std::fs::write(control.join("system_b"), b"").unwrap();
    let config = abupdate::snapuserd::Config::at(&run.init.socket);
    let mut client = abupdate::snapuserd::Client::connect(&config).unwrap();
    let (cow, base) = (dir.join("system_b"), dir.join("system_b-base"));
    let (cow, base) = (cow.to_str().unwrap(), base.to_str().unwrap());
    assert_eq!(client.init("system_b", cow, base, base).unwrap(), Some(8));
    // A second handler of the name is refused, as snapuserd's AddHandler does.
    assert_eq!(client.init("system_b", cow, base, base).unwrap(), None);
    drop(client);
    let before = run.events().len();

    let err = run.apply();
    assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
    assert!(err.message.contains("does not mount"), "{err}");
    assert_eq!(
        run.events()[before..],
        [
            vec![
                "unmap system_b".to_owned(),
                "delete system_b".into(),
                "unmap system_b-base".into(),
            ],
            run.mapping(),
            vec!["start system_b".to_owned()],
            Run::unmapping(),
        ]
        .concat()
    );
    // ctl.start only by the test: the updater found the daemon running.
    assert_eq!(run.init.sets.lock().unwrap().len(), 1);
    run.assert_nothing_left();
    run.assert_initiated_not_switched();
}

/// Two ext4 builds of `system` (`mkfs.ext4 -d`) sharing 1 MiB: the old one's `postinst` fails,
/// the new one's reads `new-build.txt` (only the new build has it) and writes its argv and what
/// it read into `root`.
fn ext4_builds(root: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut rng = common::Rng(0xd0_e4);
    let mut shared = vec![0u8; 1 << 20];
    rng.fill(&mut shared);
    let programs = [
        "#!/bin/sh\necho old > ROOT/ran.argv\nexit 9\n".to_owned(),
        "#!/bin/sh\necho \"$0 $*\" > ROOT/ran.argv\n\
         cat \"${0%/*}/new-build.txt\" > ROOT/ran.read || exit 2\n\
         echo 'global_progress 0.5' >&\"$2\"\nexit 0\n"
            .to_owned(),
    ];
    let mut out = Vec::new();
    for (v, program) in programs.iter().enumerate() {
        let dir = root.join(format!("fs{v}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("shared.bin"), &shared).unwrap();
        let program = program.replace("ROOT", root.to_str().unwrap());
        std::fs::write(dir.join("postinst"), program).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(dir.join("postinst"), mode).unwrap();
        if v == 1 {
            std::fs::write(dir.join("new-build.txt"), "build 2, from its snapshot\n").unwrap();
        }
        let img = root.join(format!("fs{v}.img"));
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-O", "^has_journal", "-d"])
            .arg(&dir)
            .arg(&img)
            .arg("2400K")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "mkfs.ext4");
        out.push(std::fs::read(&img).unwrap());
    }
    let new = out.pop().unwrap();
    (out.pop().unwrap(), new)
}

/// The whole way with file systems: the view snapuserd serves (the new ext4, computed by
/// AOSP's applycow from the COW we wrote) is mounted by the kernel through a loop device, the
/// new build's program runs from it (its argv as update_engine passes it, a file only the new
/// build has), the update finishes (snapshot writes finished: Unverified) and the slot is
/// switched; every mapping and handler is gone.
#[test]
fn the_new_builds_program_runs_from_snapuserds_view_and_the_slot_switches() {
    let fx = Fixture::with_system(0xd0_0006, "system=postinst:ext4", ext4_builds);
    let run = Run::with(fx, true, true, Mode::Normal);
    let outcome = run.try_apply().unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));
    let root = &run.fx.root;
    let argv = std::fs::read_to_string(root.join("ran.argv")).unwrap();
    assert!(argv.ends_with("/postinst 1 3\n"), "{argv:?}");
    let read = std::fs::read_to_string(root.join("ran.read")).unwrap();
    assert_eq!(read, "build 2, from its snapshot\n");
    assert_eq!(run.events(), run.served_once());
    run.assert_nothing_left();
    let ota = OtaDir::new(run.fx.ota());
    assert_eq!(
        ota.state().unwrap(),
        Some(abupdate::updater::ota_state::UpdateState::Unverified)
    );
    assert!(run.fx.dev.join("state/postinstall").exists());
}

/// A daemon that hangs up or answers garbage: 44 with the daemon's failure, not a hang,
/// nothing mapped, the update left Initiated and not switched to; the daemon, which did not
/// stop on `detach`, stopped with `ctl.stop` (libsnapshot's `WaitForServiceToTerminate`).
#[test]
fn a_daemon_that_hangs_up_or_answers_garbage_is_44_with_nothing_mapped() {
    for (seed, mode, says) in [
        (0xd0_0007, Mode::Disconnects, "closed the connection"),
        (0xd0_0008, Mode::Garbage, "snapuserd answered delete with"),
    ] {
        let run = Run::new(seed, true, true, mode);
        let err = run.apply();
        assert_eq!(err.code, ErrorCode::PostinstallFailed, "{err}");
        assert!(err.message.contains(says), "{mode:?}: {err}");
        let mapped = run.events().into_iter().filter(|e| e.starts_with("map"));
        assert_eq!(mapped.count(), 0, "{mode:?}");
        // It never took `detach` either: after 3 s it is stopped through init.
        let sets = run.init.sets.lock().unwrap().clone();
        assert_eq!(
            sets,
            ["ctl.start=snapuserd", "ctl.stop=snapuserd"],
            "{mode:?}"
        );
        run.assert_nothing_left();
        run.assert_initiated_not_switched();
    }
}
