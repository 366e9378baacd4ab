//! Postinstall: after every partition of the new slot is written and verified, and before the
//! slot switch, each partition whose manifest entry sets `run_postinstall` is mounted
//! read-only and its program run, as update_engine's `PostinstallRunnerAction` does:
//!
//! - argv `<mount>/<postinstall_path> <target slot number> 3`, descriptor 3 a pipe on which
//!   the program writes `global_progress <fraction>` lines ([`progress`]);
//! - the partitions' programs weigh the same in the overall progress, reported as
//!   [`Stage::Postinstall`];
//! - `RUN_POST_INSTALL=0` skips the optional programs (their partitions are still mounted once,
//!   so that one that would not mount at boot fails now);
//! - a failing required program fails the update (44; 45 when it outruns the timeout, an
//!   addition of ours) and the slot is not switched; an optional one's failure is logged;
//! - a suspend stops the program (SIGSTOP to its process group), a resume continues it
//!   (SIGCONT), a cancel kills it.
//!
//! On a Virtual A/B snapshot update the partitions mounted are the snapshots' views, served
//! for each program ([`crate::device::snapshot_mount`] through nbd,
//! [`crate::device::snapshot_user`] through snapuserd and dm-user): their extents hold the
//! running build until the merge.
//!
//! [`plan`] and [`progress`] hold no I/O; [`mount`] and [`runner`] are the adapters.

pub mod mount;
pub mod plan;
pub mod progress;
pub mod runner;

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{Observer, Progress, Stage};
use crate::error::{ErrorCode, Result};
use mount::Located;
use plan::Step;
use progress::Weights;

/// Android's mount point for postinstall (`/postinstall`, labelled `postinstall_mnt_dir`).
pub const ANDROID_MOUNT_DIR: &str = "/postinstall";

/// The default time one program may run. update_engine has no limit; `otapreopt` on a big
/// build takes minutes, so this only catches a program that hangs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The progress scale of [`Stage::Postinstall`]: millionths.
pub const PROGRESS_SCALE: u64 = 1_000_000;

/// How postinstall runs on this device.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where partitions are mounted (Android: [`ANDROID_MOUNT_DIR`]); `None`: a new temporary
    /// directory for each run.
    pub mount_dir: Option<PathBuf>,
    /// How long one program may run; time suspended does not count.
    pub timeout: Duration,
    /// Where the kernel lists nbd devices (`/sys/block`), through which a Virtual A/B
    /// update's snapshots are served for postinstall ([`crate::device::snapshot_mount`]);
    /// `None` (Android, where snapuserd's dm-user devices would): a snapshot payload with
    /// postinstall programs takes the dynamic-partitions path.
    pub nbd_sys: Option<PathBuf>,
    /// snapuserd and dm-user, through which Android serves those views
    /// ([`crate::device::snapshot_user`]): only for the binary running in update_engine's
    /// SELinux domain, the one allowed to start snapuserd. `None`: not used.
    pub dm_user: Option<crate::device::snapshot_user::DmUserConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mount_dir: cfg!(target_os = "android").then(|| PathBuf::from(ANDROID_MOUNT_DIR)),
            timeout: DEFAULT_TIMEOUT,
            nbd_sys: (!cfg!(target_os = "android")).then(|| PathBuf::from("/sys/block")),
            dm_user: None,
        }
    }
}

/// Mount data for `partition`, as update_engine's `GetPartitionMountOptions` on Android (files
/// without a label get `postinstall_file`); none elsewhere (the option needs SELinux).
fn mount_options(partition: &str) -> &'static str {
    if !cfg!(target_os = "android") {
        ""
    } else if partition == "system" {
        "defcontext=u:object_r:postinstall_file:s0"
    } else {
        "context=u:object_r:postinstall_file:s0"
    }
}

/// Runs `steps` for the slot numbered `target_slot`; `locate` gives the bytes of a target
/// partition (and what keeps them readable while it is mounted). Returns at the first failure
/// of a required step; optional ones only log theirs.
pub fn run(
    steps: &[Step],
    target_slot: u32,
    locate: &dyn Fn(&str) -> Result<Located>,
    config: &Config,
    observer: &dyn Observer,
) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let _temporary;
    let dir = match &config.mount_dir {
        Some(dir) => {
            mount::ensure_unmounted(dir);
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::err!(PostinstallFailed, "creating {}: {e}", dir.display()))?;
            dir.clone()
        }
        None => {
            _temporary = TempMountDir::create()?;
            _temporary.0.clone()
        }
    };
    let running = steps.iter().filter(|s| s.run).count();
    let mut weights = Weights::new(u32::try_from(running).unwrap_or(u32::MAX));
    let report = |weights: &Weights, fraction: f64, partition: &str| {
        let overall = weights.overall(fraction);
        observer.progress(&Progress {
            stage: Stage::Postinstall,
            // 0..=1 scaled: the cast cannot overflow.
            bytes_done: (overall * PROGRESS_SCALE as f64).round() as u64,
            bytes_total: PROGRESS_SCALE,
            operations_done: 0,
            operations_total: running as u64,
            partition: Some(partition.to_owned()),
        })
    };
    for step in steps {
        let name = &step.partition;
        let located = locate(name)?;
        let fs = &step.postinstall.filesystem_type;
        let mounted = mount::mount_read_only(&located.source, fs, mount_options(name), &dir)?;
        if !step.run {
            log::info!("{name}: mounts; its optional postinstall is skipped (RUN_POST_INSTALL=0)");
            drop(mounted);
            drop(located);
            continue;
        }
        report(&weights, 0.0, name);
        let program = mounted.dir().join(&step.postinstall.path);
        log::info!(
            "{name}: running postinstall {} (slot {target_slot})",
            step.postinstall.path
        );
        let args = [target_slot.to_string(), runner::STATUS_FD.to_string()];
        let result = runner::run(&program, &args, config.timeout, observer, &mut |f| {
            report(&weights, f, name)
        });
        // Unmounted first, then what served the bytes.
        drop(mounted);
        drop(located);
        match result {
            Ok(()) => log::info!("{name}: postinstall succeeded"),
            Err(e) if e.code == ErrorCode::Cancelled => return Err(e),
            Err(e) if step.postinstall.optional => {
                log::warn!("{name}: optional postinstall failed, going on: {e}")
            }
            Err(e) => {
                return Err(crate::error::Error::new(
                    e.code,
                    format!("postinstall of {name}: {}", e.message),
                ))
            }
        }
        weights.finish_one();
        report(&weights, 0.0, name);
    }
    Ok(())
}

/// A new empty directory under the system's temporary directory, removed when dropped (after
/// the mount on it is gone).
struct TempMountDir(PathBuf);

impl TempMountDir {
    fn create() -> Result<Self> {
        let base = std::env::temp_dir();
        let mut last = None;
        for n in 0..100u32 {
            let dir = base.join(format!("abupdate-postinstall-{}-{n}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TempMountDir(dir)),
                Err(e) => last = Some(e),
            }
        }
        Err(crate::err!(
            PostinstallFailed,
            "no mount point under {}: {}",
            base.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }
}

impl Drop for TempMountDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
