//! The four table entries (partition, extent, group, block device) and their names.

use super::bytes::{u32_le, u64_le};
use super::error::{malformed, LpError};

pub(crate) const PARTITION_SIZE: usize = 52;
pub(crate) const EXTENT_SIZE: usize = 24;
pub(crate) const GROUP_SIZE: usize = 48;
pub(crate) const BLOCK_DEVICE_SIZE: usize = 64;
/// Every name field is 36 bytes; we keep one for the NUL terminator.
pub(crate) const NAME_FIELD: usize = 36;

const TARGET_LINEAR: u32 = 0;
const TARGET_ZERO: u32 = 1;

/// A logical partition: its name, attributes (`ATTR_*`), group and extent range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The partition's name (slot-suffixed on A/B devices, e.g. `system_a`).
    pub name: String,
    /// `ATTR_*` bits.
    pub attributes: u32,
    /// Index of its group in the metadata's group table.
    pub group_index: u32,
    pub(crate) first_extent: u32,
    pub(crate) num_extents: u32,
}

impl Partition {
    /// How many extents map this partition.
    pub fn num_extents(&self) -> u32 {
        self.num_extents
    }
}

/// Where an extent's sectors come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentTarget {
    /// dm-linear onto block device `block_device` from `physical_sector` (512-byte sectors).
    Linear {
        /// Index of the block device in the metadata's block device table.
        block_device: u32,
        /// First sector on it.
        physical_sector: u64,
    },
    /// dm-zero: reads as zeros, takes no space.
    Zero,
}

/// One piece of a partition's logical→physical map, in 512-byte sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Length in 512-byte sectors.
    pub num_sectors: u64,
    /// Where the sectors come from.
    pub target: ExtentTarget,
}

/// A partition group: the partitions of one slot share its maximum size (0: unlimited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// The group's name (`default`, or a slot-suffixed one such as `main_a`).
    pub name: String,
    /// Group flags (`LP_GROUP_SLOT_SUFFIXED`).
    pub flags: u32,
    /// The most bytes its partitions may take together (0: unlimited).
    pub maximum_size: u64,
}

/// A physical block device the logical partitions live on; entry 0 is `super`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDevice {
    /// First sector usable for extents (after the metadata region, aligned).
    pub first_logical_sector: u64,
    /// Alignment of partition extents on the device, in bytes.
    pub alignment: u32,
    /// Offset of the device's alignment, in bytes.
    pub alignment_offset: u32,
    /// Size in bytes when the metadata was made.
    pub size: u64,
    /// The partition holding the device (`super`).
    pub partition_name: String,
    /// Block device flags (`LP_BLOCK_DEVICE_SLOT_SUFFIXED`).
    pub flags: u32,
}

