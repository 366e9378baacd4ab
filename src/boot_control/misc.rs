//! A [`BootControl`] backend that keeps the `bootloader_control` record in `misc` itself, as
//! AOSP's libboot_control does (Cuttlefish, and U-Boot devices using `boot/android_ab.c`):
//! `/dev/block/by-name/misc` on Android, `DIR/misc.img` in a host device directory.
//!
//! Like the HAL, every call reads the record afresh (the bootloader changes it between boots),
//! and every change is one 32-byte positional write at offset 2048 followed by a data sync;
//! nothing else in `misc` is touched. A record with a bad CRC is treated as the HAL treats it:
//! replaced by [`BootloaderControl::new_default`] for the running slot.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::slot::control::{BootloaderControl, Corrupt, MISC_OFFSET, RECORD_LEN};
use crate::slot::{BlockIo, BootControl, Slot, SlotStatus};

/// The `misc` partition on Android.
pub const ANDROID_MISC: &str = "/dev/block/by-name/misc";
/// The `misc` image's name in a host device directory.
pub const HOST_MISC_IMAGE: &str = "misc.img";
/// Size of a `misc` image made by [`MiscBootControl::create_image`] (Cuttlefish's is 1 MiB).
pub const HOST_IMAGE_LEN: u64 = 1 << 20;

impl BlockIo for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// Boot control through the `bootloader_control` record in `misc`.
#[derive(Debug)]
pub struct MiscBootControl<I: BlockIo = File> {
    io: I,
    current: Slot,
    /// What to call the partition in messages (its path when known).
    name: String,
}

impl MiscBootControl<File> {
    /// Opens `misc` at `path` (a block device or an image file). The running slot is `current`
    /// if given, else the one the record's `slot_suffix` names (set by the bootloader).
    pub fn open(path: &Path, current: Option<Slot>) -> Result<Self> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    crate::err!(PartitionMissing, "no misc partition at {name}")
                } else {
                    Error::io(format!("opening {name}"), e)
                }
            })?;
        Self::named(file, name, current)
    }

    /// Opens `DIR/misc.img` of a host device directory.
    pub fn open_device_dir(dir: &Path, current: Option<Slot>) -> Result<Self> {
        Self::open(&dir.join(HOST_MISC_IMAGE), current)
    }

    /// Makes a new `misc` image at `path` ([`HOST_IMAGE_LEN`] bytes, zero but for the record
    /// the HAL would write for a device running `current`). Fails if `path` exists: `open`
    /// never creates `misc`, so a mistyped device directory is an error, not a new device.
    pub fn create_image(path: &Path, current: Slot) -> Result<Self> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(format!("creating {name}"), e))?;
        file.set_len(HOST_IMAGE_LEN)
            .map_err(|e| Error::io(format!("sizing {name}"), e))?;
        let mut this = MiscBootControl {
            io: file,
            current,
            name,
        };
        this.store(&BootloaderControl::new_default(current))?;
        Ok(this)
    }

    /// Opens the device's `misc`, the running slot being `ro.boot.slot_suffix`.
    #[cfg(target_os = "android")]
    pub fn open_android() -> Result<Self> {
        Self::open(Path::new(ANDROID_MISC), Some(boot_slot_suffix()?))
    }
}

impl<I: BlockIo> MiscBootControl<I> {
    /// Boot control over `io`; `current` as for [`MiscBootControl::open`]. Like the HAL's
    /// `Init`, replaces a record with a bad CRC at once (that needs `current`). A record with a
    /// good CRC but foreign magic or version belongs to someone else and is refused untouched.
    pub fn new(io: I, current: Option<Slot>) -> Result<Self> {
        Self::named(io, "misc".to_string(), current)
    }

    /// The slot the running system booted from.
    pub fn current(&self) -> Slot {
        self.current
    }

    /// The record as the HAL sees it now: one with a bad CRC reads as the default it would be
    /// replaced with.
    pub fn record(&self) -> Result<BootloaderControl> {
        let bytes = self.read_raw()?;
        match BootloaderControl::parse(&bytes) {
            Ok(record) => Ok(record),
            Err(e @ Corrupt::Crc { .. }) => {
                log::warn!("{}: {e}; using the default record", self.name);
                Ok(BootloaderControl::new_default(self.current))
            }
            Err(e) => crate::bail!(SlotError, "{}: {e}", self.name),
        }
    }

    /// The storage the record is read from and written to.
    pub fn io(&self) -> &I {
        &self.io
    }

    /// Gives the storage back.
    pub fn into_io(self) -> I {
        self.io
    }

