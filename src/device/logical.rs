//! Logical partitions read and written through their extents in `super`, without
//! device-mapper: what dm-linear does in the kernel, done with positioned I/O on the `super`
//! file (a host device directory) or block device.
//!
//! A LINEAR extent maps its logical range to the same length at a sector of `super`; a ZERO
//! extent reads as zeros and takes no space, so writing to it is refused (it has nowhere to go;
//! update_engine's target partitions never have one, and writing through dm-zero would silently
//! drop the data).

use std::io;
use std::sync::Arc;

use crate::engine::{SourceRead, TargetWrite};
use crate::err;
use crate::error::Result;
use crate::lp::{self, ExtentTarget};

/// One piece of a partition: `len` bytes from logical offset `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    start: u64,
    len: u64,
    /// Byte offset in `super`, or `None` for a ZERO extent.
    physical: Option<u64>,
}

/// A logical partition's map onto `super`, every piece checked to lie inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentMap {
    segments: Vec<Segment>,
    size: u64,
}

impl ExtentMap {
    /// The map of `partition` in `metadata`, for a `super` of `super_size` bytes. Extents on
    /// another block device than `super` (retrofit devices) are refused.
    pub fn new(
        metadata: &lp::Metadata,
        partition: &lp::Partition,
        super_size: u64,
    ) -> Result<ExtentMap> {
        let name = &partition.name;
        let mut segments = Vec::new();
        let mut start = 0u64;
        for extent in metadata.extents_of(partition) {
            let len = extent
                .num_sectors
                .checked_mul(lp::SECTOR_SIZE)
                .ok_or_else(|| err!(SlotError, "{name}: extent length overflows"))?;
            let physical = match extent.target {
                ExtentTarget::Linear {
                    block_device: 0,
                    physical_sector,
                } => {
                    let offset = physical_sector
                        .checked_mul(lp::SECTOR_SIZE)
                        .filter(|o| o.checked_add(len).is_some_and(|end| end <= super_size))
                        .ok_or_else(|| {
                            err!(
                                SlotError,
                                "{name}: extent at sector {physical_sector} (+{len} bytes) is \
                                 outside super's {super_size} bytes"
                            )
                        })?;
                    Some(offset)
                }
                ExtentTarget::Linear { block_device, .. } => {
                    return Err(err!(
                        SlotError,
                        "{name}: extent on block device {block_device}, not super (retrofit \
                         dynamic partitions are not supported)"
                    ))
                }
                ExtentTarget::Zero => None,
            };
            if len > 0 {
                segments.push(Segment {
                    start,
                    len,
                    physical,
                });
            }
            start = start
                .checked_add(len)
                .ok_or_else(|| err!(SlotError, "{name}: partition size overflows"))?;
        }
        Ok(ExtentMap {
            segments,
            size: start,
        })
    }

    /// The partition's size in bytes: the sum of its extents.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The pieces of `super` (offset or zeros) covering `len` bytes from logical `offset`:
    /// `(position in the caller's buffer, length, physical offset)`.
    fn pieces(
        &self,
        offset: u64,
        len: usize,
    ) -> io::Result<impl Iterator<Item = (usize, usize, Option<u64>)> + '_> {
        let end = offset.checked_add(len as u64);
        if end.map_or(true, |end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "access beyond the logical partition's end",
            ));
        }
        let end = offset + len as u64;
        let first = self.segments.partition_point(|s| s.start + s.len <= offset);
        Ok(self.segments[first..]
            .iter()
            .take_while(move |s| s.start < end)
            .map(move |s| {
                let from = offset.max(s.start);
                let to = end.min(s.start + s.len);
                let at = (from - offset) as usize;
                let physical = s.physical.map(|p| p + (from - s.start));
                (at, (to - from) as usize, physical)
            }))
    }

    /// The physical byte ranges of `super` this partition occupies (for tests and `super info`).
    pub fn physical_ranges(&self) -> Vec<(u64, u64)> {
        self.segments
            .iter()
            .filter_map(|s| s.physical.map(|p| (p, s.len)))
            .collect()
    }
}

/// A logical partition of the running slot: reads only.
pub struct LogicalSource {
    super_dev: Arc<dyn SourceRead>,
    map: ExtentMap,
}

