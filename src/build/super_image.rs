//! A `super` image as `lpmake --image` makes one: the metadata region of a freshly flashed
//! super ([`crate::lp::flash_image`]), then each image written into its partition's extents.
//! For the demo, the tests and the benchmarks; a device's `super` comes from its build.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::device::logical::{ExtentMap, LogicalTarget};
use crate::device::TargetPartition;
use crate::engine::TargetWrite;
use crate::error::{Error, Result};
use crate::lp::{self, NewSuper};
use crate::payload::manifest::{DynamicGroup, DynamicPartitions};

/// Writes the super image `path` for `layout` (its size: `layout.device_size`, sparse where
/// nothing is written), with `images` (partition name, content) in their partitions; returns
/// the metadata every slot holds. An image larger than its partition is refused.
pub fn write(path: &Path, layout: &NewSuper, images: &[(&str, &[u8])]) -> Result<lp::Metadata> {
    let (geometry, metadata) = layout.build()?;
    let region = lp::flash_image(&geometry, &metadata)?;
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io)?;
    file.set_len(layout.device_size).map_err(io)?;
    file.write_all_at(&region, 0).map_err(io)?;
    let dev: Arc<dyn TargetWrite> = Arc::new(TargetPartition::open(path)?);
    for (name, content) in images {
        let Some(partition) = metadata.partition(name) else {
            return Err(crate::err!(
                PartitionMissing,
                "no partition {name} in the super layout"
            ));
        };
        let map = ExtentMap::new(&metadata, partition, layout.device_size)?;
        if content.len() as u64 > map.size() {
            return Err(crate::err!(
                PartitionMissing,
                "image of {} bytes does not fit partition {name} ({} bytes)",
                content.len(),
                map.size()
            ));
        }
        LogicalTarget::new(dev.clone(), map)
            .write_at(content, 0)
            .map_err(io)?;
    }
    dev.sync().map_err(io)?;
    Ok(metadata)
}

/// The layout AOSP's build gives an A/B device with one group (`build_super_image.py`):
/// `<group>_a` and `<group>_b`, each of `group_size` bytes, holding `<name>_a` of the given
/// sizes and `<name>_b` empty, in a super of `device_size` bytes with 64 KiB metadata slots,
/// three slots; `virtual_ab` as `lpmake --virtual-ab`.
pub fn ab_layout(
    device_size: u64,
    group: &str,
    group_size: u64,
    partitions: &[(&str, u64)],
    virtual_ab: bool,
) -> NewSuper {
    let mut layout = NewSuper::new(device_size, 65536, 3);
    layout.virtual_ab = virtual_ab;
    layout = layout
        .group(&format!("{group}_a"), group_size)
        .group(&format!("{group}_b"), group_size);
    for (name, size) in partitions {
        layout = layout.partition(
            &format!("{name}_a"),
            lp::ATTR_READONLY,
            *size,
            Some(&format!("{group}_a")),
        );
    }
    for (name, _) in partitions {
        layout = layout.partition(
            &format!("{name}_b"),
            lp::ATTR_READONLY,
            0,
            Some(&format!("{group}_b")),
        );
    }
    layout
}

/// The `dynamic_partition_metadata` a payload for that layout carries.
pub fn dynamic_metadata(group: &str, group_size: u64, partitions: &[&str]) -> DynamicPartitions {
    DynamicPartitions {
        groups: vec![DynamicGroup {
            name: group.to_owned(),
            size: group_size,
            partitions: partitions.iter().map(|p| (*p).to_owned()).collect(),
        }],
        snapshot_enabled: false,
        vabc: Default::default(),
    }
}
