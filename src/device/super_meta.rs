//! Platform adapter: the liblp metadata of `super`, read and written with positioned I/O.
//!
//! Reading follows liblp's reader.cpp: the primary geometry, else the backup; a slot's primary
//! copy, else its backup copy. Writing one slot follows writer.cpp's `UpdatePartitionTable`:
//! when the slot's two copies disagree, the good one is first copied over the other, so that a
//! write torn by a power cut always leaves one intact copy; then the new metadata is written to
//! the primary copy and then the backup copy. Here each of those writes is made durable before
//! the next starts, and nothing outside the one slot's two copies is ever written.

use crate::engine::{SourceRead, TargetWrite};
use crate::error::{Error, Result};
use crate::lp::{self, Geometry, Metadata};
use crate::slot::Slot;

/// The metadata slot of an A/B slot (liblp's `SlotNumberForSlotSuffix`: `_a` is 0, `_b` 1).
pub fn metadata_slot(slot: Slot) -> u32 {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// Reads the geometry: the primary at 4096, else the backup at 8192.
pub fn read_geometry(dev: &dyn SourceRead) -> Result<Geometry> {
    let mut primary = vec![0u8; lp::GEOMETRY_SIZE as usize];
    let mut backup = vec![0u8; lp::GEOMETRY_SIZE as usize];
    read(dev, &mut primary, lp::RESERVED_BYTES, "geometry")?;
    read(
        dev,
        &mut backup,
        lp::RESERVED_BYTES + lp::GEOMETRY_SIZE,
        "backup geometry",
    )?;
    let geometry = Geometry::parse_either(&primary, &backup)?;
    let needed = geometry.total_metadata_size()?;
    if dev.size() < needed {
        return Err(crate::err!(
            SlotError,
            "super has {} bytes, its metadata region alone takes {needed}",
            dev.size()
        ));
    }
    Ok(geometry)
}

/// One copy of a slot's metadata, parsed.
fn read_copy(dev: &dyn SourceRead, geometry: &Geometry, offset: u64) -> Result<Metadata> {
    let mut bytes = vec![0u8; geometry.metadata_max_size as usize];
    read(dev, &mut bytes, offset, "super metadata")?;
    Ok(Metadata::parse(&bytes, geometry)?)
}

/// The metadata of `slot` (a metadata slot number): the primary copy, else the backup.
pub fn read_slot(dev: &dyn SourceRead, geometry: &Geometry, slot: u32) -> Result<Metadata> {
    match read_copy(dev, geometry, geometry.primary_offset(slot)?) {
        Ok(metadata) => Ok(metadata),
        Err(primary) => read_copy(dev, geometry, geometry.backup_offset(slot)?).map_err(|backup| {
            Error::new(
                backup.code,
                format!(
                    "metadata slot {slot}: primary copy: {}; backup copy: {}",
                    primary.message, backup.message
                ),
            )
        }),
    }
}

/// Writes `metadata` into metadata slot `slot`, as `UpdatePartitionTable` does (see the module
/// documentation). Returns whether anything was written: both copies already holding exactly
/// these bytes is left alone, so preparing the same update again writes nothing.
pub fn write_slot(
    dev: &dyn TargetWrite,
    geometry: &Geometry,
    slot: u32,
    metadata: &Metadata,
) -> Result<bool> {
    let blob = metadata.to_bytes(geometry)?;
    if blob.len() as u64 > u64::from(geometry.metadata_max_size) {
        return Err(crate::err!(
            SuperNoSpace,
            "the new metadata takes {} bytes, a slot holds {}",
            blob.len(),
            geometry.metadata_max_size
        ));
    }
    let (primary_at, backup_at) = (
        geometry.primary_offset(slot)?,
        geometry.backup_offset(slot)?,
    );
    let reader = ReadHalf(dev);
    let on_disk = |offset: u64| -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; blob.len()];
        read(&reader, &mut bytes, offset, "super metadata")?;
        Ok(bytes)
    };
    if on_disk(primary_at)? == blob && on_disk(backup_at)? == blob {
        return Ok(false);
    }

    let primary = read_copy(&reader, geometry, primary_at).ok();
    let backup = read_copy(&reader, geometry, backup_at).ok();
    match (&primary, &backup) {
        (Some(p), b) if b.as_ref() != Some(p) => {
            log::info!("super metadata slot {slot}: backup copy differs, syncing it first");
            put(dev, &p.to_bytes(geometry)?, backup_at)?;
        }
        (None, Some(b)) => {
            log::info!("super metadata slot {slot}: primary copy is bad, syncing it first");
            put(dev, &b.to_bytes(geometry)?, primary_at)?;
        }
        _ => {}
    }
    put(dev, &blob, primary_at)?;
    put(dev, &blob, backup_at)?;
    Ok(true)
}

/// One write, durable before returning.
fn put(dev: &dyn TargetWrite, bytes: &[u8], offset: u64) -> Result<()> {
    dev.write_at(bytes, offset)
        .and_then(|()| dev.sync())
        .map_err(|e| Error::io(format!("writing super metadata at {offset}"), e))
}

fn read(dev: &dyn SourceRead, buf: &mut [u8], offset: u64, what: &str) -> Result<()> {
    let end = offset.checked_add(buf.len() as u64);
    if end.map_or(true, |end| end > dev.size()) {
        return Err(crate::err!(
            SlotError,
            "super ({} bytes) is too small to hold its {what} at {offset}",
            dev.size()
        ));
    }
    dev.read_at(buf, offset)
        .map_err(|e| Error::io(format!("reading super {what} at {offset}"), e))
}

