//! Virtual A/B: libsnapshot's `/metadata/ota/state`, read to never break another updater's
//! snapshot update or merge.
//!
//! The file holds a `SnapshotUpdateStatus` protobuf (snapshot.proto: field 1 `state`, an
//! `UpdateState`), or, on devices that wrote it before that proto existed, the state's name as
//! text (libsnapshot's `UpdateStateFromString` still reads both). An empty or absent file is
//! `None`. abupdate only reads it: it never makes snapshot updates, and cancelling another's
//! would mean deleting its COW images, which only libsnapshot (through gsid) may do.

use std::path::Path;

use protobuf::CodedInputStream;

use crate::bail;
use crate::error::{Error, Result};

/// libsnapshot's `UpdateState`, with its proto numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateState {
    /// No update or merge in progress.
    None = 0,
    /// An update is being applied.
    Initiated = 1,
    /// An update is applied but its slot has not booted successfully yet.
    Unverified = 2,
    /// The snapshots are being merged.
    Merging = 3,
    /// A merge finished but its cleanup needs a reboot.
    MergeNeedsReboot = 4,
    /// The merge completed; not yet acknowledged.
    MergeCompleted = 5,
    /// The merge failed.
    MergeFailed = 6,
    /// The update was cancelled (a rollback, or a flash).
    Cancelled = 7,
}

impl UpdateState {
    fn from_number(n: u32) -> Option<Self> {
        use UpdateState::*;
        [
            None,
            Initiated,
            Unverified,
            Merging,
            MergeNeedsReboot,
            MergeCompleted,
            MergeFailed,
            Cancelled,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }

    fn from_text(text: &str) -> Option<Self> {
        use UpdateState::*;
        Some(match text {
            "" | "none" => None,
            "initiated" => Initiated,
            "unverified" => Unverified,
            "merging" => Merging,
            "merge-completed" => MergeCompleted,
            "merge-needs-reboot" => MergeNeedsReboot,
            "merge-failed" => MergeFailed,
            "cancelled" => Cancelled,
            _ => return Option::None,
        })
    }

    /// Whether a snapshot update is under way or its merge is not finished: writing the
    /// other slot's metadata now would break it. (`Initiated`: snapshots are being written;
    /// `Unverified`: the new slot boots from snapshots; `Merging`, `MergeNeedsReboot`,
    /// `MergeFailed`: the merge must still run to completion.)
    pub fn is_pending(self) -> bool {
        !matches!(
            self,
            UpdateState::None | UpdateState::MergeCompleted | UpdateState::Cancelled
        )
    }
}

/// Parses the state file's content: a state name, else the protobuf. (libsnapshot tries the
/// protobuf first; some names, e.g. `merge-completed`, happen to be well-formed protobufs
/// too, so a known name is taken as the name.)
pub fn parse(bytes: &[u8]) -> Result<UpdateState> {
    if let Some(state) = std::str::from_utf8(bytes)
        .ok()
        .and_then(UpdateState::from_text)
    {
        return Ok(state);
    }
    parse_proto(bytes).ok_or_else(|| {
        crate::err!(
            MergePending,
            "the Virtual A/B state ({} bytes) is neither a SnapshotUpdateStatus nor a state name; \
             refusing rather than risk another updater's merge",
            bytes.len()
        )
    })
}

/// Field 1 of a `SnapshotUpdateStatus`, every other field skipped; `None` unless the whole
/// buffer is a well-formed message.
fn parse_proto(bytes: &[u8]) -> Option<UpdateState> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut state = 0u32;
    loop {
        let tag = input.read_raw_tag_or_eof().ok()?;
        let Some(tag) = tag else { break };
        if tag == 1 << 3 {
            state = input.read_uint32().ok()?;
        } else {
            let wire_type = protobuf::rt::WireType::new(tag & 7)?;
            if tag >> 3 == 0 {
                return None;
            }
            input.skip_field(wire_type).ok()?;
        }
    }
    UpdateState::from_number(state)
}

/// Refuses with 39 when the state file at `path` says a snapshot update or merge is pending.
/// Returns the state, or `None` when there is no state file.
pub fn check(path: &Path) -> Result<Option<UpdateState>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let state = parse(&bytes)?;
    if state.is_pending() {
        bail!(
            MergePending,
            "{} says a Virtual A/B snapshot update is {state:?}: it must finish (merge) before \
             another update",
            path.display()
        );
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_and_legacy_text() {
        // state = Merging (3), sectors_allocated = 300 (field 2), source_build_fingerprint (8).
        let proto = [0x08, 0x03, 0x10, 0xac, 0x02, 0x42, 0x02, b'f', b'p'];
        assert_eq!(parse(&proto).unwrap(), UpdateState::Merging);
        assert_eq!(parse(b"").unwrap(), UpdateState::None);
        assert_eq!(parse(&[0x08, 0x05]).unwrap(), UpdateState::MergeCompleted);
        assert_eq!(parse(b"unverified").unwrap(), UpdateState::Unverified);
        assert_eq!(parse(b"none").unwrap(), UpdateState::None);
        assert_eq!(
            parse(b"\xff\xfe garbage").unwrap_err().code,
            crate::ErrorCode::MergePending
        );
        assert!(UpdateState::Initiated.is_pending());
        assert!(UpdateState::MergeFailed.is_pending());
        assert!(!UpdateState::Cancelled.is_pending());
    }

    #[test]
    fn check_refuses_pending_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert_eq!(check(&path).unwrap(), None);
        std::fs::write(&path, [0x08, 0x02]).unwrap();
        assert_eq!(
            check(&path).unwrap_err().code,
            crate::ErrorCode::MergePending
        );
        std::fs::write(&path, b"merge-completed").unwrap();
        assert_eq!(check(&path).unwrap(), Some(UpdateState::MergeCompleted));
    }
}
