//! The recording layer, as dm-log-writes is for a block device: it sits under the engine's
//! target partitions, `super` (its metadata and logical partitions), `misc` and the
//! checkpoint store, passes every call through to the real adapter unchanged, and logs each
//! write and each sync in the order they were issued.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use abupdate::boot_control::MiscBootControl;
use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::device::{Device, SuperLayer};
use abupdate::engine::checkpoint::{Checkpoint, CheckpointStore};
use abupdate::engine::{SlotPartitions, SourceRead, TargetWrite};
use abupdate::slot::{BlockIo, BootControl, Slot};
use abupdate::updater::{HostOptions, Updater, UpdaterParts};

/// A file of the device directory, by its path relative to it (`system_b.img`, `misc.img`,
/// `state/checkpoint`).
pub type FileName = Arc<str>;

pub const MISC: &str = "misc.img";
pub const CHECKPOINT: &str = "state/checkpoint";
pub const SUPER: &str = "super.img";

/// One recorded call, in issue order.
#[derive(Clone, Debug)]
pub enum Event {
    /// A positional write: in the page cache until a later `Sync` of the same file.
    Write {
        file: FileName,
        offset: u64,
        data: Vec<u8>,
    },
    /// `fsync`/`fdatasync`: every earlier `Write` of the file is durable.
    Sync { file: FileName },
    /// A checkpoint saved (temporary file written and synced, renamed over `file`) or cleared
    /// (`None`: unlinked). Renames are atomic: until the directory is synced a crash leaves
    /// the old content or the new one, never a mix.
    Replace {
        file: FileName,
        content: Option<Vec<u8>>,
    },
    /// `fsync` of the directory holding `file`: its last `Replace` is durable.
    DirSync { file: FileName },
}

impl Event {
    pub fn file(&self) -> &FileName {
        match self {
            Event::Write { file, .. }
            | Event::Sync { file }
            | Event::Replace { file, .. }
            | Event::DirSync { file } => file,
        }
    }

    /// Whether this event makes the file's earlier events durable.
    pub fn is_barrier(&self) -> bool {
        matches!(self, Event::Sync { .. } | Event::DirSync { .. })
    }
}

/// A deliberate bug for the harness to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Target syncs happen but are left out of the log, as if the engine never made them.
    ForgetTargetSyncs,
    /// The target slot is never marked unbootable.
    IgnoreSetUnbootable,
}

/// The updater of the host device directory `dev` (running the slot `misc.img` names), with
/// the recorder under its partitions, `misc` and checkpoints.
pub fn recording_updater(dev: &Path, log: &Log, fault: Fault) -> Updater {
    let mut parts = UpdaterParts::host(dev, &HostOptions::default()).unwrap();
    let device = parts
        .device
        .clone()
        .with_super_layer(Arc::new(RecordingSuper {
            log: log.clone(),
            forget_syncs: fault == Fault::ForgetTargetSyncs,
        }));
    parts.device = device.clone();
    parts.partitions = Box::new(RecordingPartitions {
        device: device.clone(),
        log: log.clone(),
        forget_syncs: fault == Fault::ForgetTargetSyncs,
    });
    let misc = RecordingMisc::open(dev, log.clone()).unwrap();
    let boot = MiscBootControl::new(misc, Some(device.current_slot())).unwrap();
    parts.boot = match fault {
        Fault::IgnoreSetUnbootable => Box::new(IgnoresSetUnbootable(boot)),
        _ => Box::new(boot),
    };
    let store = FileCheckpointStore::new(dev.join("state")).unwrap();
    parts.store = Box::new(RecordingStore::new(store, log.clone()));
    Updater::from_parts(parts)
}

