//! What the bootloader does with `bootloader_control` at each boot, as U-Boot's
//! `boot/android_ab.c` (`ab_select_slot`) does it, so tests can play reboots and rollbacks
//! against the records the boot HAL rules produce.
//!
//! At each boot the bootloader picks, among slots that are not verity-corrupted and have tries
//! left, the one of highest priority (ties: successful first, then more tries, then the lower
//! slot). If that slot has not been marked successful it spends one try, so a slot that never
//! gets marked runs out after its tries and the other slot boots instead. It records the slot
//! it picked in `slot_suffix` (`"a"`, `"b"`). A record with a bad CRC is replaced by U-Boot's
//! default: every slot priority 15, 7 tries, not successful.
//!
//! Only slots A and B are considered (U-Boot's `NUM_SLOTS` is 2 as well).

use super::control::{
    BootloaderControl, Corrupt, SlotMetadata, MAX_SLOTS, MISC_OFFSET, RECORD_LEN,
};
use super::{BlockIo, Slot};
use crate::error::{Error, Result};

/// One boot: the slot the bootloader boots, or `None` if no slot is bootable (U-Boot then
/// refuses to boot either slot). `record` is updated as the bootloader updates it.
pub fn select_slot(record: &mut BootloaderControl) -> Option<Slot> {
    let mut chosen: Option<Slot> = None;
    for slot in Slot::ALL.into_iter().take(record.slots_in_use()) {
        let entry = record.slot(slot);
        if entry.verity_corrupted() || entry.tries_remaining() == 0 {
            continue;
        }
        let wins = match chosen {
            None => true,
            Some(best) => better(entry, record.slot(best)),
        };
        if wins {
            chosen = Some(slot);
        }
    }
    let slot = chosen?;
    let entry = &mut record.slot_info[slot.index()];
    if !entry.successful_boot {
        entry.tries_remaining -= 1;
    }
    let name = match slot {
        Slot::A => b"a\0\0\0",
        Slot::B => b"b\0\0\0",
    };
    record.slot_suffix = *name;
    Some(slot)
}

/// One boot on raw record bytes, which are rewritten in place as the bootloader would.
/// A record with a good CRC but foreign magic or version is left alone and refused.
pub fn boot(bytes: &mut [u8; RECORD_LEN]) -> Result<Option<Slot>, Corrupt> {
    let mut record = match BootloaderControl::parse(bytes) {
        Ok(record) => record,
        Err(Corrupt::Crc { .. }) => uboot_default(),
        Err(other) => return Err(other),
    };
    let slot = select_slot(&mut record);
    *bytes = record.encode();
    Ok(slot)
}

/// One boot on a `misc` partition or image.
pub fn boot_misc<I: BlockIo + ?Sized>(misc: &mut I) -> Result<Option<Slot>> {
    let mut bytes = [0u8; RECORD_LEN];
    misc.read_exact_at(&mut bytes, MISC_OFFSET)
        .map_err(|e| Error::io("bootloader: reading misc", e))?;
    let before = bytes;
    let slot = boot(&mut bytes).map_err(|e| crate::err!(SlotError, "bootloader: {e}"))?;
    if bytes != before {
        misc.write_all_at(&bytes, MISC_OFFSET)
            .and_then(|()| misc.sync())
            .map_err(|e| Error::io("bootloader: writing misc", e))?;
    }
    Ok(slot)
}

/// `ab_compare_slots`: whether `a` beats `b`.
fn better(a: &SlotMetadata, b: &SlotMetadata) -> bool {
    let key = |e: &SlotMetadata| (e.priority(), e.successful_boot(), e.tries_remaining());
    key(a) > key(b)
}

/// `ab_control_default`.
fn uboot_default() -> BootloaderControl {
    let mut record = BootloaderControl::new_default(Slot::A);
    record.slot_suffix = *b"a\0\0\0";
    let fresh = SlotMetadata {
        priority: 15,
        tries_remaining: 7,
        ..SlotMetadata::default()
    };
    record.slot_info = [SlotMetadata::default(); MAX_SLOTS];
    for slot in Slot::ALL {
        record.slot_info[slot.index()] = fresh;
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device running A that just installed an update to B.
    fn updated_to_b() -> BootloaderControl {
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.set_unbootable(Slot::B).unwrap();
        // ... the engine writes B ...
        rec.set_active(Slot::B, Slot::A).unwrap();
        rec
    }

    #[test]
    fn unmarked_update_rolls_back_after_its_tries() {
        let mut rec = updated_to_b();
        for attempt in 1..=6 {
            assert_eq!(select_slot(&mut rec), Some(Slot::B), "boot {attempt}");
            assert_eq!(rec.slot(Slot::B).tries_remaining(), 6 - attempt);
            assert_eq!(rec.suffix_slot(), Some(Slot::B));
            // B never reaches mark_boot_successful.
        }
        assert_eq!(select_slot(&mut rec), Some(Slot::A), "boot 7");
        assert_eq!(rec.suffix_slot(), Some(Slot::A));
        assert!(!rec.is_bootable(Slot::B).unwrap());
        // A was successful: booting it spends no tries, so it stays put.
        assert_eq!(rec.slot(Slot::A).tries_remaining(), 7);
        assert_eq!(select_slot(&mut rec), Some(Slot::A));
    }

    #[test]
    fn marked_update_stays() {
        let mut rec = updated_to_b();
        assert_eq!(select_slot(&mut rec), Some(Slot::B));
        rec.mark_successful(Slot::B).unwrap();
        for _ in 0..20 {
            assert_eq!(select_slot(&mut rec), Some(Slot::B));
        }
        assert_eq!(rec.slot(Slot::B).tries_remaining(), 1);
    }

    #[test]
    fn verity_corrupted_slot_is_skipped() {
        let mut rec = updated_to_b();
        rec.slot_info[Slot::B.index()].verity_corrupted = true;
        assert_eq!(select_slot(&mut rec), Some(Slot::A));
    }

    #[test]
    fn no_bootable_slot() {
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.set_unbootable(Slot::A).unwrap();
        rec.set_unbootable(Slot::B).unwrap();
        let before = rec.clone();
        assert_eq!(select_slot(&mut rec), None);
        assert_eq!(rec, before);
    }

    #[test]
    fn equal_priority_prefers_successful_then_tries() {
        let mut rec = BootloaderControl::new_default(Slot::B);
        assert_eq!(select_slot(&mut rec), Some(Slot::B));
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.slot_info[0].successful_boot = false;
        rec.slot_info[0].tries_remaining = 3;
        assert_eq!(select_slot(&mut rec), Some(Slot::B));
    }

    #[test]
    fn corrupt_record_gets_uboot_default() {
        let mut bytes = [0u8; RECORD_LEN];
        assert_eq!(boot(&mut bytes), Ok(Some(Slot::A)));
        let rec = BootloaderControl::parse(&bytes).unwrap();
        assert_eq!(rec.slot(Slot::A).tries_remaining(), 6);
        assert_eq!(rec.slot(Slot::B).tries_remaining(), 7);
        assert_eq!(&bytes[..4], b"a\0\0\0");
    }

    #[test]
    fn foreign_record_is_refused_untouched() {
        let mut bytes = BootloaderControl::new_default(Slot::A).encode();
        bytes[8] = 9;
        crate::slot::control::tests::reseal(&mut bytes);
        let before = bytes;
        assert_eq!(boot(&mut bytes), Err(Corrupt::Version(9)));
        assert_eq!(bytes, before);
    }
}
