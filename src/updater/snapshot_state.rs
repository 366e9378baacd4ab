//! Platform adapter: libsnapshot's state in `/metadata/ota` (a host device directory:
//! `DIR/metadata/ota`), written as libsnapshot writes it, so that first-stage init maps the
//! new slot's snapshots and snapuserd finds their sizes:
//!
//! - `state`: a `SnapshotUpdateStatus` (proto/snapshot.proto): Initiated while the COWs are
//!   written, Unverified once the update is applied (the new slot boots from snapshots),
//!   Merging, then None when the merge and its cleanup are done;
//! - `snapshots/<name>_<slot>`: one `SnapshotStatus` per snapshot (its sizes; CREATED, MERGING,
//!   MERGE_COMPLETED);
//! - `snapshot-boot`: the source slot's suffix, written when the update is applied; booting a
//!   slot with another suffix is booting the update (libsnapshot's `GetCurrentSlot`).
//!
//! Each file is replaced atomically ([`crate::state_file`]).

use std::path::PathBuf;

use protobuf::{EnumOrUnknown, Message};

use super::ota_state::UpdateState;
use crate::error::Result;
use crate::lp::SnapshotSpace;
use crate::payload::proto::snapshot as pb;
use crate::state_file;
use crate::sysprop::{self, Properties};

/// One snapshot's `SnapshotState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotState {
    /// Created, its COW being written or waiting for the merge.
    Created,
    /// Being merged.
    Merging,
    /// Merged into its base.
    MergeCompleted,
}

/// The COW settings a snapshot records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CowSettings {
    /// `compression_algorithm` ("lz4", "gz", ...).
    pub compression: String,
    /// `compression_factor` in bytes.
    pub compression_factor: u64,
    /// The manifest's `estimate_cow_size`.
    pub estimated_cow_size: u64,
    /// The manifest's `estimate_op_count_max`.
    pub estimated_ops: u64,
    /// The read-ahead, in KiB, init sets on the COW and base devices it hands snapuserd
    /// ([`UpdateOrigin::read_ahead_size`]).
    pub read_ahead_size: u32,
}

/// What libsnapshot records of the running build when an update's snapshots are created
/// (`CreateUpdateSnapshots`) and carries over until the state is None: the source build, and
/// how the snapuserd that init starts for the new slot's snapshots runs (`PerformInitTransition`
/// gives it `-io_uring` and `-o_direct` from these), from the device's properties
/// ([`UpdateOrigin::from_properties`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateOrigin {
    /// `ro.build.fingerprint`.
    pub fingerprint: String,
    /// `ro.virtual_ab.io_uring.enabled`.
    pub io_uring: bool,
    /// `ro.virtual_ab.o_direct.enabled`.
    pub o_direct: bool,
    /// `ro.virtual_ab.cow_op_merge_size` (0: snapuserd's own).
    pub cow_op_merge_size: u32,
    /// `ro.virtual_ab.num_worker_threads` (0: snapuserd's own).
    pub num_worker_threads: u32,
    /// `ro.virtual_ab.read_ahead_size`, in KiB ([`DEFAULT_READ_AHEAD_KB`] when unset), which
    /// each snapshot records (`SnapshotStatus.read_ahead_size`) and init sets on the devices
    /// it hands snapuserd (`PerformInitTransition`: `SetReadAheadSize`).
    pub read_ahead_size: u32,
}

/// libsnapshot's `kReadAheadSizeKb`.
pub const DEFAULT_READ_AHEAD_KB: u32 = 32;

impl Default for UpdateOrigin {
    fn default() -> Self {
        UpdateOrigin {
            fingerprint: String::new(),
            io_uring: false,
            o_direct: false,
            cow_op_merge_size: 0,
            num_worker_threads: 0,
            read_ahead_size: DEFAULT_READ_AHEAD_KB,
        }
    }
}

