//! The updater: one device's partitions, boot control and state directory, put together around
//! the engine. This is what the CLI and the service call; it owns the slot transitions that
//! make an interrupted update safe:
//!
//! - before the first byte is written, the target slot is marked unbootable;
//! - only after every partition is written and verified (and the AVB checks pass) is the target
//!   slot set active, and only if `SWITCH_SLOT_ON_REBOOT` is not `0`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::device::{Device, Slot};
use crate::engine::checkpoint::{CheckpointStore, FileCheckpointStore, Phase};
use crate::engine::{self, ApplyOptions, ApplyReport, Observer, PayloadSource, SlotHooks};
use crate::error::Result;
use crate::slot::{BootControl, MiscBootControl};

/// A device and everything abupdate keeps about it.
pub struct Updater {
    device: Device,
    boot: Mutex<Box<dyn BootControl + Send>>,
    store: FileCheckpointStore,
}

/// What became of an apply.
#[derive(Debug)]
pub struct Outcome {
    pub report: ApplyReport,
    /// The slot set active for the next boot, when the switch was made.
    pub switched_to: Option<Slot>,
}

impl Updater {
    pub fn new(device: Device, boot: Box<dyn BootControl + Send>, state_dir: PathBuf) -> Result<Self> {
        Ok(Updater { device, boot: Mutex::new(boot), store: FileCheckpointStore::new(state_dir)? })
    }

    /// A host device directory: partitions `DIR/<name>_<slot>.img`, slot metadata in
    /// `DIR/misc.img`, state in `state_dir` (default `DIR/state`). The running slot is
    /// `current` when given, else the one `misc` records.
    pub fn open_host(dir: &Path, current: Option<Slot>, state_dir: Option<PathBuf>) -> Result<Self> {
        let boot = MiscBootControl::open_device_dir(dir, current)?;
        let current = boot.current();
        let state = state_dir.unwrap_or_else(|| dir.join("state"));
        Self::new(Device::host(dir, current), Box::new(boot), state)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn store(&self) -> &FileCheckpointStore {
        &self.store
    }

    /// Runs `f` with the boot control backend.
    pub fn with_boot<T>(&self, f: impl FnOnce(&mut dyn BootControl) -> Result<T>) -> Result<T> {
        let mut boot = self.boot.lock().unwrap_or_else(|e| e.into_inner());
        f(boot.as_mut())
    }

    /// Applies a payload into the target slot and, unless told not to, switches to it.
    pub fn apply(
        &self,
        source: &mut dyn PayloadSource,
        options: &ApplyOptions,
        observer: &dyn Observer,
    ) -> Result<Outcome> {
        let hooks = Hooks { updater: self };
        let report = engine::apply(&self.device, source, &self.store, &hooks, options, observer)?;
        let target = self.device.target_slot();
        let switched_to = if options.properties.switch_slot_on_reboot {
            self.with_boot(|b| b.set_active(target))?;
            Some(target)
        } else {
            None
        };
        Ok(Outcome { report, switched_to })
    }

    /// Whether an update was fully applied and awaits a reboot into its slot.
    pub fn update_pending(&self) -> Result<bool> {
        Ok(self.store.load()?.is_some_and(|cp| cp.phase == Phase::Done))
    }
}

struct Hooks<'a> {
    updater: &'a Updater,
}

impl SlotHooks for Hooks<'_> {
    fn before_first_write(&self) -> Result<()> {
        let target = self.updater.device.target_slot();
        self.updater.with_boot(|b| b.set_unbootable(target))
    }
}
