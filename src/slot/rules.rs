//! The boot HAL's rules for the `bootloader_control` record (libboot_control's `BootControl`),
//! as pure methods: the misc backend loads the record, applies one of these and stores it.

use super::control::{BootloaderControl, MAX_SLOTS};
use super::Slot;
use crate::error::Result;

/// Priority of the slot `set_active` picks; other slots at this priority drop one below it.
pub const ACTIVE_PRIORITY: u8 = 15;
/// Tries `set_active` grants: the bootloader rolls back after this many unsuccessful boots.
pub const ACTIVE_TRIES: u8 = 6;
/// Priority of every slot in a reinitialised record.
pub const DEFAULT_PRIORITY: u8 = 7;
/// Tries of every slot in a reinitialised record (`kDefaultBootAttempts`).
pub const DEFAULT_TRIES: u8 = 7;

impl BootloaderControl {
    /// `SetActiveBootSlot`: `slot` gets priority 15 and 6 tries; any other slot at priority 15
    /// drops to 14, so `slot` alone is the highest. The successful bit is left alone: a slot
    /// that booted fine before stays marked so until it is rewritten (`set_unbootable`).
    /// `verity_corrupted` is cleared only when switching to the other slot: re-activating the
    /// running slot (cancelling an update) must not hide corruption found on it.
    pub fn set_active(&mut self, slot: Slot, current: Slot) -> Result<()> {
        self.check(slot)?;
        let in_use = self.slots_in_use();
        for (i, entry) in self.slot_info.iter_mut().enumerate().take(in_use) {
            if i != slot.index() && entry.priority >= ACTIVE_PRIORITY {
                entry.priority = ACTIVE_PRIORITY - 1;
            }
        }
        let entry = &mut self.slot_info[slot.index()];
        entry.priority = ACTIVE_PRIORITY;
        entry.tries_remaining = ACTIVE_TRIES;
        if slot != current {
            entry.verity_corrupted = false;
        }
        Ok(())
    }

    /// `MarkBootSuccessful` for `slot` (the HAL only ever passes the running slot): successful,
    /// and tries back to 1, because a slot that succeeded on its last try would otherwise be
    /// left with 0 tries, which means unbootable.
    pub fn mark_successful(&mut self, slot: Slot) -> Result<()> {
        self.check(slot)?;
        let entry = &mut self.slot_info[slot.index()];
        entry.successful_boot = true;
        entry.tries_remaining = 1;
        Ok(())
    }

    /// `SetSlotAsUnbootable`: 0 tries and not successful. The priority is kept; tries alone
    /// decide bootability, and `set_active` restores them.
    pub fn set_unbootable(&mut self, slot: Slot) -> Result<()> {
        self.check(slot)?;
        let entry = &mut self.slot_info[slot.index()];
        entry.successful_boot = false;
        entry.tries_remaining = 0;
        Ok(())
    }

    /// `IsSlotBootable`: tries left. (Priority is not consulted, as in the HAL.)
    pub fn is_bootable(&self, slot: Slot) -> Result<bool> {
        self.check(slot)?;
        Ok(self.slot(slot).tries_remaining != 0)
    }

    /// `IsSlotMarkedSuccessful`: successful and still bootable.
    pub fn is_marked_successful(&self, slot: Slot) -> Result<bool> {
        self.check(slot)?;
        let entry = self.slot(slot);
        Ok(entry.successful_boot && entry.tries_remaining != 0)
    }

    /// `GetActiveBootSlot`: the slot of strictly highest priority, the running slot on a tie.
    /// Slots beyond B are not considered: abupdate cannot name them.
    pub fn active_slot(&self, current: Slot) -> Slot {
        let mut active = current;
        for slot in Slot::ALL.into_iter().take(self.slots_in_use()) {
            if self.slot(slot).priority > self.slot(active).priority {
                active = slot;
            }
        }
        active
    }

    /// Whether the record has an entry in use for `slot` (the HAL's `IsValidSlot`).
    pub fn check(&self, slot: Slot) -> Result<()> {
        if slot.index() < self.slots_in_use() {
            Ok(())
        } else {
            crate::bail!(
                SlotError,
                "slot {slot} is not in use (misc records {} slots)",
                self.nb_slot
            )
        }
    }

