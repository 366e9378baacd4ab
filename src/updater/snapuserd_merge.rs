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

use std::time::Duration;

use super::ota_state::UpdateState;
use super::snapshot_state::{OtaDir, SnapshotState};
use crate::error::Result;
use crate::lp::SnapshotSpace;
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

/// Merges every snapshot of `ota` through the daemon of `config`, reporting its progress
/// (0 to 1). Returns the connection while the daemon still serves a snapshot (the running
/// partitions may be its dm-user devices), for [`detach`] after the cleanup; `None` when an
/// earlier run saw them all merged and no daemon serves them any more (after a reboot).
pub fn merge(
    ota: &OtaDir,
    config: &Config,
    progress: &mut dyn FnMut(f32),
) -> Result<Option<Client>> {
    let snapshots = ota.snapshots()?;
    let mut merged = true;
    for s in &snapshots {
        merged &= ota.snapshot_state(&s.name)? == Some(SnapshotState::MergeCompleted);
    }
    if merged && ota.state()? != Some(UpdateState::Unverified) {
        if !config.socket.exists() {
            return Ok(None);
        }
        // A daemon without a handler for the name answers snapshot-merge-failed.
        let mut client = Client::connect(config)?;
        for s in &snapshots {
            if client.status(&s.name)? != SnapshotMergeStatus::Failed {
                return Ok(Some(client));
            }
        }
        return Ok(None);
    }
    let mut client = Client::connect(config)?;
    if ota.state()? == Some(UpdateState::Unverified) {
        ota.write_state(UpdateState::Merging, "")?;
        ota.write_merge_phase(snapshots.iter().any(first_phase))?;
    }
    let mut lost = 0;
    loop {
        match poll(ota, &snapshots, &mut client, progress) {
            Ok(true) => return Ok(Some(client)),
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
    if let Err(w) = ota.write_state(UpdateState::MergeFailed, "") {
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
