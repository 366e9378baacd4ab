//! The Virtual A/B message in `misc` (libboot_control's `misc_virtual_ab_message`, 64 bytes at
//! 32 KiB, the system space): version 2, magic `0x56740AB0`, the merge status and the slot
//! that set it. libsnapshot keeps it following its update state through the boot HAL's
//! `setSnapshotMergeStatus`; the bootloader reads it to refuse a slot switch during a merge.
//! Only bytes 0-6 are written; the reserved bytes stay as they are.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::slot::Slot;

/// Where the message is in `misc`.
pub const OFFSET: u64 = 32 << 10;
/// `MISC_VIRTUAL_AB_MESSAGE_VERSION`.
pub const VERSION: u8 = 2;
/// `MISC_VIRTUAL_AB_MAGIC_HEADER`.
pub const MAGIC: u32 = 0x5674_0AB0;

/// The boot HAL's `MergeStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeStatus {
    /// No snapshot update.
    None = 0,
    /// Unknown.
    Unknown = 1,
    /// Snapshots written; the new slot not yet merged.
    Snapshotted = 2,
    /// A merge is under way: the old slot is gone.
    Merging = 3,
    /// The update was cancelled.
    Cancelled = 4,
}

/// The status and source slot stored in `misc` at `path`; `None` when no message is there.
pub fn read(path: &Path) -> Result<Option<(u8, u8)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut b = [0u8; 7];
    file.read_exact_at(&mut b, OFFSET)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if b[0] != VERSION || b[1..5] != MAGIC.to_le_bytes() {
        return Ok(None);
    }
    Ok(Some((b[5], b[6])))
}

/// Stores `status` with the running slot `current` as its source slot (libboot_control's
/// `SetMiscVirtualAbMergeStatus`), durably; a missing message is initialised first.
pub fn set_merge_status(path: &Path, status: MergeStatus, current: Slot) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    let mut b = [0u8; 7];
    b[0] = VERSION;
    b[1..5].copy_from_slice(&MAGIC.to_le_bytes());
    b[5] = status as u8;
    b[6] = current.index() as u8;
    file.write_all_at(&b, OFFSET)
        .and_then(|()| file.sync_data())
        .map_err(|e| {
            Error::io(
                format!("writing the Virtual A/B message in {}", path.display()),
                e,
            )
        })
}