    /// `nb_slot`, bounded by the entries the record has.
    pub fn slots_in_use(&self) -> usize {
        usize::from(self.nb_slot).min(MAX_SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::control::tests::{reseal, vector};
    use crate::ErrorCode;

    fn state(rec: &BootloaderControl, slot: Slot) -> (u8, u8, bool) {
        let e = rec.slot(slot);
        (e.priority(), e.tries_remaining(), e.successful_boot())
    }

    #[test]
    fn set_active_other_slot() {
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.set_active(Slot::B, Slot::A).unwrap();
        assert_eq!(state(&rec, Slot::B), (15, 6, false));
        assert_eq!(state(&rec, Slot::A), (7, 7, true));
        assert_eq!(rec.active_slot(Slot::A), Slot::B);
        // Switching back lowers B from 15 to 14 so that A alone is highest.
        rec.set_active(Slot::A, Slot::A).unwrap();
        assert_eq!(state(&rec, Slot::A), (15, 6, true));
        assert_eq!(state(&rec, Slot::B), (14, 6, false));
        assert_eq!(rec.active_slot(Slot::A), Slot::A);
    }

    #[test]
    fn set_active_clears_verity_only_when_switching() {
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.slot_info[0].verity_corrupted = true;
        rec.slot_info[1].verity_corrupted = true;
        rec.set_active(Slot::A, Slot::A).unwrap();
        assert!(rec.slot(Slot::A).verity_corrupted());
        rec.set_active(Slot::B, Slot::A).unwrap();
        assert!(!rec.slot(Slot::B).verity_corrupted());
    }

    #[test]
    fn set_active_lowers_every_other_top_slot() {
        // With four slots in use, slots C and D at 15 drop too.
        let mut bytes = vector();
        bytes[9] = 4;
        bytes[12..20].copy_from_slice(&[0x7f, 0, 0x7f, 0, 0x7f, 0, 0x7f, 0]);
        reseal(&mut bytes);
        let mut rec = BootloaderControl::parse(&bytes).unwrap();
        rec.set_active(Slot::B, Slot::A).unwrap();
        let priorities: Vec<u8> = rec.slot_info.iter().map(|e| e.priority()).collect();
        assert_eq!(priorities, [14, 15, 14, 14]);
    }

    #[test]
    fn mark_successful_and_unbootable() {
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.set_active(Slot::B, Slot::A).unwrap();
        rec.mark_successful(Slot::B).unwrap();
        assert_eq!(state(&rec, Slot::B), (15, 1, true));
        assert!(rec.is_bootable(Slot::B).unwrap());
        assert!(rec.is_marked_successful(Slot::B).unwrap());

        rec.set_unbootable(Slot::B).unwrap();
        assert_eq!(state(&rec, Slot::B), (15, 0, false));
        assert!(!rec.is_bootable(Slot::B).unwrap());
        assert!(!rec.is_marked_successful(Slot::B).unwrap());
        // Still the highest priority, so still "active", but the bootloader will skip it.
        assert_eq!(rec.active_slot(Slot::A), Slot::B);
        // set_active undoes set_unbootable.
        rec.set_active(Slot::B, Slot::A).unwrap();
        assert!(rec.is_bootable(Slot::B).unwrap());
    }

    #[test]
    fn successful_needs_tries_left() {
        // A slot marked successful whose tries a bootloader zeroed is not reported successful.
        let mut rec = BootloaderControl::new_default(Slot::A);
        rec.slot_info[0].tries_remaining = 0;
        assert!(rec.slot(Slot::A).successful_boot());
        assert!(!rec.is_marked_successful(Slot::A).unwrap());
        assert!(!rec.is_bootable(Slot::A).unwrap());
    }

    #[test]
    fn active_slot_ties_go_to_the_running_slot() {
        let rec = BootloaderControl::new_default(Slot::A);
        assert_eq!(rec.active_slot(Slot::A), Slot::A);
        assert_eq!(rec.active_slot(Slot::B), Slot::B);
    }

    #[test]
    fn slots_beyond_nb_slot_are_invalid() {
        let mut bytes = vector();
        bytes[9] = 1;
        reseal(&mut bytes);
        let mut rec = BootloaderControl::parse(&bytes).unwrap();
        let before = rec.clone();
        for result in [
            rec.set_active(Slot::B, Slot::A),
            rec.set_unbootable(Slot::B),
            rec.mark_successful(Slot::B),
            rec.is_bootable(Slot::B).map(drop),
        ] {
            assert_eq!(result.map_err(|e| e.code).err(), Some(ErrorCode::SlotError));
        }
        assert_eq!(rec, before);
        assert_eq!(rec.active_slot(Slot::A), Slot::A);
    }
}
