//! One metadata slot: parsed strictly into [`Metadata`], serialised as liblp's writer does.

use std::collections::HashSet;

use super::error::{malformed, LpError};
use super::geometry::Geometry;
use super::header::{self, TableDesc, VERSION_FOR_UPDATED_ATTR};
use super::tables::{self, BlockDevice, Extent, ExtentTarget, Group, Partition};
use super::{
    ATTR_DISABLED, ATTR_READONLY, ATTR_SLOT_SUFFIXED, ATTR_UPDATED, SECTOR_SIZE, SUPER_NAME,
};

/// Attributes every version knows, and those that need 10.1.
pub(crate) const ATTR_MASK_V0: u32 = ATTR_READONLY | ATTR_SLOT_SUFFIXED;
const ATTR_MASK_V1: u32 = ATTR_UPDATED | ATTR_DISABLED;
/// The only flag groups and block devices define: SLOT_SUFFIXED.
const KNOWN_ENTRY_FLAGS: u32 = 1;

/// Which rules a metadata's block devices and extents follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rules {
    /// `super`'s: block device 0 is `super`, whose first sectors hold the metadata region, so
    /// every extent starts at or after a device's `first_logical_sector`.
    Super,
    /// libfiemap's image metadata (an `lp_metadata` file, [`super::images`]): block device 0
    /// is the data partition (`userdata`), whose first sectors belong to its file system, not
    /// to the metadata; extents are where the file system put the images' blocks, anywhere
    /// on the device (libfiemap's `FillPartitionExtents` adds them unchecked).
    Images,
}

/// The checked contents of one metadata slot (with the geometry it was read under).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub(crate) geometry: Geometry,
    pub(crate) minor_version: u16,
    pub(crate) flags: u32,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) extents: Vec<Extent>,
    pub(crate) groups: Vec<Group>,
    pub(crate) block_devices: Vec<BlockDevice>,
}

/// Reads table `t` (entries of `size` bytes) out of `blob` with `parse`. The caller
/// checked the table lies inside `blob`, so the allocation is bounded by the input.
fn read_table<T>(
    blob: &[u8],
    t: &TableDesc,
    size: usize,
    parse: fn(&[u8]) -> Result<T, LpError>,
) -> Result<Vec<T>, LpError> {
    let start = t.offset as usize;
    let len = t.num_entries as usize * size;
    let Some(bytes) = start.checked_add(len).and_then(|end| blob.get(start..end)) else {
        malformed!(
            "table at {start} with {} entries is outside the tables",
            t.num_entries
        );
    };
    bytes.chunks_exact(size).map(parse).collect()
}

impl Metadata {
    /// Parses one metadata slot from `bytes` (a slot's copy; bytes past `metadata_max_size`
    /// are ignored). Checks the header, both checksums, entry sizes, table bounds and
    /// layout, then everything [`Metadata::validate`] checks.
    pub fn parse(bytes: &[u8], geometry: &Geometry) -> Result<Metadata, LpError> {
        Self::parse_as(bytes, geometry, Rules::Super)
    }

    /// [`Metadata::parse`] under `rules`.
    pub(crate) fn parse_as(
        bytes: &[u8],
        geometry: &Geometry,
        rules: Rules,
    ) -> Result<Metadata, LpError> {
        geometry.check()?;
        let max = geometry.metadata_max_size as usize;
        let bytes = bytes.get(..max).unwrap_or(bytes);
        let h = header::parse(bytes)?;
        let tables_size = h.tables_size as usize;
        if h.header_size + tables_size > max {
            malformed!("tables of {tables_size} bytes do not fit a {max}-byte metadata slot");
        }
        let Some(blob) = bytes.get(h.header_size..h.header_size + tables_size) else {
            malformed!(
                "tables of {tables_size} bytes end past the {} bytes given",
                bytes.len()
            );
        };
        let names = ["partition", "extent", "group", "block device"];
        let sizes = [
            tables::PARTITION_SIZE,
            tables::EXTENT_SIZE,
            tables::GROUP_SIZE,
            tables::BLOCK_DEVICE_SIZE,
        ];
        let mut expected_offset = 0u64;
        for ((t, name), size) in h.tables.iter().zip(names).zip(sizes) {
            if t.entry_size as usize != size {
                malformed!("{name} entries are {} bytes, not {size}", t.entry_size);
            }
            let len = u64::from(t.num_entries) * u64::from(t.entry_size);
            if u64::from(t.offset) > h.tables_size as u64
                || len > u64::from(h.tables_size) - u64::from(t.offset)
            {
                malformed!(
                    "{name} table ({} entries at {}) is outside the tables",
                    t.num_entries,
                    t.offset
                );
            }
            if u64::from(t.offset) != expected_offset {
                malformed!(
                    "{name} table is at {}, not right after the previous one",
                    t.offset
                );
            }
            expected_offset += len;
        }
        if expected_offset != u64::from(h.tables_size) {
            malformed!(
                "tables size {} is not the sum of the tables {expected_offset}",
                h.tables_size
            );
        }
        if super::bytes::sha256(blob) != h.tables_checksum {
            malformed!("metadata tables checksum does not match");
        }
        let m = Metadata {
            geometry: *geometry,
            minor_version: h.minor_version,
            flags: h.flags,
            partitions: read_table(blob, &h.tables[0], sizes[0], tables::parse_partition)?,
            extents: read_table(blob, &h.tables[1], sizes[1], tables::parse_extent)?,
            groups: read_table(blob, &h.tables[2], sizes[2], tables::parse_group)?,
            block_devices: read_table(blob, &h.tables[3], sizes[3], tables::parse_block_device)?,
        };
        m.validate_as(rules)?;
        Ok(m)
    }

