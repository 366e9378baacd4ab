//! Verity fields for delta payloads, as AOSP's generator fills them: from the new image's AVB
//! hashtree descriptor when it has a footer, or (explicitly asked for) by appending a tree and
//! FEC after the data. Either way the tree and FEC blocks are left out of the operations: the
//! device computes them (minor version 6+).

use crate::avb::{self, Descriptor};
use crate::error::Result;
use crate::payload::manifest::{Extent, FecLayout, PartitionVerity};
use crate::payload::BLOCK_SIZE;
use crate::verity::{FecEncoder, FecRoots, HashAlgorithm, HashTreeBuilder};
use crate::{bail, err};

/// The layout of an image that carries an AVB footer with a hashtree descriptor for `name`.
pub fn from_footer(name: &str, image: &[u8]) -> Result<Option<PartitionVerity>> {
    let Some(footer_bytes) = image
        .len()
        .checked_sub(avb::FOOTER_SIZE)
        .map(|at| &image[at..])
    else {
        return Ok(None);
    };
    if !footer_bytes.starts_with(&avb::FOOTER_MAGIC) {
        return Ok(None);
    }
    let vbmeta = avb::find_vbmeta(name, image)?;
    let Some(desc) = vbmeta.descriptors().iter().find_map(|d| match d {
        Descriptor::Hashtree(h) if h.partition_name == name => Some(h),
        _ => None,
    }) else {
        return Ok(None);
    };
    if desc.data_block_size as u64 != BLOCK_SIZE || desc.hash_block_size as u64 != BLOCK_SIZE {
        bail!(
            Verity,
            "{name}: hashtree block sizes {}/{} are not 4096",
            desc.data_block_size,
            desc.hash_block_size
        );
    }
    let fec = (desc.fec_num_roots > 0 && desc.fec_size > 0).then(|| FecLayout {
        data: extent(0, desc.fec_offset),
        fec: extent(desc.fec_offset, desc.fec_size),
        roots: desc.fec_num_roots,
    });
    Ok(Some(PartitionVerity {
        hash_tree_data: extent(0, desc.image_size),
        hash_tree: extent(desc.tree_offset, desc.tree_size),
        algorithm: HashAlgorithm::from_name(&desc.hash_algorithm)?,
        salt: desc.salt.clone(),
        fec,
    }))
}

/// Appends a hash tree (sha256, random salt) and 2-root FEC after `image`'s data, as
/// avbtool's `add_hashtree_footer` would place them, and returns their layout.
pub fn append(image: &mut Vec<u8>) -> Result<PartitionVerity> {
    let data_size = image.len() as u64;
    if data_size == 0 || data_size % BLOCK_SIZE != 0 {
        bail!(
            Verity,
            "image of {data_size} bytes is not a positive multiple of {BLOCK_SIZE}"
        );
    }
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| err!(Verity, "no randomness for the salt: {e}"))?;
    let mut tree = HashTreeBuilder::new(HashAlgorithm::Sha256, &salt, data_size)?;
    tree.update(image)?;
    let tree = tree.finish()?;
    image.extend_from_slice(&tree.tree);
    let fec_data = image.len() as u64;
    let mut fec = FecEncoder::new(fec_data, FecRoots::DEFAULT)?;
    fec.update(image)?;
    let fec = fec.finish()?;
    image.extend_from_slice(&fec);
    Ok(PartitionVerity {
        hash_tree_data: extent(0, data_size),
        hash_tree: extent(data_size, tree.tree.len() as u64),
        algorithm: HashAlgorithm::Sha256,
        salt: salt.to_vec(),
        fec: Some(FecLayout {
            data: extent(0, fec_data),
            fec: extent(fec_data, fec.len() as u64),
            roots: u32::from(FecRoots::DEFAULT.get()),
        }),
    })
}

/// The blocks the device computes, which the operations skip.
pub fn computed_extents(layout: &PartitionVerity) -> Vec<Extent> {
    let mut out = vec![layout.hash_tree];
    out.extend(layout.fec.as_ref().map(|f| f.fec));
    out.retain(|e| e.num_blocks > 0);
    out
}

fn extent(offset: u64, len: u64) -> Extent {
    Extent {
        start_block: offset / BLOCK_SIZE,
        num_blocks: len.div_ceil(BLOCK_SIZE),
    }
}
