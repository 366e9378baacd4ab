//! The allocator of liblp's `MetadataBuilder`: groups, partitions and their extents taken
//! from aligned free space, exported as [`Metadata`]. lpmake and update_engine both build
//! through it, so matching its choices sector for sector is what makes our layouts
//! byte-identical to theirs.

use super::error::LpError;
use super::free::{
    align_sector, align_to, allocatable_space, free_regions, prioritize_second_half, used_regions,
    FreeRegion,
};
use super::geometry::Geometry;
use super::header::{VERSION_FOR_EXPANDED_HEADER, VERSION_FOR_UPDATED_ATTR};
use super::metadata::Metadata;
use super::tables::{check_name, BlockDevice, Extent, ExtentTarget, Group, Partition};
use super::{DEFAULT_GROUP, SECTOR_SIZE};

const ATTR_MASK: u32 = 0xf;
const ATTR_MASK_V1: u32 = super::ATTR_UPDATED | super::ATTR_DISABLED;

struct BGroup {
    name: String,
    maximum_size: u64,
}

struct BPartition {
    name: String,
    group: String,
    attributes: u32,
    extents: Vec<Extent>,
    /// Bytes, zero extents included (liblp's `Partition::size`).
    size: u64,
}

impl BPartition {
    /// Appends an extent, merged into the previous one when it continues it (as liblp does).
    fn add_extent(&mut self, e: Extent) {
        self.size = self
            .size
            .saturating_add(e.num_sectors.saturating_mul(SECTOR_SIZE));
        if let (
            ExtentTarget::Linear {
                block_device: d,
                physical_sector: s,
            },
            Some(Extent {
                num_sectors: pn,
                target:
                    ExtentTarget::Linear {
                        block_device: pd,
                        physical_sector: ps,
                    },
            }),
        ) = (e.target, self.extents.last_mut())
        {
            if *pd == d && ps.checked_add(*pn) == Some(s) {
                *pn += e.num_sectors;
                return;
            }
        }
        self.extents.push(e);
    }

    /// Bytes in linear extents (liblp's `BytesOnDisk`, what groups count).
    fn bytes_on_disk(&self) -> u64 {
        self.extents
            .iter()
            .filter(|e| matches!(e.target, ExtentTarget::Linear { .. }))
            .fold(0u64, |s, e| {
                s.saturating_add(e.num_sectors.saturating_mul(SECTOR_SIZE))
            })
    }

    fn shrink_to(&mut self, aligned_size: u64) {
        let mut remove = (self.size - aligned_size) / SECTOR_SIZE;
        while remove > 0 {
            let Some(last) = self.extents.last_mut() else {
                break;
            };
            if last.num_sectors > remove {
                last.num_sectors -= remove;
                self.size -= remove * SECTOR_SIZE;
                break;
            }
            remove -= last.num_sectors;
            self.size -= last.num_sectors * SECTOR_SIZE;
            self.extents.pop();
        }
    }
}

/// A layout being built: liblp's `MetadataBuilder` state.
pub(crate) struct Builder {
    geometry: Geometry,
    block_devices: Vec<BlockDevice>,
    minor_version: u16,
    flags: u32,
    groups: Vec<BGroup>,
    partitions: Vec<BPartition>,
    pub(crate) auto_slot_suffixing: bool,
    /// On an A/B device with a non-VAB `super`, `_b` partitions are allocated from the
    /// second half first (`PrioritizeSecondHalfOfSuper`).
    pub(crate) halve_super: bool,
    /// Regions no new extent may take though no partition here holds them (a Virtual A/B
    /// COW partition must avoid the running slot's extents too).
    reserved: Vec<FreeRegion>,
}