impl LogicalSource {
    /// Reads the partition `map` lays out in `super_dev`.
    pub fn new(super_dev: Arc<dyn SourceRead>, map: ExtentMap) -> Self {
        LogicalSource { super_dev, map }
    }
}

impl SourceRead for LogicalSource {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_mapped(&self.map, buf, offset, |b, o| self.super_dev.read_at(b, o))
    }
    fn size(&self) -> u64 {
        self.map.size()
    }
}

/// A logical partition of the target slot, written into its extents of `super`.
pub struct LogicalTarget {
    super_dev: Arc<dyn TargetWrite>,
    map: ExtentMap,
}

impl LogicalTarget {
    /// Writes the partition `map` lays out in `super_dev`.
    pub fn new(super_dev: Arc<dyn TargetWrite>, map: ExtentMap) -> Self {
        LogicalTarget { super_dev, map }
    }
}

impl TargetWrite for LogicalTarget {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // Refused whole, before any byte is written.
        if self
            .map
            .pieces(offset, buf.len())?
            .any(|(_, _, p)| p.is_none())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write into a ZERO extent of a logical partition",
            ));
        }
        for (at, len, physical) in self.map.pieces(offset, buf.len())? {
            if let Some(physical) = physical {
                self.super_dev.write_at(&buf[at..at + len], physical)?;
            }
        }
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_mapped(&self.map, buf, offset, |b, o| self.super_dev.read_at(b, o))
    }
    fn sync(&self) -> io::Result<()> {
        self.super_dev.sync()
    }
    fn size(&self) -> u64 {
        self.map.size()
    }
}

fn read_mapped(
    map: &ExtentMap,
    buf: &mut [u8],
    offset: u64,
    read: impl Fn(&mut [u8], u64) -> io::Result<()>,
) -> io::Result<()> {
    for (at, len, physical) in map.pieces(offset, buf.len())? {
        let piece = &mut buf[at..at + len];
        match physical {
            Some(physical) => read(piece, physical)?,
            None => piece.fill(0),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::TargetPartition;

    /// Logical 0..8192 at super 16384, 8192..12288 zeros, 12288..16384 at super 4096.
    fn map() -> ExtentMap {
        let seg = |start, len, physical| Segment {
            start,
            len,
            physical,
        };
        ExtentMap {
            segments: vec![
                seg(0, 8192, Some(16384)),
                seg(8192, 4096, None),
                seg(12288, 4096, Some(4096)),
            ],
            size: 16384,
        }
    }

    #[test]
    fn writes_and_reads_across_extents_zero_reads_zeros_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("super.img");
        std::fs::write(&path, vec![0xeeu8; 32768]).unwrap();
        let dev: Arc<dyn TargetWrite> = Arc::new(TargetPartition::open(&path).unwrap());
        let part = LogicalTarget::new(dev, map());
        assert_eq!(part.size(), 16384);

        part.write_at(&[1u8; 100], 8150).unwrap_err();
        part.write_at(&[2u8; 100], 9000).unwrap_err();
        part.write_at(&[3u8; 4096], 12288).unwrap();
        part.write_at(&[4u8; 8192], 0).unwrap();
        assert!(part.write_at(&[5u8; 1], 16384).is_err(), "past the end");
        assert!(part.write_at(&[5u8; 2], u64::MAX).is_err(), "overflow");

        let mut all = vec![0u8; 16384];
        part.read_at(&mut all, 0).unwrap();
        assert!(all[..8192].iter().all(|&b| b == 4));
        assert!(all[8192..12288].iter().all(|&b| b == 0), "ZERO reads zeros");
        assert!(all[12288..].iter().all(|&b| b == 3));

        let image = std::fs::read(&path).unwrap();
        assert!(
            image[..4096].iter().all(|&b| b == 0xee),
            "unmapped bytes untouched"
        );
        assert!(image[4096..8192].iter().all(|&b| b == 3));
        assert!(image[8192..16384].iter().all(|&b| b == 0xee));
        assert!(image[16384..24576].iter().all(|&b| b == 4));
        assert!(image[24576..].iter().all(|&b| b == 0xee));
    }
}