/// A name field: ASCII letters, digits, `_`, `-` or `.`, NUL-terminated within 36 bytes and
/// NUL-padded. `-` occurs in libsnapshot's `<name>-cow` partitions; `/` never may (names
/// become device-mapper and `/dev/block/mapper` names).
pub(crate) fn parse_name(field: &[u8], what: &str) -> Result<String, LpError> {
    let Some(len) = field.iter().position(|&b| b == 0) else {
        malformed!("{what} name is not NUL-terminated within {NAME_FIELD} bytes");
    };
    let (name, rest) = field.split_at(len);
    if rest.iter().any(|&b| b != 0) {
        malformed!("{what} name has bytes after its terminator");
    }
    check_name(name, what).map_err(LpError::malformed)?;
    // check_name allowed ASCII only, so this is lossless.
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// The rule of [`parse_name`], for names from either side (metadata or a request).
pub(crate) fn check_name(name: &[u8], what: &str) -> Result<(), String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if name.len() >= NAME_FIELD {
        return Err(format!(
            "{what} name {shown:?} is longer than {} bytes",
            NAME_FIELD - 1
        ));
    }
    if name == b"." || name == b".." {
        return Err(format!("{what} name {shown:?} is not allowed"));
    }
    if let Some(&b) = name
        .iter()
        .find(|&&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
    {
        return Err(format!("{what} name {shown:?} has the character {b:#04x}"));
    }
    Ok(())
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let mut field = [0u8; NAME_FIELD];
    let n = name.len().min(NAME_FIELD - 1);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
    out.extend_from_slice(&field);
}

pub(crate) fn parse_partition(e: &[u8]) -> Result<Partition, LpError> {
    Ok(Partition {
        name: parse_name(e.get(..NAME_FIELD).unwrap_or_default(), "partition")?,
        attributes: u32_le(e, 36),
        first_extent: u32_le(e, 40),
        num_extents: u32_le(e, 44),
        group_index: u32_le(e, 48),
    })
}

pub(crate) fn put_partition(out: &mut Vec<u8>, p: &Partition) {
    put_name(out, &p.name);
    out.extend_from_slice(&p.attributes.to_le_bytes());
    out.extend_from_slice(&p.first_extent.to_le_bytes());
    out.extend_from_slice(&p.num_extents.to_le_bytes());
    out.extend_from_slice(&p.group_index.to_le_bytes());
}

pub(crate) fn parse_extent(e: &[u8]) -> Result<Extent, LpError> {
    let num_sectors = u64_le(e, 0);
    let (kind, data, source) = (u32_le(e, 8), u64_le(e, 12), u32_le(e, 20));
    let target = match kind {
        TARGET_LINEAR => ExtentTarget::Linear {
            block_device: source,
            physical_sector: data,
        },
        TARGET_ZERO if data == 0 && source == 0 => ExtentTarget::Zero,
        TARGET_ZERO => malformed!("zero extent has a target ({data}, {source})"),
        other => malformed!("extent has an unknown target type {other}"),
    };
    if num_sectors == 0 {
        malformed!("extent has no sectors");
    }
    Ok(Extent {
        num_sectors,
        target,
    })
}

pub(crate) fn put_extent(out: &mut Vec<u8>, e: &Extent) {
    let (kind, data, source) = match e.target {
        ExtentTarget::Linear {
            block_device,
            physical_sector,
        } => (TARGET_LINEAR, physical_sector, block_device),
        ExtentTarget::Zero => (TARGET_ZERO, 0, 0),
    };
    out.extend_from_slice(&e.num_sectors.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&data.to_le_bytes());
    out.extend_from_slice(&source.to_le_bytes());
}

pub(crate) fn parse_group(e: &[u8]) -> Result<Group, LpError> {
    Ok(Group {
        name: parse_name(e.get(..NAME_FIELD).unwrap_or_default(), "group")?,
        flags: u32_le(e, 36),
        maximum_size: u64_le(e, 40),
    })
}

pub(crate) fn put_group(out: &mut Vec<u8>, g: &Group) {
    put_name(out, &g.name);
    out.extend_from_slice(&g.flags.to_le_bytes());
    out.extend_from_slice(&g.maximum_size.to_le_bytes());
}

pub(crate) fn parse_block_device(e: &[u8]) -> Result<BlockDevice, LpError> {
    Ok(BlockDevice {
        first_logical_sector: u64_le(e, 0),
        alignment: u32_le(e, 8),
        alignment_offset: u32_le(e, 12),
        size: u64_le(e, 16),
        partition_name: parse_name(
            e.get(24..24 + NAME_FIELD).unwrap_or_default(),
            "block device",
        )?,
        flags: u32_le(e, 60),
    })
}

pub(crate) fn put_block_device(out: &mut Vec<u8>, d: &BlockDevice) {
    out.extend_from_slice(&d.first_logical_sector.to_le_bytes());
    out.extend_from_slice(&d.alignment.to_le_bytes());
    out.extend_from_slice(&d.alignment_offset.to_le_bytes());
    out.extend_from_slice(&d.size.to_le_bytes());
    put_name(out, &d.partition_name);
    out.extend_from_slice(&d.flags.to_le_bytes());
}
