//! Platform adapter: the partitions of the two slots.
//!
//! On Android a partition is the block device `/dev/block/by-name/<name><suffix>`; on a host it is
//! the file `DIR/<name><suffix>.img` in a *device directory*. The engine gets partitions only
//! through [`Device::source`] and [`Device::target`]: the source slot is opened read-only and its
//! type has no write method, and the target slot is always derived as the *other* slot from the
//! one running, so writing the running slot cannot be expressed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::engine::{SlotPartitions, SourceRead, TargetWrite};
use crate::err;
use crate::error::{Error, Result};
pub use crate::slot::Slot;

/// Where the partitions are.
#[derive(Clone, Debug)]
pub enum Layout {
    /// `/dev/block/by-name` on Android, or any directory of block devices named the same way.
    ByName(PathBuf),
    /// A host device directory of `<name>_a.img` / `<name>_b.img` files.
    HostDir(PathBuf),
}

/// The device: its partition layout and the slot it runs from.
#[derive(Clone, Debug)]
pub struct Device {
    layout: Layout,
    current: Slot,
}

impl Device {
    pub fn new(layout: Layout, current: Slot) -> Self {
        Device { layout, current }
    }

    pub fn host(dir: impl Into<PathBuf>, current: Slot) -> Self {
        Self::new(Layout::HostDir(dir.into()), current)
    }

    pub fn current_slot(&self) -> Slot {
        self.current
    }

    /// The slot an update writes: always the one not running.
    pub fn target_slot(&self) -> Slot {
        self.current.other()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The path of `name` in `slot`.
    pub fn partition_path(&self, name: &str, slot: Slot) -> PathBuf {
        match &self.layout {
            Layout::ByName(dir) => dir.join(format!("{name}{}", slot.suffix())),
            Layout::HostDir(dir) => dir.join(format!("{name}{}.img", slot.suffix())),
        }
    }

    /// Opens `name` in the running slot, read-only.
    pub fn source(&self, name: &str) -> Result<SourcePartition> {
        SourcePartition::open(&self.partition_path(name, self.current))
    }

    /// Opens `name` in either slot, read-only (AVB checks read the target slot's vbmeta).
    pub fn read_only(&self, name: &str, slot: Slot) -> Result<SourcePartition> {
        SourcePartition::open(&self.partition_path(name, slot))
    }

    /// Opens `name` in the target slot for writing.
    pub fn target(&self, name: &str) -> Result<TargetPartition> {
        TargetPartition::open(&self.partition_path(name, self.target_slot()))
    }
}

impl SlotPartitions for Device {
    fn open_source(&self, name: &str) -> Result<Box<dyn SourceRead>> {
        Ok(Box::new(self.source(name)?))
    }
    fn open_target(&self, name: &str) -> Result<Box<dyn TargetWrite>> {
        Ok(Box::new(self.target(name)?))
    }
    fn target_slot_name(&self) -> String {
        self.target_slot().suffix()[1..].to_owned()
    }
}

/// A partition opened `O_RDONLY`: the running slot's, or any slot's for checks.
#[derive(Debug)]
pub struct SourcePartition {
    file: File,
    size: u64,
    path: PathBuf,
}

impl SourcePartition {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        let size = device_size(&file).map_err(|e| Error::io(path.display(), e))?;
        Ok(SourcePartition {
            file,
            size,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SourceRead for SourcePartition {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// A partition of the target slot, opened read-write. It is never created or grown: a partition
/// is a fixed-size block device, and a host image must already exist with its size.
#[derive(Debug)]
pub struct TargetPartition {
    file: File,
    size: u64,
    path: PathBuf,
}

impl TargetPartition {
    fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let size = device_size(&file).map_err(|e| Error::io(path.display(), e))?;
        Ok(TargetPartition {
            file,
            size,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TargetWrite for TargetPartition {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write beyond the partition end",
            ));
        }
        self.file.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

fn open_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        err!(
            PartitionMissing,
            "partition {} does not exist",
            path.display()
        )
    } else {
        Error::io(format!("opening {}", path.display()), e)
    }
}

/// The size of a regular file or block device (whose metadata length is 0).
fn device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    // Seeking to the end is the portable way to size a block device without an ioctl; positioned
    // reads and writes elsewhere never depend on the cursor.
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_the_other_slot() {
        let dir = tempfile::tempdir().unwrap();
        for (name, slot) in [("system_a.img", 'a'), ("system_b.img", 'b')] {
            std::fs::write(dir.path().join(name), vec![slot as u8; 8192]).unwrap();
        }
        let dev = Device::host(dir.path(), Slot::A);
        let target = dev.target("system").unwrap();
        assert!(target.path().ends_with("system_b.img"));
        target.write_at(b"new", 0).unwrap();
        assert!(
            target.write_at(b"x", 8192).is_err(),
            "writes past the end are refused"
        );
        let source = dev.source("system").unwrap();
        let mut buf = [0u8; 3];
        source.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"aaa");
        assert_eq!(
            dev.source("vendor").unwrap_err().code,
            crate::ErrorCode::PartitionMissing
        );
    }
}
