//! Free space on the block devices, found and aligned as liblp's `MetadataBuilder` does.

use super::metadata::Metadata;
use super::tables::{BlockDevice, Extent, ExtentTarget};
use super::SECTOR_SIZE;

/// A free stretch of a block device, in 512-byte sectors (`end` exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FreeRegion {
    /// Index of the block device.
    pub block_device: u32,
    /// First free sector.
    pub start: u64,
    /// The sector after the last free one.
    pub end: u64,
}

impl FreeRegion {
    /// Length in sectors.
    pub fn num_sectors(&self) -> u64 {
        self.end - self.start
    }
}

/// liblp's `AlignTo`: `base` rounded up to a multiple of `alignment` (0: unchanged).
pub(crate) fn align_to(base: u64, alignment: u64) -> Option<u64> {
    if alignment == 0 || base % alignment == 0 {
        return Some(base);
    }
    base.checked_add(alignment - base % alignment)
}

/// liblp's `AlignSector`: the sector rounded up to the device's alignment. Like liblp it
/// ignores the alignment offset.
pub(crate) fn align_sector(d: &BlockDevice, sector: u64) -> Option<u64> {
    let lba = sector.checked_mul(SECTOR_SIZE)?;
    let aligned = align_to(align_to(lba, u64::from(d.alignment))?, SECTOR_SIZE)?;
    Some(aligned / SECTOR_SIZE)
}

/// The region of each linear extent.
pub(crate) fn used_regions<'a>(extents: impl Iterator<Item = &'a Extent>) -> Vec<FreeRegion> {
    extents
        .filter_map(|e| match e.target {
            ExtentTarget::Linear {
                block_device,
                physical_sector,
            } => Some(FreeRegion {
                block_device,
                start: physical_sector,
                end: physical_sector.saturating_add(e.num_sectors),
            }),
            ExtentTarget::Zero => None,
        })
        .collect()
}

/// liblp's `GetFreeRegions`: per device, the aligned gaps between used extents, from the
/// first logical sector to the end of the device.
pub(crate) fn free_regions(devices: &[BlockDevice], used: &[FreeRegion]) -> Vec<FreeRegion> {
    let mut free = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let dev = i as u32;
        let (first, last) = (d.first_logical_sector, d.size / SECTOR_SIZE);
        let mut spans: Vec<(u64, u64)> = used
            .iter()
            .filter(|r| r.block_device == dev)
            .map(|r| (r.start, r.end))
            .chain([(first, first), (last, last)])
            .collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            let [prev, cur] = w else { continue };
            let Some(aligned) = align_sector(d, prev.1) else {
                continue;
            };
            if aligned >= cur.0 {
                continue;
            }
            free.push(FreeRegion {
                block_device: dev,
                start: aligned,
                end: cur.0,
            });
        }
    }
    free
}

/// liblp's `PrioritizeSecondHalfOfSuper`: the regions of super past its aligned midpoint
/// first, then the rest, so `_a` and `_b` copies fill opposite halves.
pub(crate) fn prioritize_second_half(
    devices: &[BlockDevice],
    free: Vec<FreeRegion>,
) -> Vec<FreeRegion> {
    let Some(sup) = devices.first() else {
        return free;
    };
    let (first, last) = (sup.first_logical_sector, sup.size / SECTOR_SIZE);
    let Some(mid) = align_sector(sup, first + (last.saturating_sub(first)) / 2) else {
        return free;
    };
    let (mut first_half, mut second_half) = (Vec::new(), Vec::new());
    for r in free {
        if r.block_device != 0 || r.end <= mid {
            first_half.push(r);
        } else if r.start < mid {
            first_half.push(FreeRegion { end: mid, ..r });
            second_half.push(FreeRegion { start: mid, ..r });
        } else {
            second_half.push(r);
        }
    }
    second_half.extend(first_half);
    second_half
}

/// Sum over block devices of the bytes after their first logical sector (liblp's
/// `AllocatableSpace`).
pub(crate) fn allocatable_space(devices: &[BlockDevice]) -> u64 {
    devices.iter().fold(0u64, |s, d| {
        s.saturating_add(
            d.size
                .saturating_sub(d.first_logical_sector.saturating_mul(SECTOR_SIZE)),
        )
    })
}

impl Metadata {
    /// The free regions of super, aligned as the allocator would use them (for `super info`).
    pub fn free_regions(&self) -> Vec<FreeRegion> {
        let used = used_regions(self.extents.iter());
        free_regions(&self.block_devices, &used)
    }

    /// Bytes usable for extents: each block device after its first logical sector.
    pub fn allocatable_space(&self) -> u64 {
        allocatable_space(&self.block_devices)
    }
}
