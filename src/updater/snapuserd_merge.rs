//! The Virtual A/B merge asked of snapuserd, as libsnapshot asks it (AOSP
//! `fs_mgr/libsnapshot/snapshot.cpp`: `InitiateMerge`, `SwitchSnapshotToMerge`,
//! `CheckMergeState`/`CheckTargetMergeState`, `GetSnapshotMergeStatsProgress`): on a device
//! whose update uses userspace snapshots the running slot's partitions are snapuserd's dm-user
//! devices, so the daemon merges, and writing the bases ourselves under it would corrupt the
//! running system.
//!
//! The update's state goes Unverified → Merging (the point of no return); each snapshot is
//! initiated (`initiate_merge,<name>`) and marked MERGING, then every poll asks each unfinished
//! snapshot's `getstatus` and the overall `merge_percent`. A snapshot whose daemon answers
//! `snapshot` while its status says MERGING was being merged when the daemon restarted: it is
//! initiated again (the daemon resumes from its COW's checkpoint); one that answers
//! `snapshot-merge` is only polled, so a run of ours killed mid-merge and started again goes on
//! polling the same merge. Snapshots that shrank merge first (libsnapshot's first merge
//! phase), the others once those are complete. `snapshot-merge-complete` marks the snapshot
//! MERGE_COMPLETED. A `fail`, `snapshot-merge-failed`, or a daemon that cannot be reached or
//! answers garbage leaves the state MergeFailed (which the next run polls again, as
//! libsnapshot's next `ProcessUpdateState` does); we never write a base.
//!
//! Each snapshot snapuserd merged is then collapsed where the running slot's partitions are
//! device-mapper devices ([`Collapse`]): its dm-user device gets the base partition's
//! dm-linear table in place, the daemon is told to let go of it (`delete,<name>`) and the
//! devices the snapshot was made of are removed, as libsnapshot's `OnSnapshotMergeComplete`
//! does. Only when every snapshot collapsed can the COW partitions go in the same boot.

use std::time::Duration;

use super::ota_state::UpdateState;
use super::snapshot_state::{OtaDir, SnapshotState};
use crate::device::Device;
use crate::error::Result;
use crate::lp::{self, SnapshotSpace};
use crate::snapuserd::{Client, Config, SnapshotMergeStatus, SnapuserdError};

/// Consecutive lost connections (disconnects, timeouts) a merge rides out by connecting again
/// (the daemon restarting) before it gives up.
const RECONNECTS: u32 = 3;

/// Whether the merge of the update in `ota` is snapuserd's: the update uses userspace
/// snapshots, our own merge has not begun, and either the merge began (through snapuserd:
/// the state is past Unverified without our own merge's checkpoints; its socket may be gone
/// while it restarts, and our own merge over a half-merged base would corrupt it) or the
/// daemon's socket is there to begin it.
pub fn wanted(ota: &OtaDir, config: &Config) -> Result<bool> {
    if !ota.userspace_snapshots()? || ota.own_merge_dir().exists() {
        return Ok(false);
    }
    Ok(ota.state()? != Some(UpdateState::Unverified) || config.socket.exists())
}

/// Whether `s` merges in the first phase: it shrank (libsnapshot's `DecideMergePhase`), so
/// the others' merges must not overwrite its copies' sources first.
fn first_phase(s: &SnapshotSpace) -> bool {
    s.device_size < s.old_partition_size
}

/// Where merged snapshots are collapsed: the running slot's device-mapper devices of
/// `device`, laid out by `metadata` (the running slot's).
#[derive(Clone, Copy)]
pub struct Collapse<'a> {
    /// The device, with its mapper.
    pub device: &'a Device,
    /// The running slot's metadata: the bases' extents.
    pub metadata: &'a lp::Metadata,
}

/// What [`merge`] ended with.
pub struct Merged {
    /// The connection while the daemon still serves a snapshot, for [`detach`] after the
    /// cleanup; `None` when an earlier run saw them all merged and no daemon serves them any
    /// more (after a reboot).
    pub daemon: Option<Client>,
    /// Whether this run collapsed every snapshot's devices ([`Collapse`]).
    pub collapsed: bool,
}