impl Builder {
    /// An empty layout on one `super` device (`MetadataBuilder::Init` with block devices).
    pub(crate) fn new(
        super_device: BlockDevice,
        logical_block_size: u32,
        metadata_max_size: u32,
        slot_count: u32,
    ) -> Result<Builder, LpError> {
        let bad = |m: String| Err(LpError::bad_request(m));
        if metadata_max_size < 256 {
            return bad(format!(
                "metadata size {metadata_max_size} is below 256 bytes"
            ));
        }
        if slot_count == 0 {
            return bad("zero metadata slots".into());
        }
        let Some(max) =
            align_to(u64::from(metadata_max_size), SECTOR_SIZE).and_then(|m| u32::try_from(m).ok())
        else {
            return bad(format!("metadata size {metadata_max_size} is too large"));
        };
        let lbs = u64::from(logical_block_size);
        let mut d = super_device;
        if lbs == 0 || lbs % SECTOR_SIZE != 0 || d.size % lbs != 0 {
            return bad(format!(
                "block size {lbs} must be a multiple of 512 dividing the device size {}",
                d.size
            ));
        }
        if d.alignment % 512 != 0 || d.alignment_offset % 512 != 0 {
            return bad("alignment and alignment offset must be multiples of 512".into());
        }
        check_name(d.partition_name.as_bytes(), "block device").map_err(LpError::bad_request)?;
        let geometry = Geometry {
            metadata_max_size: max,
            metadata_slot_count: slot_count,
            logical_block_size,
        };
        let reserved = geometry.total_metadata_size()?;
        if d.size < reserved {
            return Err(LpError::no_space(format!(
                "a {}-byte device cannot hold {reserved} bytes of metadata",
                d.size
            )));
        }
        let by = if d.alignment != 0 {
            u64::from(d.alignment)
        } else {
            lbs
        };
        let Some(start) = align_to(reserved, by) else {
            return bad("the first logical sector overflows".into());
        };
        d.first_logical_sector = start / SECTOR_SIZE;
        if d.size < start.saturating_add(lbs) {
            return Err(LpError::no_space(format!(
                "the device must be at least {} bytes, it has {}",
                start.saturating_add(lbs),
                d.size
            )));
        }
        let mut b = Builder {
            geometry,
            block_devices: vec![d],
            minor_version: 0,
            flags: 0,
            groups: Vec::new(),
            partitions: Vec::new(),
            auto_slot_suffixing: false,
            halve_super: false,
            reserved: Vec::new(),
        };
        b.add_group(DEFAULT_GROUP, 0)?;
        Ok(b)
    }

    /// A layout starting from existing metadata (`MetadataBuilder::Init(metadata)`): group
    /// flags are not carried over, a 10.1 header is not either (export raises it again when
    /// an attribute needs it), a 10.2 header keeps its flags.
    pub(crate) fn from_metadata(m: &Metadata) -> Result<Builder, LpError> {
        let mut b = Builder {
            geometry: m.geometry,
            block_devices: m.block_devices.clone(),
            minor_version: 0,
            flags: 0,
            groups: Vec::new(),
            partitions: Vec::new(),
            auto_slot_suffixing: false,
            halve_super: false,
            reserved: Vec::new(),
        };
        if m.minor_version >= VERSION_FOR_EXPANDED_HEADER {
            b.require_expanded_header();
            b.flags = m.flags;
        }
        for g in &m.groups {
            b.add_group(&g.name, g.maximum_size)?;
        }
        for p in &m.partitions {
            let Some(g) = m.group_of(p) else {
                return Err(LpError::malformed(format!(
                    "partition {:?} has no group",
                    p.name
                )));
            };
            b.add_partition(&p.name, &g.name.clone(), p.attributes)?;
            if let Some(new) = b.partitions.last_mut() {
                m.extents_of(p).iter().for_each(|e| new.add_extent(*e));
            }
        }
        Ok(b)
    }

    pub(crate) fn require_expanded_header(&mut self) {
        self.minor_version = self.minor_version.max(VERSION_FOR_EXPANDED_HEADER);
    }

    pub(crate) fn set_virtual_ab_flag(&mut self) {
        self.require_expanded_header();
        self.flags |= super::HEADER_FLAG_VIRTUAL_AB_DEVICE;
    }

    pub(crate) fn add_group(&mut self, name: &str, maximum_size: u64) -> Result<(), LpError> {
        check_name(name.as_bytes(), "group").map_err(LpError::bad_request)?;
        if self.groups.iter().any(|g| g.name == name) {
            return Err(LpError::bad_request(format!(
                "group {name:?} already exists"
            )));
        }
        self.groups.push(BGroup {
            name: name.into(),
            maximum_size,
        });
        Ok(())
    }