    /// The consistency rules of a slot, for parsed metadata and for ours before it is written:
    /// attributes for the version, extent ranges laid out partition by partition, indexes in
    /// range, unique names, block device 0 `super` after the metadata region, linear extents
    /// inside their device and not overlapping, groups within their maximum size.
    pub fn validate(&self) -> Result<(), LpError> {
        self.validate_as(Rules::Super)
    }

    /// [`Metadata::validate`] under `rules`.
    pub(crate) fn validate_as(&self, rules: Rules) -> Result<(), LpError> {
        self.geometry.check()?;
        let devices = &self.block_devices;
        let Some(sup) = devices.first() else {
            malformed!("metadata has no block devices");
        };
        if rules == Rules::Super && sup.partition_name != SUPER_NAME {
            malformed!(
                "block device 0 is {:?}, not {SUPER_NAME:?}",
                sup.partition_name
            );
        }
        let region = self.geometry.total_metadata_size()?;
        let mut device_names = HashSet::new();
        for d in devices {
            if !device_names.insert(d.partition_name.as_str()) {
                malformed!("block device {:?} is listed twice", d.partition_name);
            }
            if d.flags & !KNOWN_ENTRY_FLAGS != 0 {
                malformed!(
                    "block device {:?} has unknown flags {:#x}",
                    d.partition_name,
                    d.flags
                );
            }
            let first = d.first_logical_sector.checked_mul(SECTOR_SIZE);
            match first {
                Some(b) if b < d.size => {}
                _ => malformed!(
                    "block device {:?}: first logical sector {} is not inside its {} bytes",
                    d.partition_name,
                    d.first_logical_sector,
                    d.size
                ),
            }
        }
        if rules == Rules::Super && sup.first_logical_sector * SECTOR_SIZE < region {
            malformed!(
                "logical sectors start at {} and overlap the {region}-byte metadata region",
                sup.first_logical_sector * SECTOR_SIZE
            );
        }
        let mut group_names = HashSet::new();
        for g in &self.groups {
            if !group_names.insert(g.name.as_str()) {
                malformed!("group {:?} is listed twice", g.name);
            }
            if g.flags & !KNOWN_ENTRY_FLAGS != 0 {
                malformed!("group {:?} has unknown flags {:#x}", g.name, g.flags);
            }
        }
        let mut allowed = ATTR_MASK_V0;
        if self.minor_version >= VERSION_FOR_UPDATED_ATTR {
            allowed |= ATTR_MASK_V1;
        }
        let mut next_extent = 0u64;
        let mut group_used = vec![0u64; self.groups.len()];
        let mut partition_names = HashSet::new();
        for p in &self.partitions {
            if !partition_names.insert(p.name.as_str()) {
                malformed!("partition {:?} is listed twice", p.name);
            }
            if p.attributes & !allowed != 0 {
                malformed!(
                    "partition {:?} has attributes {:#x} unknown to version 10.{}",
                    p.name,
                    p.attributes,
                    self.minor_version
                );
            }
            if u64::from(p.first_extent) != next_extent {
                malformed!(
                    "partition {:?} starts at extent {}, not {next_extent} after the previous one",
                    p.name,
                    p.first_extent
                );
            }
            next_extent += u64::from(p.num_extents);
            if next_extent > self.extents.len() as u64 {
                malformed!(
                    "partition {:?} has extents past the {} in the table",
                    p.name,
                    self.extents.len()
                );
            }
            let Some(used) = group_used.get_mut(p.group_index as usize) else {
                malformed!(
                    "partition {:?} is in group {} of {}",
                    p.name,
                    p.group_index,
                    self.groups.len()
                );
            };
            let mut sectors = 0u64;
            for e in self.extents_of(p) {
                sectors = match sectors.checked_add(e.num_sectors) {
                    Some(s) if s.checked_mul(SECTOR_SIZE).is_some() => s,
                    _ => malformed!("partition {:?} is larger than 2^64 bytes", p.name),
                };
                if let ExtentTarget::Linear { .. } = e.target {
                    *used = used.saturating_add(e.num_sectors * SECTOR_SIZE);
                }
            }
        }
        if next_extent != self.extents.len() as u64 {
            malformed!(
                "{} extents belong to no partition",
                self.extents.len() as u64 - next_extent
            );
        }
        for (g, used) in self.groups.iter().zip(&group_used) {
            if g.maximum_size != 0 && *used > g.maximum_size {
                malformed!(
                    "group {:?} uses {used} bytes, more than its maximum {}",
                    g.name,
                    g.maximum_size
                );
            }
        }
        self.check_extents_placement(rules)
    }