/// Merges every snapshot of `ota` through the daemon of `config`, reporting its progress
/// (0 to 1), and collapses each merged snapshot's devices where `collapse` says.
pub fn merge(
    ota: &OtaDir,
    config: &Config,
    collapse: Option<Collapse>,
    progress: &mut dyn FnMut(f32),
) -> Result<Merged> {
    let snapshots = ota.snapshots()?;
    let mut merged = true;
    for s in &snapshots {
        merged &= ota.snapshot_state(&s.name)? == Some(SnapshotState::MergeCompleted);
    }
    if merged && ota.state()? != Some(UpdateState::Unverified) {
        if !config.socket.exists() {
            return Ok(Merged {
                daemon: None,
                collapsed: false,
            });
        }
        // A daemon without a handler for the name answers snapshot-merge-failed.
        let mut client = Client::connect(config)?;
        let mut serving = false;
        for s in &snapshots {
            serving |= client.status(&s.name)? != SnapshotMergeStatus::Failed;
        }
        if !serving {
            return Ok(Merged {
                daemon: None,
                collapsed: false,
            });
        }
        // Merged by an earlier run that ended before collapsing them all: collapsed again
        // (libsnapshot's `CheckTargetMergeState` does so for a MERGE_COMPLETED snapshot whose
        // device is still there, snapshot.cpp:1350-1353); a collapsed one is left as it is.
        let collapsed = collapse_all(collapse, &mut client, &snapshots, &mut Vec::new());
        return Ok(Merged {
            daemon: Some(client),
            collapsed,
        });
    }
    let mut client = Client::connect(config)?;
    if ota.state()? == Some(UpdateState::Unverified) {
        ota.write_state(UpdateState::Merging)?;
        ota.write_merge_phase(snapshots.iter().any(first_phase))?;
    }
    // The snapshots this run collapsed, each as soon as its merge completed.
    let mut done = Vec::new();
    let mut lost = 0;
    loop {
        let mut on_complete = |client: &mut Client, name: &str| {
            if let Some(c) = collapse {
                if collapse_one(c, client, name) {
                    done.push(name.to_owned());
                }
            }
        };
        match poll(ota, &snapshots, &mut client, progress, &mut on_complete) {
            Ok(true) => {
                // Those merged before this run, or whose collapse failed, are tried (again).
                let collapsed = collapse_all(collapse, &mut client, &snapshots, &mut done);
                return Ok(Merged {
                    daemon: Some(client),
                    collapsed,
                });
            }
            Ok(false) => lost = 0,
            Err(Failure::Daemon(e)) if lost < RECONNECTS && reconnectable(&e) => {
                lost += 1;
                log::warn!("snapuserd: {e}; connecting again ({lost}/{RECONNECTS})");
                client = match Client::connect(config) {
                    Ok(c) => c,
                    Err(e) => return Err(failed(ota, e.into())),
                };
                continue;
            }
            Err(Failure::Daemon(e)) => return Err(failed(ota, e.into())),
            Err(Failure::Merge(e)) => return Err(failed(ota, e)),
        }
        std::thread::sleep(config.poll_interval.max(Duration::from_millis(1)));
    }
}

/// Collapses each of `snapshots` not in `done` (adding it there when collapsed): whether all
/// are. Without `collapse`, none is.
fn collapse_all(
    collapse: Option<Collapse>,
    client: &mut Client,
    snapshots: &[SnapshotSpace],
    done: &mut Vec<String>,
) -> bool {
    let Some(c) = collapse else {
        return false;
    };
    for s in snapshots {
        if !done.contains(&s.name) && collapse_one(c, client, &s.name) {
            done.push(s.name.clone());
        }
    }
    snapshots.iter().all(|s| done.contains(&s.name))
}

/// libsnapshot's `CollapseSnapshotDevice` for userspace snapshots and the unmapping of
/// `DeleteSnapshot` (AOSP system/core `fs_mgr/libsnapshot/snapshot.cpp`), for merged snapshot
/// `name`:
/// 1. the live device `name` (snapuserd's dm-user device: `GetDmUserCowName` is the snapshot's
///    own name, :159-168) reloaded with the base partition's table from the running slot's
///    metadata, in place, so that what is mounted on it stays mounted (`CreateDmTable`,
///    `LoadTableAndActivate`, :1664-1681);
/// 2. `delete,<name>`, answered `success` once the daemon's handler, whose dm-user target just
///    went, has ended and let go of the base and the COW (`WaitForDeviceDelete`, :1701-1706);
/// 3. `<name>-base` and `<name>-src` removed if there (`GetBaseDeviceName`,
///    `GetSourceDeviceName`, :1709-1717), then the COW's devices `<name>-cow` and
///    `<name>-cow-img` (`UnmapCowDevices`, :2876-2898).
///
/// Whether it all happened. A snapshot without a device `name` (no device-mapper, or not
/// mapped) is not collapsed. A failure is logged, not returned: the merge is done, and the
/// cleanup then waits for the reboot (libsnapshot's MergeNeedsReboot when
/// `OnSnapshotMergeComplete` fails, :1468-1470). Where libsnapshot only logs a `delete` that
/// did not succeed, or a device that could not be removed, this counts it as a failure too:
/// the COW partitions must not go while anything may still read them.
fn collapse_one(c: Collapse, client: &mut Client, name: &str) -> bool {
    match c.device.collapse(c.metadata, name) {
        Ok(true) => {}
        Ok(false) => {
            log::info!("{name} is not a device-mapper device here: nothing to collapse");
            return false;
        }
        Err(e) => {
            log::warn!("collapsing {name} to its base: {e}");
            return false;
        }
    }
    match client.delete(name) {
        Ok(true) => {}
        Ok(false) => {
            log::warn!("snapuserd answered fail to delete,{name}");
            return false;
        }
        Err(e) => {
            log::warn!("snapuserd: delete,{name}: {e}");
            return false;
        }
    }
    for suffix in ["-base", "-src", "-cow", "-cow-img"] {
        let device = format!("{name}{suffix}");
        if let Err(e) = c.device.unmap_named(&device) {
            log::warn!("removing {device}: {e}");
            return false;
        }
    }
    log::info!("collapsed {name} to its base partition");
    true
}