/// The shared, ordered event log.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    pub fn push(&self, event: Event) {
        self.lock().push(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The device's partitions with every target write and sync logged. With `forget_syncs`, a
/// target sync still reaches the file but is left out of the log: the log then describes an
/// engine that never syncs its targets.
struct RecordingPartitions {
    device: Device,
    log: Log,
    forget_syncs: bool,
}

impl SlotPartitions for RecordingPartitions {
    fn open_source(&self, name: &str) -> abupdate::Result<Box<dyn SourceRead>> {
        self.device.open_source(name)
    }

    fn open_target(&self, name: &str) -> abupdate::Result<Box<dyn TargetWrite>> {
        let file = format!("{name}{}.img", self.device.target_slot().suffix());
        if !self
            .device
            .partition_path(name, self.device.target_slot())
            .exists()
        {
            // A logical partition: its writes reach super.img through `RecordingSuper`.
            return self.device.open_target(name);
        }
        Ok(Box::new(RecordingTarget {
            inner: self.device.open_target(name)?,
            file: file.into(),
            log: self.log.clone(),
            forget_syncs: self.forget_syncs,
        }))
    }

    fn target_slot_name(&self) -> String {
        self.device.target_slot_name()
    }
}

/// `inner` with its writes and syncs logged as `file`'s (syncs left out with `forget_syncs`).
pub fn recording_target(
    inner: Box<dyn TargetWrite>,
    file: FileName,
    log: Log,
    forget_syncs: bool,
) -> Box<dyn TargetWrite> {
    Box::new(RecordingTarget {
        inner,
        file,
        log,
        forget_syncs,
    })
}

struct RecordingTarget {
    inner: Box<dyn TargetWrite>,
    file: FileName,
    log: Log,
    forget_syncs: bool,
}

impl TargetWrite for RecordingTarget {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)?;
        self.log.push(Event::Write {
            file: self.file.clone(),
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()?;
        if !self.forget_syncs {
            self.log.push(Event::Sync {
                file: self.file.clone(),
            });
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }
}

/// Every write into `super.img` (the target's metadata and logical partitions) logged.
struct RecordingSuper {
    log: Log,
    forget_syncs: bool,
}

impl SuperLayer for RecordingSuper {
    fn wrap(&self, inner: Box<dyn TargetWrite>) -> Box<dyn TargetWrite> {
        Box::new(RecordingTarget {
            inner,
            file: SUPER.into(),
            log: self.log.clone(),
            forget_syncs: self.forget_syncs,
        })
    }
}

/// `misc.img` with its writes and syncs logged.
struct RecordingMisc {
    file: File,
    log: Log,
}

impl RecordingMisc {
    fn open(dir: &Path, log: Log) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(MISC))?;
        Ok(RecordingMisc { file, log })
    }
}

impl BlockIo for RecordingMisc {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        BlockIo::read_exact_at(&self.file, buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        BlockIo::write_all_at(&mut self.file, buf, offset)?;
        self.log.push(Event::Write {
            file: MISC.into(),
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        BlockIo::sync(&mut self.file)?;
        self.log.push(Event::Sync { file: MISC.into() });
        Ok(())
    }
}

/// `inner` with each save and clear logged as [`RecordingStore`] logs them.
pub fn recording_checkpoints(inner: FileCheckpointStore, log: Log) -> impl CheckpointStore {
    RecordingStore::new(inner, log)
}

/// The state directory's checkpoint file with each save and clear logged as an atomic
/// replace followed by the directory sync that makes it durable (what
/// `FileCheckpointStore` does: write a temporary file, fsync, rename, fsync the directory).
struct RecordingStore {
    inner: FileCheckpointStore,
    log: Log,
}

impl RecordingStore {
    fn new(inner: FileCheckpointStore, log: Log) -> Self {
        RecordingStore { inner, log }
    }

    fn replaced(&self, content: Option<Vec<u8>>) {
        self.log.push(Event::Replace {
            file: CHECKPOINT.into(),
            content,
        });
        self.log.push(Event::DirSync {
            file: CHECKPOINT.into(),
        });
    }
}

impl CheckpointStore for RecordingStore {
    fn load(&self) -> abupdate::Result<Option<Checkpoint>> {
        self.inner.load()
    }

    fn save(&self, checkpoint: &Checkpoint) -> abupdate::Result<()> {
        self.inner.save(checkpoint)?;
        self.replaced(Some(checkpoint.encode()));
        Ok(())
    }

    fn clear(&self) -> abupdate::Result<()> {
        self.inner.clear()?;
        self.replaced(None);
        Ok(())
    }
}

/// Boot control that ignores `set_unbootable`: the half-written target slot stays bootable,
/// as with an updater that forgot to protect it, which the harness must catch.
struct IgnoresSetUnbootable<B>(B);

impl<B: BootControl> BootControl for IgnoresSetUnbootable<B> {
    fn slot_count(&self) -> abupdate::Result<u32> {
        self.0.slot_count()
    }
    fn current_slot(&self) -> abupdate::Result<Slot> {
        self.0.current_slot()
    }
    fn active_slot(&self) -> abupdate::Result<Slot> {
        self.0.active_slot()
    }
    fn suffix(&self, slot: Slot) -> abupdate::Result<String> {
        self.0.suffix(slot)
    }
    fn set_active(&mut self, slot: Slot) -> abupdate::Result<()> {
        self.0.set_active(slot)
    }
    fn mark_boot_successful(&mut self) -> abupdate::Result<()> {
        self.0.mark_boot_successful()
    }
    fn set_unbootable(&mut self, _slot: Slot) -> abupdate::Result<()> {
        Ok(())
    }
    fn is_bootable(&self, slot: Slot) -> abupdate::Result<bool> {
        self.0.is_bootable(slot)
    }
    fn is_successful(&self, slot: Slot) -> abupdate::Result<bool> {
        self.0.is_successful(slot)
    }
}