impl UpdateOrigin {
    /// Read as libsnapshot reads them (utility.cpp `GetIouringEnabledProperty`,
    /// `GetODirectEnabledProperty`; snapshot.cpp `GetUintProperty`), unset ones as false or 0.
    pub fn from_properties(props: &dyn Properties) -> Result<UpdateOrigin> {
        Ok(UpdateOrigin {
            fingerprint: props.get("ro.build.fingerprint")?.unwrap_or_default(),
            io_uring: sysprop::get_bool(props, "ro.virtual_ab.io_uring.enabled", false)?,
            o_direct: sysprop::get_bool(props, "ro.virtual_ab.o_direct.enabled", false)?,
            cow_op_merge_size: sysprop::get_u32(props, "ro.virtual_ab.cow_op_merge_size", 0)?,
            num_worker_threads: sysprop::get_u32(props, "ro.virtual_ab.num_worker_threads", 0)?,
            read_ahead_size: sysprop::get_u32(
                props,
                "ro.virtual_ab.read_ahead_size",
                DEFAULT_READ_AHEAD_KB,
            )?,
        })
    }
}

/// A new `SnapshotUpdateStatus` in `state`: snapuserd's userspace snapshots while there is an
/// update.
fn status(state: UpdateState) -> pb::SnapshotUpdateStatus {
    let mut s = pb::SnapshotUpdateStatus::new();
    s.state = EnumOrUnknown::new(update_state(state));
    s.using_snapuserd = state != UpdateState::None;
    s.userspace_snapshots = state != UpdateState::None;
    s
}

/// `/metadata/ota` or its host stand-in.
#[derive(Clone, Debug)]
pub struct OtaDir {
    root: PathBuf,
}

fn update_state(s: UpdateState) -> pb::UpdateState {
    match s {
        UpdateState::None => pb::UpdateState::None,
        UpdateState::Initiated => pb::UpdateState::Initiated,
        UpdateState::Unverified => pb::UpdateState::Unverified,
        UpdateState::Merging => pb::UpdateState::Merging,
        UpdateState::MergeNeedsReboot => pb::UpdateState::MergeNeedsReboot,
        UpdateState::MergeCompleted => pb::UpdateState::MergeCompleted,
        UpdateState::MergeFailed => pb::UpdateState::MergeFailed,
        UpdateState::Cancelled => pb::UpdateState::Cancelled,
    }
}

fn pb_state(s: SnapshotState) -> pb::SnapshotState {
    match s {
        SnapshotState::Created => pb::SnapshotState::CREATED,
        SnapshotState::Merging => pb::SnapshotState::MERGING,
        SnapshotState::MergeCompleted => pb::SnapshotState::MERGE_COMPLETED,
    }
}

fn encode(m: &impl Message) -> Result<Vec<u8>> {
    m.write_to_bytes()
        .map_err(|e| crate::err!(DeviceError, "encoding libsnapshot state: {e}"))
}

impl OtaDir {
    /// The directory holding `state` (the parent of [`crate::updater::UpdaterParts::ota_state`]).
    pub fn new(root: impl Into<PathBuf>) -> OtaDir {
        OtaDir { root: root.into() }
    }

    /// The `state` file.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The status file of snapshot `name` (`<name>_<slot>`).
    pub fn snapshot_path(&self, name: &str) -> PathBuf {
        self.root.join("snapshots").join(name)
    }

    /// The `snapshot-boot` indicator.
    pub fn boot_indicator_path(&self) -> PathBuf {
        self.root.join("snapshot-boot")
    }

    /// Where the merge of snapshot `name` keeps its own checkpoints.
    pub fn merge_state_path(&self, name: &str) -> PathBuf {
        self.own_merge_dir().join(name)
    }