    /// Every linear extent inside its block device's logical area (under [`Rules::Images`],
    /// inside the device) and none overlapping.
    fn check_extents_placement(&self, rules: Rules) -> Result<(), LpError> {
        let mut spans = Vec::with_capacity(self.extents.len());
        for e in &self.extents {
            let ExtentTarget::Linear {
                block_device,
                physical_sector,
            } = e.target
            else {
                continue;
            };
            let Some(d) = self.block_devices.get(block_device as usize) else {
                malformed!(
                    "extent is on block device {block_device} of {}",
                    self.block_devices.len()
                );
            };
            let end = physical_sector.checked_add(e.num_sectors);
            let first = match rules {
                Rules::Super => d.first_logical_sector,
                Rules::Images => 0,
            };
            match end {
                Some(end) if physical_sector >= first && end <= d.size / SECTOR_SIZE => {
                    spans.push((block_device, physical_sector, end));
                }
                _ => malformed!(
                    "extent at sector {physical_sector} of {} sectors is outside the logical area of {:?}",
                    e.num_sectors,
                    d.partition_name
                ),
            }
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if let [a, b] = w {
                if a.0 == b.0 && b.1 < a.2 {
                    malformed!(
                        "extents at sectors {} and {} of {:?} overlap",
                        a.1,
                        b.1,
                        self.block_devices[a.0 as usize].partition_name
                    );
                }
            }
        }
        Ok(())
    }

    /// Header and tables, byte-identical to liblp's `SerializeMetadata` for the same
    /// content. Fails when the content breaks [`Metadata::validate`] or does not fit
    /// `geometry.metadata_max_size`.
    pub fn to_bytes(&self, geometry: &Geometry) -> Result<Vec<u8>, LpError> {
        self.to_bytes_as(geometry, Rules::Super)
    }

    /// [`Metadata::to_bytes`] under `rules`.
    pub(crate) fn to_bytes_as(
        &self,
        geometry: &Geometry,
        rules: Rules,
    ) -> Result<Vec<u8>, LpError> {
        self.validate_as(rules)?;
        let mut blob = Vec::new();
        let mut tables = [TableDesc::default(); 4];
        let counts = [
            (self.partitions.len(), tables::PARTITION_SIZE),
            (self.extents.len(), tables::EXTENT_SIZE),
            (self.groups.len(), tables::GROUP_SIZE),
            (self.block_devices.len(), tables::BLOCK_DEVICE_SIZE),
        ];
        let header_size = header::header_size_for(self.minor_version);
        let total: usize = header_size + counts.iter().map(|(n, s)| n * s).sum::<usize>();
        if total > geometry.metadata_max_size as usize {
            return Err(LpError::no_space(format!(
                "metadata of {total} bytes does not fit a {}-byte slot",
                geometry.metadata_max_size
            )));
        }
        let mut offset = 0u32;
        for (t, (n, s)) in tables.iter_mut().zip(counts) {
            // total fits in u32 (checked above against a u32), so these do too.
            *t = TableDesc {
                offset,
                num_entries: n as u32,
                entry_size: s as u32,
            };
            offset += (n * s) as u32;
        }
        self.partitions
            .iter()
            .for_each(|p| tables::put_partition(&mut blob, p));
        self.extents
            .iter()
            .for_each(|e| tables::put_extent(&mut blob, e));
        self.groups
            .iter()
            .for_each(|g| tables::put_group(&mut blob, g));
        self.block_devices
            .iter()
            .for_each(|d| tables::put_block_device(&mut blob, d));
        let mut out = header::serialize(self.minor_version, self.flags, &tables, &blob);
        out.extend_from_slice(&blob);
        Ok(out)
    }

