//! libfiemap's image metadata: the `lp_metadata` file in which an `ImageManager` records where
//! its image files lie on the data partition, so that first-stage init can map them with
//! dm-linear before `/data` is mounted. Virtual A/B keeps the COW overflow images there
//! (`ImageManager::Open("ota")`: `/metadata/gsi/ota/lp_metadata`, the images
//! `/data/gsi/ota/<name>.img`).
//!
//! Facts from AOSP (system/core, Android 15):
//! - the file is liblp's image file: the 4096-byte geometry block then one metadata copy
//!   (liblp `images.cpp` `WriteToImageFile`: `SerializeGeometry` + `SerializeMetadata`, no
//!   reserved bytes, no backup), replaced atomically (a temporary file, fsync, rename) and
//!   removed when its last image goes (libfiemap `metadata.cpp` `SaveMetadata`);
//! - it is made by `MetadataBuilder::New(block_devices, <data device>, 256 KiB, 1)`
//!   (`metadata.cpp` `OpenOrCreateMetadata`, `kMaxMetadataSize`): one slot of 256 KiB, one block
//!   device, the data partition named by the basename of its node (`userdata` when it is
//!   `/dev/block/by-name/userdata`, `utility.cpp` `GetDevicePathForFile`), with its size,
//!   `BLKIOMIN` alignment, `BLKALIGNOFF` offset and `BLKSSZGET` logical block size
//!   (liblp `partition_opener.cpp`), `first_logical_sector` the metadata region's end aligned
//!   (liblp `builder.cpp` `Init`), and the group `default`;
//! - each image is a partition of that name (no slot suffix; attributes 0, or READONLY for
//!   `CREATE_IMAGE_READONLY`) whose LINEAR extents are the file's FIEMAP extents in file order,
//!   each sector-aligned, cut to the image's size (`metadata.cpp` `FillPartitionExtents`);
//!   an image created again replaces its extents (`UpdateMetadata`), a deleted one is removed
//!   (`RemoveImageMetadata`).
//!
//! The extents are where the file system put the file, so they may lie anywhere on the data
//! partition: this metadata is checked under [`Rules::Images`], not `super`'s rules.

use super::error::LpError;
use super::geometry::Geometry;
use super::metadata::{Metadata, Rules};
use super::tables::{BlockDevice, Extent, ExtentTarget, Group, Partition};
use super::{DEFAULT_GROUP, GEOMETRY_SIZE, SECTOR_SIZE};

/// libfiemap's `kMaxMetadataSize`: the one metadata slot's room.
pub const IMAGE_METADATA_MAX_SIZE: u32 = 256 * 1024;

/// The data partition the images are on, as liblp's `BlockDeviceInfo` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDevice {
    /// The basename of its node (`userdata`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// `BLKSSZGET`: the logical block size (512 or 4096).
    pub logical_block_size: u32,
    /// `BLKIOMIN`: the alignment in bytes (0: the logical block size).
    pub alignment: u32,
    /// `BLKALIGNOFF`.
    pub alignment_offset: u32,
}

/// Empty image metadata for `device` (what `OpenOrCreateMetadata` starts from).
pub fn new_image_metadata(device: &DataDevice) -> Result<Metadata, LpError> {
    let geometry = Geometry {
        metadata_max_size: IMAGE_METADATA_MAX_SIZE,
        metadata_slot_count: 1,
        logical_block_size: device.logical_block_size,
    };
    let region = geometry.total_metadata_size()?;
    let align = if device.alignment != 0 {
        u64::from(device.alignment)
    } else {
        u64::from(device.logical_block_size)
    };
    let first = region
        .checked_next_multiple_of(align.max(1))
        .ok_or_else(|| LpError::bad_request("data device alignment overflows"))?;
    let m = Metadata {
        geometry,
        minor_version: 0,
        flags: 0,
        partitions: Vec::new(),
        extents: Vec::new(),
        groups: vec![Group {
            name: DEFAULT_GROUP.into(),
            flags: 0,
            maximum_size: 0,
        }],
        block_devices: vec![BlockDevice {
            first_logical_sector: first / SECTOR_SIZE,
            alignment: device.alignment,
            alignment_offset: device.alignment_offset,
            size: device.size,
            partition_name: device.name.clone(),
            flags: 0,
        }],
    };
    m.validate_as(Rules::Images)?;
    Ok(m)
}