    /// Writes the state Initiated of a new or resumed update, with what `origin` says of the
    /// running build (libsnapshot's `CreateUpdateSnapshots`); the merge phase starts over.
    pub fn write_initiated(&self, origin: &UpdateOrigin) -> Result<()> {
        let mut s = status(UpdateState::Initiated);
        s.source_build_fingerprint = origin.fingerprint.clone();
        s.io_uring_enabled = origin.io_uring;
        s.o_direct = origin.o_direct;
        s.cow_op_merge_size = origin.cow_op_merge_size;
        s.num_worker_threads = origin.num_worker_threads;
        self.write_status(&s)
    }

    /// Writes the update's state, any but Initiated ([`OtaDir::write_initiated`]). Between
    /// Initiated and None, what was recorded at Initiated and the merge phase are carried
    /// over, as libsnapshot's `WriteUpdateState` does.
    pub fn write_state(&self, state: UpdateState) -> Result<()> {
        let mut s = status(state);
        if state != UpdateState::None {
            if let Some(old) = self.read_status()? {
                s.merge_phase = old.merge_phase;
                s.source_build_fingerprint = old.source_build_fingerprint;
                s.io_uring_enabled = old.io_uring_enabled;
                s.legacy_snapuserd = old.legacy_snapuserd;
                s.o_direct = old.o_direct;
                s.cow_op_merge_size = old.cow_op_merge_size;
                s.num_worker_threads = old.num_worker_threads;
            }
        }
        self.write_status(&s)
    }

    fn write_status(&self, s: &pb::SnapshotUpdateStatus) -> Result<()> {
        state_file::create_dir(&self.root)?;
        state_file::replace(&self.state_path(), &encode(s)?)
    }

    /// Records libsnapshot's `merge_phase`: the first (only the snapshots that shrank merge)
    /// or the second (the others).
    pub fn write_merge_phase(&self, first: bool) -> Result<()> {
        let Some(mut s) = self.read_status()? else {
            crate::bail!(DeviceError, "no update state to record the merge phase in");
        };
        s.merge_phase = EnumOrUnknown::new(if first {
            pb::MergePhase::FIRST_PHASE
        } else {
            pb::MergePhase::SECOND_PHASE
        });
        state_file::replace(&self.state_path(), &encode(&s)?)
    }

    /// The state file's `SnapshotUpdateStatus`, `None` when there is none (or it is a state
    /// name, which only older updaters write).
    fn read_status(&self) -> Result<Option<pb::SnapshotUpdateStatus>> {
        Ok(state_file::read(&self.state_path())?
            .and_then(|b| pb::SnapshotUpdateStatus::parse_from_bytes(&b).ok()))
    }

    /// The update's state, `None` when there is no state file.
    pub fn state(&self) -> Result<Option<UpdateState>> {
        match state_file::read(&self.state_path())? {
            None => Ok(None),
            Some(bytes) => super::ota_state::parse(&bytes).map(Some),
        }
    }

    /// Writes snapshot `space`'s status in `state`.
    pub fn write_snapshot(
        &self,
        space: &SnapshotSpace,
        cow: &CowSettings,
        state: SnapshotState,
    ) -> Result<()> {
        let dir = self.root.join("snapshots");
        state_file::create_dir(&self.root)?;
        state_file::create_dir(&dir)?;
        let mut s = pb::SnapshotStatus::new();
        s.name = space.name.clone();
        s.state = EnumOrUnknown::new(pb_state(state));
        s.device_size = space.device_size;
        s.snapshot_size = space.device_size;
        s.cow_partition_size = space.cow_partition_size;
        s.cow_file_size = space.cow_file_size;
        s.using_snapuserd = true;
        s.old_partition_size = space.old_partition_size;
        s.compression_algorithm = cow.compression.clone();
        s.compression_factor = cow.compression_factor;
        s.estimated_cow_size = cow.estimated_cow_size;
        s.estimated_ops_buffer_size = cow.estimated_ops;
        s.read_ahead_size = cow.read_ahead_size;
        state_file::replace(&self.snapshot_path(&space.name), &encode(&s)?)
    }