    pub(crate) fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|g| g.name.clone()).collect()
    }

    pub(crate) fn add_partition(
        &mut self,
        name: &str,
        group: &str,
        attributes: u32,
    ) -> Result<(), LpError> {
        check_name(name.as_bytes(), "partition").map_err(LpError::bad_request)?;
        if attributes & !ATTR_MASK != 0 {
            return Err(LpError::bad_request(format!(
                "partition {name:?}: unknown attributes {attributes:#x}"
            )));
        }
        if self.partitions.iter().any(|p| p.name == name) {
            return Err(LpError::bad_request(format!(
                "partition {name:?} already exists"
            )));
        }
        if !self.groups.iter().any(|g| g.name == group) {
            return Err(LpError::bad_request(format!(
                "partition {name:?}: no group {group:?}"
            )));
        }
        self.partitions.push(BPartition {
            name: name.into(),
            group: group.into(),
            attributes,
            extents: Vec::new(),
            size: 0,
        });
        Ok(())
    }

    /// Removes a group and its partitions (never `default`, as liblp).
    pub(crate) fn remove_group_and_partitions(&mut self, group: &str) {
        if group == DEFAULT_GROUP {
            return;
        }
        self.partitions.retain(|p| p.group != group);
        self.groups.retain(|g| g.name != group);
    }

    pub(crate) fn allocatable_space(&self) -> u64 {
        allocatable_space(&self.block_devices)
    }

    fn group_used(&self, group: &str) -> u64 {
        self.partitions
            .iter()
            .filter(|p| p.group == group)
            .fold(0u64, |s, p| s.saturating_add(p.bytes_on_disk()))
    }

    /// liblp's `ResizePartition`: the size rounded up to the logical block size, grown from
    /// free space or shrunk from the end; the group's maximum size is checked first.
    pub(crate) fn resize_partition(&mut self, name: &str, requested: u64) -> Result<(), LpError> {
        let Some(i) = self.partitions.iter().position(|p| p.name == name) else {
            return Err(LpError::bad_request(format!("no partition {name:?}")));
        };
        let Some(aligned) = align_to(requested, u64::from(self.geometry.logical_block_size)) else {
            return Err(LpError::no_space(format!(
                "{name}: size {requested} overflows"
            )));
        };
        let old = self.partitions[i].size;
        if aligned > old {
            let group = self.partitions[i].group.clone();
            let max = self
                .groups
                .iter()
                .find(|g| g.name == group)
                .map_or(0, |g| g.maximum_size);
            let needed = aligned - old;
            let used = self.group_used(&group);
            if max > 0 && (used >= max || max - used < needed) {
                return Err(LpError::no_space(format!(
                    "partition {name} needs {needed} more bytes, group {group} has {} of {max} free",
                    max.saturating_sub(used)
                )));
            }
            self.grow(i, aligned)
        } else {
            if aligned < old {
                self.partitions[i].shrink_to(aligned);
            }
            Ok(())
        }
    }

    fn grow(&mut self, i: usize, aligned: u64) -> Result<(), LpError> {
        let p = &self.partitions[i];
        let mut needed = (aligned - p.size) / SECTOR_SIZE;
        let mut free = self.free_regions();
        if self.halve_super && p.name.ends_with("_b") {
            free = prioritize_second_half(&self.block_devices, free);
        }
        let per_block = u64::from(self.geometry.logical_block_size) / SECTOR_SIZE;
        let mut new = Vec::new();
        if let Some(e) = self.extend_final_extent(i, &free, needed) {
            needed -= e.num_sectors;
            new.push(e);
        }
        for mut r in free {
            if needed == 0 {
                break;
            }
            if r.num_sectors() % per_block != 0 {
                r.end = r.start + r.num_sectors() / per_block * per_block;
                if r.num_sectors() == 0 {
                    continue;
                }
            }
            let take = needed.min(r.num_sectors());
            new.push(Extent {
                num_sectors: take,
                target: ExtentTarget::Linear {
                    block_device: r.block_device,
                    physical_sector: r.start,
                },
            });
            needed -= take;
        }
        let name = &self.partitions[i].name;
        if needed > 0 {
            return Err(LpError::no_space(format!(
                "not enough free space in super for partition {name}: {} bytes short",
                needed * SECTOR_SIZE
            )));
        }
        for e in new {
            self.partitions[i].add_extent(e);
        }
        Ok(())
    }

    /// The misaligned tail after a partition's last linear extent, which nothing else can
    /// use, taken first (liblp's `ExtendFinalExtent`).
    fn extend_final_extent(&self, i: usize, free: &[FreeRegion], needed: u64) -> Option<Extent> {
        let last = self.partitions[i].extents.last()?;
        let ExtentTarget::Linear {
            block_device,
            physical_sector,
        } = last.target
        else {
            return None;
        };
        let end = physical_sector.checked_add(last.num_sectors)?;
        let next = align_sector(self.block_devices.get(block_device as usize)?, end)?;
        if next == end {
            return None;
        }
        let cand = FreeRegion {
            block_device,
            start: end,
            end: end + (next - end).min(needed),
        };
        let overlaps = |r: &FreeRegion| {
            r.block_device == cand.block_device && r.start < cand.end && cand.start < r.end
        };
        if self.used_regions().iter().any(overlaps) || free.iter().any(overlaps) {
            return None;
        }
        Some(Extent {
            num_sectors: cand.num_sectors(),
            target: ExtentTarget::Linear {
                block_device,
                physical_sector: end,
            },
        })
    }

    /// Every linear extent of every partition, as a region, and the reserved regions.
    fn used_regions(&self) -> Vec<FreeRegion> {
        let mut used = used_regions(self.partitions.iter().flat_map(|p| &p.extents));
        used.extend_from_slice(&self.reserved);
        used
    }

    /// Keeps new extents out of `regions` from now on.
    pub(crate) fn reserve(&mut self, regions: &[FreeRegion]) {
        self.reserved.extend_from_slice(regions);
    }

    /// Renames every group and partition ending in `from` to end in `to`, and adds
    /// `attributes` to every partition (liblp's `UpdateMetadataForInPlaceSnapshot`).
    pub(crate) fn rename_suffix(&mut self, from: &str, to: &str, attributes: u32) {
        let rename = |name: &mut String| {
            if let Some(base) = name.strip_suffix(from) {
                *name = format!("{base}{to}");
            }
        };
        for g in &mut self.groups {
            rename(&mut g.name);
        }
        for p in &mut self.partitions {
            rename(&mut p.name);
            rename(&mut p.group);
            p.attributes |= attributes;
        }
    }

    /// Whether a partition of this name exists.
    pub(crate) fn has_partition(&self, name: &str) -> bool {
        self.partitions.iter().any(|p| p.name == name)
    }

    /// Sets a group's maximum size (liblp's `ChangeGroupSize`); adds the group if missing.
    pub(crate) fn set_group_size(&mut self, name: &str, maximum_size: u64) -> Result<(), LpError> {
        match self.groups.iter_mut().find(|g| g.name == name) {
            Some(g) => {
                g.maximum_size = maximum_size;
                Ok(())
            }
            None => self.add_group(name, maximum_size),
        }
    }

    /// Moves a partition into another (existing) group (liblp's `ChangePartitionGroup`).
    pub(crate) fn change_group(&mut self, name: &str, group: &str) -> Result<(), LpError> {
        if !self.groups.iter().any(|g| g.name == group) {
            return Err(LpError::bad_request(format!("no group {group:?}")));
        }
        match self.partitions.iter_mut().find(|p| p.name == name) {
            Some(p) => {
                p.group = group.to_owned();
                Ok(())
            }
            None => Err(LpError::bad_request(format!("no partition {name:?}"))),
        }
    }

    /// Clears `attributes` on every partition.
    pub(crate) fn clear_attribute(&mut self, attributes: u32) {
        for p in &mut self.partitions {
            p.attributes &= !attributes;
        }
    }

    /// Removes one partition.
    pub(crate) fn remove_partition(&mut self, name: &str) {
        self.partitions.retain(|p| p.name != name);
    }

    /// The partitions' names.
    pub(crate) fn partition_names(&self) -> Vec<String> {
        self.partitions.iter().map(|p| p.name.clone()).collect()
    }

    /// A partition's group.
    pub(crate) fn group_of(&self, name: &str) -> Option<String> {
        self.partitions
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.group.clone())
    }

    pub(crate) fn free_regions(&self) -> Vec<FreeRegion> {
        free_regions(&self.block_devices, &self.used_regions())
    }

    /// liblp's `Export`: the flat tables, the header raised to 10.1 when an attribute needs
    /// it, checked as parsed metadata is.
    pub(crate) fn export(&self) -> Result<Metadata, LpError> {
        for g in &self.groups {
            let used = self.group_used(&g.name);
            if g.maximum_size > 0 && used > g.maximum_size {
                return Err(LpError::no_space(format!(
                    "group {} uses {used} bytes, more than its maximum {}",
                    g.name, g.maximum_size
                )));
            }
        }
        let mut minor_version = self.minor_version;
        let slot_flag = u32::from(self.auto_slot_suffixing);
        let block_devices = self
            .block_devices
            .iter()
            .map(|d| BlockDevice {
                flags: d.flags | slot_flag,
                ..d.clone()
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|g| Group {
                name: g.name.clone(),
                flags: if g.name == DEFAULT_GROUP {
                    0
                } else {
                    slot_flag
                },
                maximum_size: g.maximum_size,
            })
            .collect();
        let mut partitions = Vec::new();
        let mut extents = Vec::new();
        for p in &self.partitions {
            if p.attributes & ATTR_MASK_V1 != 0 {
                minor_version = minor_version.max(VERSION_FOR_UPDATED_ATTR);
            }
            let group_index = self
                .groups
                .iter()
                .position(|g| g.name == p.group)
                .unwrap_or(usize::MAX);
            let too_many = || LpError::no_space("too many extents for the metadata tables");
            partitions.push(Partition {
                name: p.name.clone(),
                attributes: p.attributes
                    | if self.auto_slot_suffixing {
                        super::ATTR_SLOT_SUFFIXED
                    } else {
                        0
                    },
                group_index: u32::try_from(group_index).map_err(|_| too_many())?,
                first_extent: u32::try_from(extents.len()).map_err(|_| too_many())?,
                num_extents: u32::try_from(p.extents.len()).map_err(|_| too_many())?,
            });
            extents.extend_from_slice(&p.extents);
        }
        let m = Metadata {
            geometry: self.geometry,
            minor_version,
            flags: self.flags,
            partitions,
            extents,
            groups,
            block_devices,
        };
        m.validate()?;
        Ok(m)
    }
}