/// One extent of an image file on the data device (FIEMAP's `fe_physical`, `fe_length`), in
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// Byte offset on the device.
    pub physical: u64,
    /// Length in bytes.
    pub length: u64,
}

/// `metadata` with image `name` of `size` bytes mapped by `extents` (in file order), replacing
/// any earlier extents of that name, as `UpdateMetadata` and `FillPartitionExtents` do: each
/// extent must be sector-aligned; extents beyond `size` (the file system's block rounding) are
/// left out. Refused when the extents cover less than `size`.
pub fn set_image(
    metadata: &Metadata,
    name: &str,
    size: u64,
    extents: &[FileExtent],
    attributes: u32,
) -> Result<Metadata, LpError> {
    if size % SECTOR_SIZE != 0 || size == 0 {
        return Err(LpError::bad_request(format!(
            "image {name}: size {size} is not a non-zero multiple of 512"
        )));
    }
    let mut needed = size / SECTOR_SIZE;
    let mut mapped = Vec::new();
    for e in extents {
        if e.length % SECTOR_SIZE != 0 || e.physical % SECTOR_SIZE != 0 {
            return Err(LpError::bad_request(format!(
                "image {name}: extent of {} bytes at {} is not sector-aligned",
                e.length, e.physical
            )));
        }
        let sectors = (e.length / SECTOR_SIZE).min(needed);
        if sectors == 0 {
            break;
        }
        mapped.push(Extent {
            num_sectors: sectors,
            target: ExtentTarget::Linear {
                block_device: 0,
                physical_sector: e.physical / SECTOR_SIZE,
            },
        });
        needed -= sectors;
    }
    if needed != 0 {
        return Err(LpError::bad_request(format!(
            "image {name}: its extents cover {} of its {size} bytes",
            size - needed * SECTOR_SIZE
        )));
    }
    let mut images: Vec<(Partition, Vec<Extent>)> = entries(metadata)
        .into_iter()
        .filter(|(p, _)| p.name != name)
        .collect();
    let attributes = metadata
        .partition(name)
        .map_or(attributes, |p| p.attributes);
    images.push((
        Partition {
            name: name.into(),
            attributes,
            group_index: 0,
            first_extent: 0,
            num_extents: 0,
        },
        mapped,
    ));
    rebuild(metadata, images)
}

/// `metadata` without image `name`, or `None` when no image is left (libfiemap then removes
/// the file instead of writing an empty one).
pub fn remove_image(metadata: &Metadata, name: &str) -> Result<Option<Metadata>, LpError> {
    let images: Vec<_> = entries(metadata)
        .into_iter()
        .filter(|(p, _)| p.name != name)
        .collect();
    if images.is_empty() {
        return Ok(None);
    }
    rebuild(metadata, images).map(Some)
}

/// The image's extents on the data device, in its logical order, in bytes.
pub fn image_extents(metadata: &Metadata, name: &str) -> Option<Vec<FileExtent>> {
    let p = metadata.partition(name)?;
    let mut out = Vec::new();
    for e in metadata.extents_of(p) {
        if let ExtentTarget::Linear {
            physical_sector, ..
        } = e.target
        {
            out.push(FileExtent {
                physical: physical_sector.checked_mul(SECTOR_SIZE)?,
                length: e.num_sectors.checked_mul(SECTOR_SIZE)?,
            });
        }
    }
    Some(out)
}

/// The `lp_metadata` file's bytes: the geometry block, then the metadata.
pub fn image_file(metadata: &Metadata) -> Result<Vec<u8>, LpError> {
    let mut out = metadata.geometry.to_bytes();
    out.extend_from_slice(&metadata.to_bytes_as(&metadata.geometry, Rules::Images)?);
    Ok(out)
}