    /// Whether the update's state says its snapshots are userspace ones (dm-user, served by
    /// snapuserd: libsnapshot's `UpdateUsesUserSnapshots`); false without a state file.
    pub fn userspace_snapshots(&self) -> Result<bool> {
        Ok(self.read_status()?.is_some_and(|s| s.userspace_snapshots))
    }

    /// Snapshot `name`'s status, `None` when it has no status file.
    fn read_snapshot(&self, name: &str) -> Result<Option<pb::SnapshotStatus>> {
        let path = self.snapshot_path(name);
        let Some(bytes) = state_file::read(&path)? else {
            return Ok(None);
        };
        pb::SnapshotStatus::parse_from_bytes(&bytes)
            .map(Some)
            .map_err(|e| crate::err!(DeviceError, "{} is no SnapshotStatus: {e}", path.display()))
    }

    /// Snapshot `name`'s state, `None` when it has no status file (or an unknown state).
    pub fn snapshot_state(&self, name: &str) -> Result<Option<SnapshotState>> {
        Ok(self
            .read_snapshot(name)?
            .and_then(|s| match s.state.enum_value() {
                Ok(pb::SnapshotState::CREATED) => Some(SnapshotState::Created),
                Ok(pb::SnapshotState::MERGING) => Some(SnapshotState::Merging),
                Ok(pb::SnapshotState::MERGE_COMPLETED) => Some(SnapshotState::MergeCompleted),
                _ => None,
            }))
    }

    /// Sets snapshot `name`'s state, keeping the rest of its status (its COW settings).
    pub fn set_snapshot_state(&self, name: &str, state: SnapshotState) -> Result<()> {
        let Some(mut s) = self.read_snapshot(name)? else {
            crate::bail!(DeviceError, "snapshot {name} has no status file");
        };
        s.state = EnumOrUnknown::new(pb_state(state));
        state_file::replace(&self.snapshot_path(name), &encode(&s)?)
    }

    /// Where our own merge keeps its checkpoints; made before it writes the state Merging, so
    /// that a merge under way without it is snapuserd's.
    pub fn own_merge_dir(&self) -> PathBuf {
        self.root.join("merge")
    }