/// The read half of a read-write handle (borrowed or owned).
pub(crate) struct ReadHalf<W>(pub(crate) W);

impl<W> SourceRead for ReadHalf<W>
where
    W: std::ops::Deref + Send + Sync,
    W::Target: TargetWrite,
{
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn size(&self) -> u64 {
        self.0.size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::device::TargetPartition;
    use crate::lp::{NewSuper, ATTR_READONLY};

    const MIB: u64 = 1 << 20;

    /// A read-write handle that logs (offset, length) of each write and each sync.
    struct Logged {
        inner: TargetPartition,
        log: Mutex<Vec<Option<(u64, usize)>>>,
    }

    impl TargetWrite for Logged {
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.log.lock().unwrap().push(Some((offset, buf.len())));
            self.inner.write_at(buf, offset)
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.inner.read_at(buf, offset)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.log.lock().unwrap().push(None);
            self.inner.sync()
        }
        fn size(&self) -> u64 {
            self.inner.size()
        }
    }

    fn flashed(dir: &std::path::Path) -> (std::path::PathBuf, Geometry, Metadata) {
        let (geometry, metadata) = NewSuper::new(8 * MIB, 65536, 3)
            .group("main_a", 2 * MIB)
            .group("main_b", 2 * MIB)
            .partition("system_a", ATTR_READONLY, MIB, Some("main_a"))
            .partition("system_b", ATTR_READONLY, 0, Some("main_b"))
            .build()
            .unwrap();
        let path = dir.join("super.img");
        let mut image = lp::flash_image(&geometry, &metadata).unwrap();
        image.resize(8 << 20, 0);
        std::fs::write(&path, image).unwrap();
        (path, geometry, metadata)
    }

    #[test]
    fn writes_one_slot_primary_then_backup_repairing_a_bad_copy_first() {
        let dir = tempfile::tempdir().unwrap();
        let (path, geometry, source) = flashed(dir.path());
        let dev = Logged {
            inner: TargetPartition::open(&path).unwrap(),
            log: Mutex::new(Vec::new()),
        };
        assert_eq!(read_geometry(&ReadHalf(&dev)).unwrap(), geometry);
        let target = lp::prepare_target(
            &source,
            "_b",
            &[lp::DynamicGroup {
                name: "main".into(),
                size: 2 * MIB,
                partitions: vec!["system".into()],
            }],
            &[("system".into(), 2 * MIB)],
        )
        .unwrap();
        let (primary, backup) = (
            geometry.primary_offset(1).unwrap(),
            geometry.backup_offset(1).unwrap(),
        );
        // Slot 1's primary copy is damaged: it reads from the backup, and the write repairs
        // the primary from the backup before writing the new metadata.
        let mut image = std::fs::read(&path).unwrap();
        image[primary as usize] ^= 0xff;
        std::fs::write(&path, &image).unwrap();
        assert_eq!(read_slot(&ReadHalf(&dev), &geometry, 1).unwrap(), source);

        assert!(write_slot(&dev, &geometry, 1, &target).unwrap());
        let writes = dev.log.lock().unwrap().clone();
        let len = source.to_bytes(&geometry).unwrap().len();
        let new_len = target.to_bytes(&geometry).unwrap().len();
        assert_eq!(
            writes,
            [
                Some((primary, len)),
                None,
                Some((primary, new_len)),
                None,
                Some((backup, new_len)),
                None
            ]
        );
        assert_eq!(read_slot(&ReadHalf(&dev), &geometry, 1).unwrap(), target);
        let after = std::fs::read(&path).unwrap();
        for slot in [0, 2] {
            for at in [geometry.primary_offset(slot), geometry.backup_offset(slot)] {
                let at = at.unwrap() as usize;
                assert_eq!(after[at..at + 65536], image[at..at + 65536], "slot {slot}");
            }
        }
        assert_eq!(after[..12288], image[..12288], "geometry untouched");
        assert_eq!(after[(1 << 20)..], image[(1 << 20)..], "no extent written");

        // The same metadata again writes nothing.
        dev.log.lock().unwrap().clear();
        assert!(!write_slot(&dev, &geometry, 1, &target).unwrap());
        assert!(dev.log.lock().unwrap().is_empty());
    }

    #[test]
    fn geometry_falls_back_to_backup_and_bad_metadata_has_a_code() {
        let dir = tempfile::tempdir().unwrap();
        let (path, geometry, _) = flashed(dir.path());
        let mut image = std::fs::read(&path).unwrap();
        image[4096 + 100] ^= 1;
        std::fs::write(&path, &image).unwrap();
        let dev = crate::device::SourcePartition::open(&path).unwrap();
        assert_eq!(read_geometry(&dev).unwrap(), geometry);
        for at in [geometry.primary_offset(0), geometry.backup_offset(0)] {
            image[at.unwrap() as usize + 1] ^= 1;
        }
        std::fs::write(&path, &image).unwrap();
        let dev = crate::device::SourcePartition::open(&path).unwrap();
        let e = read_slot(&dev, &geometry, 0).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::SlotError, "{e}");
        assert!(e.message.contains("backup copy"), "{e}");
        std::fs::write(&path, &image[..20000]).unwrap();
        let dev = crate::device::SourcePartition::open(&path).unwrap();
        assert_eq!(
            read_geometry(&dev).unwrap_err().code,
            crate::ErrorCode::SlotError
        );
    }
}