/// Parses an `lp_metadata` file (liblp's `ReadFromImageFile`).
pub fn parse_image_file(bytes: &[u8]) -> Result<Metadata, LpError> {
    let Some(block) = bytes.get(..GEOMETRY_SIZE as usize) else {
        return Err(LpError::malformed(format!(
            "image metadata of {} bytes is shorter than its geometry",
            bytes.len()
        )));
    };
    let geometry = Geometry::parse(block)?;
    let rest = bytes.get(GEOMETRY_SIZE as usize..).unwrap_or_default();
    let m = Metadata::parse_as(rest, &geometry, Rules::Images)?;
    if m.block_devices.len() != 1 || m.partitions.iter().any(|p| p.group_index != 0) {
        return Err(LpError::malformed(
            "image metadata has more than one block device or group",
        ));
    }
    Ok(m)
}

fn entries(metadata: &Metadata) -> Vec<(Partition, Vec<Extent>)> {
    metadata
        .partitions
        .iter()
        .map(|p| (p.clone(), metadata.extents_of(p).to_vec()))
        .collect()
}

fn rebuild(
    metadata: &Metadata,
    images: Vec<(Partition, Vec<Extent>)>,
) -> Result<Metadata, LpError> {
    let mut m = metadata.clone();
    m.partitions.clear();
    m.extents.clear();
    for (mut p, extents) in images {
        p.first_extent = u32::try_from(m.extents.len())
            .map_err(|_| LpError::no_space("too many image extents"))?;
        p.num_extents = u32::try_from(extents.len())
            .map_err(|_| LpError::no_space("too many image extents"))?;
        m.extents.extend(extents);
        m.partitions.push(p);
    }
    m.validate_as(Rules::Images)?;
    // The one slot must hold it (liblp's Export refuses otherwise).
    m.to_bytes_as(&m.geometry, Rules::Images)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn userdata() -> DataDevice {
        DataDevice {
            name: "userdata".into(),
            size: 64 << 20,
            logical_block_size: 512,
            alignment: 4096,
            alignment_offset: 0,
        }
    }

    #[test]
    fn images_added_replaced_removed_and_round_trip() {
        let m = new_image_metadata(&userdata()).unwrap();
        // 4096 + 2 * (4096 + 256 KiB) = 536576 bytes, already 4096-aligned.
        assert_eq!(m.block_devices()[0].first_logical_sector, 536576 / 512);
        let e = |physical, length| FileExtent { physical, length };
        // Extents before first_logical_sector are fine: they are the file system's blocks.
        let m = set_image(
            &m,
            "system_b-cow-img",
            12288,
            &[e(4096, 8192), e(1 << 20, 8192)],
            0,
        )
        .unwrap();
        let m = set_image(&m, "vendor_b-cow-img", 4096, &[e(2 << 20, 4096)], 0).unwrap();
        assert_eq!(
            image_extents(&m, "system_b-cow-img").unwrap(),
            vec![e(4096, 8192), e(1 << 20, 4096)],
            "cut to the image's size"
        );
        let bytes = image_file(&m).unwrap();
        assert_eq!(parse_image_file(&bytes).unwrap(), m);
        let again = set_image(&m, "system_b-cow-img", 4096, &[e(3 << 20, 4096)], 0).unwrap();
        assert_eq!(again.partitions()[1].name, "system_b-cow-img", "moved last");
        assert_eq!(
            image_extents(&again, "system_b-cow-img").unwrap(),
            vec![e(3 << 20, 4096)]
        );
        let one = remove_image(&again, "system_b-cow-img").unwrap().unwrap();
        assert_eq!(one.partitions().len(), 1);
        assert_eq!(remove_image(&one, "vendor_b-cow-img").unwrap(), None);

        // Refusals: unaligned, short, past the device, overlapping.
        assert!(set_image(&m, "x", 4096, &[e(100, 4096)], 0).is_err());
        assert!(set_image(&m, "x", 8192, &[e(8 << 20, 4096)], 0).is_err());
        assert!(set_image(&m, "x", 4096, &[e(64 << 20, 4096)], 0).is_err());
        assert!(set_image(&m, "x", 4096, &[e(2 << 20, 4096)], 0).is_err());
        // A super's rules still refuse a metadata whose device 0 is not super.
        assert!(m.validate().is_err());
        let mut bad = bytes.clone();
        bad[GEOMETRY_SIZE as usize + 200] ^= 1;
        assert!(parse_image_file(&bad).is_err());
    }
}