    /// The snapshots with a status file, by name, with their sizes.
    pub fn snapshots(&self) -> Result<Vec<SnapshotSpace>> {
        let dir = self.root.join("snapshots");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(crate::error::Error::io(dir.display(), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| crate::error::Error::io(dir.display(), e))?
                .path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .map_or(true, |n| n.starts_with('.'));
            if hidden {
                continue;
            }
            let Some(bytes) = state_file::read(&path)? else {
                continue;
            };
            let s = pb::SnapshotStatus::parse_from_bytes(&bytes).map_err(|e| {
                crate::err!(DeviceError, "{} is no SnapshotStatus: {e}", path.display())
            })?;
            out.push(SnapshotSpace {
                name: s.name,
                device_size: s.device_size,
                old_partition_size: s.old_partition_size,
                cow_partition_size: s.cow_partition_size,
                cow_file_size: s.cow_file_size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Writes `snapshot-boot` with the source slot's suffix.
    pub fn write_boot_indicator(&self, source_suffix: &str) -> Result<()> {
        state_file::create_dir(&self.root)?;
        state_file::replace(&self.boot_indicator_path(), source_suffix.as_bytes())
    }

    /// The source slot's suffix `snapshot-boot` holds, if any.
    pub fn boot_indicator(&self) -> Result<Option<String>> {
        Ok(state_file::read(&self.boot_indicator_path())?
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
    }

    /// Removes every snapshot's status and merge checkpoints and `snapshot-boot`, then writes
    /// the state None (libsnapshot's `RemoveAllUpdateState`).
    pub fn remove_all(&self) -> Result<()> {
        for space in self.snapshots()? {
            state_file::remove(&self.snapshot_path(&space.name))?;
        }
        let merge = self.own_merge_dir();
        match std::fs::remove_dir_all(&merge) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::Error::io(merge.display(), e)),
        }
        state_file::remove(&self.boot_indicator_path())?;
        self.write_state(UpdateState::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_are_libsnapshot_protos() {
        let dir = tempfile::tempdir().unwrap();
        let ota = OtaDir::new(dir.path().join("ota"));
        assert_eq!(ota.state().unwrap(), None);
        let origin = UpdateOrigin {
            fingerprint: "fp".into(),
            io_uring: true,
            o_direct: true,
            cow_op_merge_size: 64,
            num_worker_threads: 3,
            read_ahead_size: 16,
        };
        ota.write_initiated(&origin).unwrap();
        assert_eq!(ota.state().unwrap(), Some(UpdateState::Initiated));
        let bytes = std::fs::read(ota.state_path()).unwrap();
        let s = pb::SnapshotUpdateStatus::parse_from_bytes(&bytes).unwrap();
        assert_eq!(s.source_build_fingerprint, "fp");
        // Carried over between Initiated and None, as libsnapshot's WriteUpdateState does.
        ota.write_state(UpdateState::Merging).unwrap();
        ota.write_merge_phase(true).unwrap();
        ota.write_state(UpdateState::MergeFailed).unwrap();
        let s =
            pb::SnapshotUpdateStatus::parse_from_bytes(&std::fs::read(ota.state_path()).unwrap())
                .unwrap();
        assert_eq!(s.source_build_fingerprint, "fp");
        assert_eq!(s.merge_phase.enum_value(), Ok(pb::MergePhase::FIRST_PHASE));
        assert!(s.io_uring_enabled && s.o_direct && !s.legacy_snapuserd);
        assert_eq!((s.cow_op_merge_size, s.num_worker_threads), (64, 3));
        assert!(ota.userspace_snapshots().unwrap());
        ota.write_initiated(&UpdateOrigin::default()).unwrap();
        let s =
            pb::SnapshotUpdateStatus::parse_from_bytes(&std::fs::read(ota.state_path()).unwrap())
                .unwrap();
        assert_eq!(s.merge_phase.enum_value(), Ok(pb::MergePhase::NO_MERGE));
        assert!(!s.io_uring_enabled && s.source_build_fingerprint.is_empty());
        let space = SnapshotSpace {
            name: "system_b".into(),
            device_size: 8192,
            old_partition_size: 4096,
            cow_partition_size: 4096,
            cow_file_size: 0,
        };
        let settings = CowSettings {
            compression: "lz4".into(),
            ..CowSettings::default()
        };
        ota.write_snapshot(&space, &settings, SnapshotState::Created)
            .unwrap();
        assert_eq!(ota.snapshots().unwrap(), vec![space.clone()]);
        assert_eq!(
            ota.snapshot_state("system_b").unwrap(),
            Some(SnapshotState::Created)
        );
        // The state alone changes: the COW settings stay.
        ota.set_snapshot_state("system_b", SnapshotState::Merging)
            .unwrap();
        assert_eq!(
            ota.snapshot_state("system_b").unwrap(),
            Some(SnapshotState::Merging)
        );
        let status = ota.read_snapshot("system_b").unwrap().unwrap();
        assert_eq!(status.compression_algorithm, "lz4");
        assert!(ota
            .set_snapshot_state("vendor_b", SnapshotState::Merging)
            .is_err());
        ota.write_boot_indicator("_a").unwrap();
        assert_eq!(ota.boot_indicator().unwrap().as_deref(), Some("_a"));
        ota.remove_all().unwrap();
        assert!(ota.snapshots().unwrap().is_empty());
        assert_eq!(ota.boot_indicator().unwrap(), None);
        assert_eq!(ota.state().unwrap(), Some(UpdateState::None));
    }
}