    fn named(io: I, name: String, current: Option<Slot>) -> Result<Self> {
        let mut this = MiscBootControl {
            io,
            current: Slot::A,
            name,
        };
        let bytes = this.read_raw()?;
        match BootloaderControl::parse(&bytes) {
            Ok(record) => {
                this.current = match current.or_else(|| record.suffix_slot()) {
                    Some(slot) => slot,
                    None => crate::bail!(
                        SlotError,
                        "{}: slot_suffix {:?} names no slot; give the running slot explicitly",
                        this.name,
                        record.slot_suffix
                    ),
                };
            }
            Err(e @ Corrupt::Crc { .. }) => {
                let Some(slot) = current else {
                    crate::bail!(
                        SlotError,
                        "{}: {e}; give the running slot to reinitialise it",
                        this.name
                    );
                };
                log::warn!("{}: {e}; reinitialising for running slot {slot}", this.name);
                this.current = slot;
                this.store(&BootloaderControl::new_default(slot))?;
            }
            Err(e) => crate::bail!(SlotError, "{}: {e}; refusing to overwrite it", this.name),
        }
        Ok(this)
    }

    fn read_raw(&self) -> Result<[u8; RECORD_LEN]> {
        let mut bytes = [0u8; RECORD_LEN];
        self.io
            .read_exact_at(&mut bytes, MISC_OFFSET)
            .map_err(|e| Error::io(format!("reading bootloader_control from {}", self.name), e))?;
        Ok(bytes)
    }

    /// Loads, changes and stores the record; nothing is written if `change` fails.
    fn update(&mut self, change: impl FnOnce(&mut BootloaderControl) -> Result<()>) -> Result<()> {
        let mut record = self.record()?;
        change(&mut record)?;
        self.store(&record)
    }

    fn store(&mut self, record: &BootloaderControl) -> Result<()> {
        let what = || format!("writing bootloader_control to {}", self.name);
        self.io
            .write_all_at(&record.encode(), MISC_OFFSET)
            .map_err(|e| Error::io(what(), e))?;
        self.io.sync().map_err(|e| Error::io(what(), e))
    }
}

impl<I: BlockIo> BootControl for MiscBootControl<I> {
    fn slot_count(&self) -> Result<u32> {
        Ok(u32::from(self.record()?.nb_slot()))
    }

    fn current_slot(&self) -> Result<Slot> {
        Ok(self.current)
    }

    fn active_slot(&self) -> Result<Slot> {
        Ok(self.record()?.active_slot(self.current))
    }

    fn suffix(&self, slot: Slot) -> Result<String> {
        self.record()?.check(slot)?;
        Ok(slot.suffix().to_string())
    }

    fn set_active(&mut self, slot: Slot) -> Result<()> {
        let current = self.current;
        self.update(|record| record.set_active(slot, current))
    }

    fn mark_boot_successful(&mut self) -> Result<()> {
        let current = self.current;
        self.update(|record| record.mark_successful(current))
    }

    fn set_unbootable(&mut self, slot: Slot) -> Result<()> {
        self.update(|record| record.set_unbootable(slot))
    }

    fn is_bootable(&self, slot: Slot) -> Result<bool> {
        self.record()?.is_bootable(slot)
    }

    fn is_successful(&self, slot: Slot) -> Result<bool> {
        self.record()?.is_marked_successful(slot)
    }

    /// All slots from one read of the record, with priority and tries.
    fn slots(&self) -> Result<Vec<SlotStatus>> {
        let record = self.record()?;
        let active = record.active_slot(self.current);
        Slot::ALL
            .into_iter()
            .take(record.slots_in_use())
            .map(|slot| {
                let entry = record.slot(slot);
                Ok(SlotStatus {
                    slot,
                    current: slot == self.current,
                    active: slot == active,
                    bootable: record.is_bootable(slot)?,
                    successful: record.is_marked_successful(slot)?,
                    priority: Some(entry.priority()),
                    tries_remaining: Some(entry.tries_remaining()),
                })
            })
            .collect()
    }
}

/// The slot the bootloader booted, from `ro.boot.slot_suffix` (through the property API).
#[cfg(target_os = "android")]
pub fn boot_slot_suffix() -> Result<Slot> {
    use crate::sysprop::{Properties, SystemProperties};
    match SystemProperties.get("ro.boot.slot_suffix")? {
        Some(value) if !value.trim().is_empty() => value.trim().parse(),
        _ => crate::bail!(
            SlotError,
            "ro.boot.slot_suffix is not set: not an A/B device"
        ),
    }
}

#[cfg(test)]
mod tests;
