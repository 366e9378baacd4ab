//! A/B slot control, sans I/O: which slot boots next, and whether a slot may boot at all.
//!
//! - [`control`]: the `bootloader_control` record libboot_control keeps in `misc`;
//! - [`rules`]: the boot HAL's rules for changing that record, as pure methods;
//! - [`bootloader`]: what a bootloader does with the record at boot, to test rollbacks;
//! - [`BootControl`]: the boot HAL's operations, and [`BlockIo`], the positional I/O a backend
//!   that keeps the record itself needs.
//!
//! The backends (the record on the `misc` partition, the vendor's boot HAL over Binder) open
//! devices and services, so they are platform adapters: [`crate::boot_control`].

pub mod bootloader;
pub mod control;
pub mod rules;

use std::fmt;
use std::io;
use std::str::FromStr;

use crate::error::{Error, Result};

pub use control::{BootloaderControl, Corrupt, SlotMetadata};

/// Positional I/O on the `misc` partition. [`std::fs::File`] implements it (in
/// [`crate::boot_control::misc`]); a test layer can wrap it to record or cut writes and syncs.
/// The backend calls `write_all_at` once per update, then `sync`.
pub trait BlockIo {
    /// Fills `buf` from `offset`; a short read is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes earlier writes durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// One of the two slots of an A/B device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Slot A, suffix `_a`.
    A = 0,
    /// Slot B, suffix `_b`.
    B = 1,
}

impl Slot {
    /// Both slots, in index order.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The slot's number as the boot HAL counts them (A = 0, B = 1).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The slot numbered `index` (0 is A), if any.
    pub fn from_index(index: usize) -> Option<Slot> {
        Slot::ALL.get(index).copied()
    }

    /// The partition name suffix: `"_a"` or `"_b"`.
    pub fn suffix(self) -> &'static str {
        match self {
            Slot::A => "_a",
            Slot::B => "_b",
        }
    }

    /// The slot an update on this one installs to.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// Shown as update_engine names slots: `A`, `B`.
impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Accepts `a`, `b`, `_a`, `_b` (the forms of `ro.boot.slot_suffix` and of the CLI), in either
/// case.
impl FromStr for Slot {
    type Err = Error;

    fn from_str(s: &str) -> Result<Slot> {
        let letter = s.strip_prefix('_').unwrap_or(s);
        match letter {
            "a" | "A" => Ok(Slot::A),
            "b" | "B" => Ok(Slot::B),
            _ => Err(crate::err!(
                SlotError,
                "{s:?} is not a slot (expected a, b, _a or _b)"
            )),
        }
    }
}

/// One slot's state, as `abupdate slots` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotStatus {
    /// The slot.
    pub slot: Slot,
    /// The slot the running system booted from.
    pub current: bool,
    /// The slot the bootloader will try first on the next boot.
    pub active: bool,
    /// `isSlotBootable`.
    pub bootable: bool,
    /// `isSlotMarkedSuccessful`.
    pub successful: bool,
    /// Boot priority (0–15); only known when the backend reads the record itself.
    pub priority: Option<u8>,
    /// Boot attempts left before the bootloader gives up on the slot (0–7); likewise.
    pub tries_remaining: Option<u8>,
}

/// The operations of Android's boot HAL (`android.hardware.boot.IBootControl`) that an updater
/// needs. Slots beyond B do not exist for abupdate.
pub trait BootControl {
    /// How many slots the device has (`getNumberSlots`).
    fn slot_count(&self) -> Result<u32>;

    /// The slot the running system booted from (`getCurrentSlot`).
    fn current_slot(&self) -> Result<Slot>;

    /// The slot the bootloader will try first on the next boot (`getActiveBootSlot`).
    fn active_slot(&self) -> Result<Slot>;

    /// The partition name suffix of `slot` (`getSuffix`).
    fn suffix(&self, slot: Slot) -> Result<String>;

    /// Makes `slot` the one to boot next, with a fresh set of tries (`setActiveBootSlot`).
    /// This also undoes [`set_unbootable`](Self::set_unbootable).
    fn set_active(&mut self, slot: Slot) -> Result<()>;

    /// Records that the current slot booted fine, which stops the bootloader from rolling back
    /// (`markBootSuccessful`).
    fn mark_boot_successful(&mut self) -> Result<()>;

    /// Keeps the bootloader from booting `slot`, e.g. while it is half written
    /// (`setSlotAsUnbootable`).
    fn set_unbootable(&mut self, slot: Slot) -> Result<()>;

    /// `isSlotBootable`.
    fn is_bootable(&self, slot: Slot) -> Result<bool>;

    /// `isSlotMarkedSuccessful`.
    fn is_successful(&self, slot: Slot) -> Result<bool>;

    /// Every slot's state. Backends that read the record themselves also fill in priority and
    /// tries; this default asks the HAL one question at a time and cannot.
    fn slots(&self) -> Result<Vec<SlotStatus>> {
        let count = usize::try_from(self.slot_count()?).unwrap_or(usize::MAX);
        let current = self.current_slot()?;
        let active = self.active_slot()?;
        Slot::ALL
            .into_iter()
            .take(count)
            .map(|slot| {
                Ok(SlotStatus {
                    slot,
                    current: slot == current,
                    active: slot == active,
                    bootable: self.is_bootable(slot)?,
                    successful: self.is_successful(slot)?,
                    priority: None,
                    tries_remaining: None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn slot_names() {
        for (text, slot) in [
            ("a", Slot::A),
            ("_a", Slot::A),
            ("B", Slot::B),
            ("_b", Slot::B),
        ] {
            assert_eq!(text.parse::<Slot>().ok(), Some(slot), "{text}");
        }
        for bad in ["", "_", "c", "_c", "ab", "__a", " a"] {
            let e = bad.parse::<Slot>().err().map(|e| e.code);
            assert_eq!(e, Some(ErrorCode::SlotError), "{bad:?}");
        }
        assert_eq!(Slot::A.suffix(), "_a");
        assert_eq!(Slot::B.suffix(), "_b");
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!(Slot::B.other(), Slot::A);
        assert_eq!(Slot::B.to_string().parse::<Slot>().ok(), Some(Slot::B));
        assert_eq!(Slot::from_index(1), Some(Slot::B));
        assert_eq!(Slot::from_index(2), None);
    }
}
