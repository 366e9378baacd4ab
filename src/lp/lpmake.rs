//! [`NewSuper`]: a new `super` layout built the way `lpmake` builds one.

use super::builder::Builder;
use super::error::LpError;
use super::geometry::Geometry;
use super::metadata::Metadata;
use super::tables::BlockDevice;
use super::{DEFAULT_GROUP, SUPER_NAME};

/// One `--partition NAME:ATTRS:SIZE:GROUP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPartition {
    /// The partition's name.
    pub name: String,
    /// `ATTR_*` (lpmake offers `none` or `readonly`).
    pub attributes: u32,
    /// Bytes; rounded up to the logical block size.
    pub size: u64,
    /// The group it belongs to.
    pub group: String,
}

/// The arguments of an `lpmake` call on one `super` device. [`NewSuper::build`] gives the
/// same metadata lpmake writes for them: groups added in order, then each partition added
/// and resized in order from aligned free space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSuper {
    /// `--device-size`.
    pub device_size: u64,
    /// `--metadata-size` (rounded up to 512).
    pub metadata_max_size: u32,
    /// `--metadata-slots`.
    pub slot_count: u32,
    /// `--virtual-ab`: a 10.2 header with VIRTUAL_AB_DEVICE.
    pub virtual_ab: bool,
    /// `--block-size` (default 4096).
    pub block_size: u32,
    /// `--alignment` (default 1 MiB).
    pub alignment: u32,
    /// `--alignment-offset` (default 0).
    pub alignment_offset: u32,
    /// `-x`: SLOT_SUFFIXED on the block device, groups other than `default`, partitions.
    pub auto_slot_suffixing: bool,
    /// `--group NAME:MAX_SIZE`, in order (`default` always exists first).
    pub groups: Vec<(String, u64)>,
    /// `--partition`, in order.
    pub partitions: Vec<NewPartition>,
}

impl NewSuper {
    /// lpmake's defaults for the given device size, metadata size and slot count.
    pub fn new(device_size: u64, metadata_max_size: u32, slot_count: u32) -> NewSuper {
        NewSuper {
            device_size,
            metadata_max_size,
            slot_count,
            virtual_ab: false,
            block_size: 4096,
            alignment: 1024 * 1024,
            alignment_offset: 0,
            auto_slot_suffixing: false,
            groups: Vec::new(),
            partitions: Vec::new(),
        }
    }

    /// Adds group `name` of at most `maximum_size` bytes (0: no limit).
    pub fn group(mut self, name: &str, maximum_size: u64) -> NewSuper {
        self.groups.push((name.into(), maximum_size));
        self
    }

    /// Adds a partition; `group` `None` is `default`.
    pub fn partition(
        mut self,
        name: &str,
        attributes: u32,
        size: u64,
        group: Option<&str>,
    ) -> NewSuper {
        self.partitions.push(NewPartition {
            name: name.into(),
            attributes,
            size,
            group: group.unwrap_or(DEFAULT_GROUP).into(),
        });
        self
    }

    /// The geometry and metadata lpmake would write (every slot holds the same metadata).
    pub fn build(&self) -> Result<(Geometry, Metadata), LpError> {
        let device = BlockDevice {
            first_logical_sector: 0,
            alignment: self.alignment,
            alignment_offset: self.alignment_offset,
            size: self.device_size,
            partition_name: SUPER_NAME.into(),
            flags: 0,
        };
        let mut b = Builder::new(
            device,
            self.block_size,
            self.metadata_max_size,
            self.slot_count,
        )?;
        if self.auto_slot_suffixing {
            b.auto_slot_suffixing = true;
        }
        if self.virtual_ab {
            b.set_virtual_ab_flag();
        }
        for (name, max) in &self.groups {
            b.add_group(name, *max)?;
        }
        for p in &self.partitions {
            b.add_partition(&p.name, &p.group, p.attributes)?;
            b.resize_partition(&p.name, p.size)?;
        }
        let m = b.export()?;
        Ok((*m.geometry(), m))
    }
}