    /// The geometry (metadata region size, slot count, block size).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    /// The partitions, in table order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }
    /// The partition named `name` (with its suffix), if any.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }
    /// The groups, in table order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    /// The group a partition belongs to.
    pub fn group_of(&self, p: &Partition) -> Option<&Group> {
        self.groups.get(p.group_index as usize)
    }
    /// The block devices; entry 0 is `super`.
    pub fn block_devices(&self) -> &[BlockDevice] {
        &self.block_devices
    }
    /// `LP_HEADER_FLAG_*` (only a 10.2 header has flags; older ones read as 0).
    pub fn header_flags(&self) -> u32 {
        self.flags
    }
    /// (major, minor): 10.0, 10.1 or 10.2.
    pub fn header_version(&self) -> (u16, u16) {
        (header::MAJOR_VERSION, self.minor_version)
    }

    /// The logical→physical map of one partition, in logical order.
    pub fn extents_of(&self, p: &Partition) -> &[Extent] {
        let start = p.first_extent as usize;
        start
            .checked_add(p.num_extents as usize)
            .and_then(|end| self.extents.get(start..end))
            .unwrap_or(&[])
    }

    /// The partition's size in bytes (linear and zero extents).
    pub fn partition_size(&self, p: &Partition) -> u64 {
        self.extents_of(p).iter().fold(0u64, |s, e| {
            s.saturating_add(e.num_sectors.saturating_mul(SECTOR_SIZE))
        })
    }
}

/// Metadata slot `slot` from a buffer holding super's metadata region (from offset 0): the
/// primary copy, or the backup when the primary is bad, as liblp's `ReadMetadata` does. When
/// both are bad, the primary's error is returned.
pub fn read_slot(region: &[u8], geometry: &Geometry, slot: u32) -> Result<Metadata, LpError> {
    let copy = |offset: u64| -> Result<Metadata, LpError> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let Some(bytes) = region.get(start..) else {
            malformed!(
                "metadata copy at {offset} is past the {} bytes given",
                region.len()
            );
        };
        Metadata::parse(bytes, geometry)
    };
    match copy(geometry.primary_offset(slot)?) {
        Ok(m) => Ok(m),
        Err(e) => copy(geometry.backup_offset(slot)?).map_err(|_| e),
    }
}

/// The whole metadata region of a freshly flashed super, as lpmake writes it (and liblp's
/// `FlashPartitionTable` in effect): 4096 zero bytes, the geometry twice, then every slot's
/// primary copy and every slot's backup copy, each the same metadata padded with zeros to
/// `metadata_max_size`.
pub fn flash_image(geometry: &Geometry, metadata: &Metadata) -> Result<Vec<u8>, LpError> {
    if geometry != metadata.geometry() {
        return Err(LpError::bad_request(
            "the geometry to flash differs from the metadata's",
        ));
    }
    let blob = metadata.to_bytes(geometry)?;
    let total = geometry.total_metadata_size()?;
    let mut out = Vec::new();
    let fits = usize::try_from(total)
        .ok()
        .filter(|&t| out.try_reserve_exact(t).is_ok());
    if fits.is_none() {
        return Err(LpError::no_space(format!(
            "a {total}-byte metadata region cannot be built in memory"
        )));
    }
    out.resize(super::RESERVED_BYTES as usize, 0);
    let g = geometry.to_bytes();
    out.extend_from_slice(&g);
    out.extend_from_slice(&g);
    for _ in 0..2 * u64::from(geometry.metadata_slot_count) {
        let start = out.len();
        out.extend_from_slice(&blob);
        out.resize(start + geometry.metadata_max_size as usize, 0);
    }
    Ok(out)
}