/// Tells the daemon the merge is over (libsnapshot's `AcknowledgeMergeSuccess`): it stops
/// listening and exits once its handlers end. A failure is only logged: the merge is done.
pub fn detach(client: Client) {
    if let Err(e) = client.detach() {
        log::warn!("snapuserd: detach: {e}");
    }
}

enum Failure {
    /// Talking to the daemon failed.
    Daemon(SnapuserdError),
    /// The merge failed (or our state could not be written).
    Merge(crate::error::Error),
}

impl From<SnapuserdError> for Failure {
    fn from(e: SnapuserdError) -> Self {
        Failure::Daemon(e)
    }
}

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Self {
        Failure::Merge(e)
    }
}

fn reconnectable(e: &SnapuserdError) -> bool {
    matches!(
        e,
        SnapuserdError::Disconnected(_)
            | SnapuserdError::Timeout { .. }
            | SnapuserdError::Io { .. }
    )
}

/// The state MergeFailed, then `e` (a failure to write the state is logged: `e` says more).
fn failed(ota: &OtaDir, e: crate::error::Error) -> crate::error::Error {
    if let Err(w) = ota.write_state(UpdateState::MergeFailed) {
        log::error!("recording the failed merge: {w}");
    }
    e.context("merging through snapuserd")
}

/// One round: each unfinished snapshot's state asked (and initiated when it is its turn), the
/// progress reported. Whether every snapshot is complete.
fn poll(
    ota: &OtaDir,
    snapshots: &[SnapshotSpace],
    client: &mut Client,
    progress: &mut dyn FnMut(f32),
    on_complete: &mut dyn FnMut(&mut Client, &str),
) -> std::result::Result<bool, Failure> {
    let mut states = Vec::with_capacity(snapshots.len());
    for s in snapshots {
        states.push(ota.snapshot_state(&s.name)?);
    }
    let done = |st: &Option<SnapshotState>| *st == Some(SnapshotState::MergeCompleted);
    let first_pending = snapshots
        .iter()
        .zip(&states)
        .any(|(s, st)| first_phase(s) && !done(st));
    let mut complete = true;
    for (s, st) in snapshots.iter().zip(&states) {
        if done(st) {
            continue;
        }
        let name = s.name.as_str();
        match client.status(name)? {
            SnapshotMergeStatus::Failed => {
                return Err(Failure::Merge(crate::err!(
                    InstallFailed,
                    "snapuserd reports that merging {name} failed"
                )))
            }
            SnapshotMergeStatus::Complete => {
                log::info!("snapuserd merged {name}");
                ota.set_snapshot_state(name, SnapshotState::MergeCompleted)?;
                on_complete(client, name);
                continue;
            }
            SnapshotMergeStatus::Merging => {
                if *st != Some(SnapshotState::Merging) {
                    ota.set_snapshot_state(name, SnapshotState::Merging)?;
                }
            }
            // Not merging: never initiated (it waits for its phase, or we were killed
            // before asking), or the daemon restarted during its merge.
            SnapshotMergeStatus::Snapshot => {
                let resuming = *st == Some(SnapshotState::Merging);
                if !resuming && !first_phase(s) && first_pending {
                    complete = false;
                    continue;
                }
                log::info!(
                    "asking snapuserd to {} the merge of {name}",
                    if resuming { "resume" } else { "start" }
                );
                if !resuming && !first_phase(s) {
                    ota.write_merge_phase(false)?;
                }
                if !client.initiate_merge(name)? {
                    return Err(Failure::Merge(crate::err!(
                        InstallFailed,
                        "snapuserd refused to merge {name}"
                    )));
                }
                if !resuming {
                    ota.set_snapshot_state(name, SnapshotState::Merging)?;
                }
            }
        }
        complete = false;
    }
    if !complete {
        let percent = client.merge_percent()?;
        progress((percent / 100.0) as f32);
    }
    Ok(complete)
}
