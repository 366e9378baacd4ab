//! Partition images as Android builds them: data, dm-verity hash tree, FEC, and a vbmeta with
//! a hashtree descriptor behind an AVB footer (what `avbtool add_hashtree_footer` makes). Used
//! by the demo and the tests to make realistic images.

use crate::avb::{
    Algorithm, AvbFooter, Descriptor, HashtreeDescriptor, VbmetaBuilder, FOOTER_SIZE,
};
use crate::bail;
use crate::error::Result;
use crate::payload::BLOCK_SIZE;
use crate::verity::{self, FecEncoder, FecRoots, HashAlgorithm, HashTreeBuilder};

/// Lays `data` out in a partition of `partition_size` bytes with a sha256 hash tree, FEC with
/// `roots` roots, and an unsigned footer vbmeta. Returns the image and its descriptor (which a
/// top-level vbmeta includes, as `--include_descriptors_from_image` does).
pub fn add_hashtree_footer(
    data: &[u8],
    partition_size: u64,
    name: &str,
    salt: &[u8],
    roots: FecRoots,
) -> Result<(Vec<u8>, HashtreeDescriptor)> {
    let data_size = data.len() as u64;
    if data_size == 0 || data_size % BLOCK_SIZE != 0 {
        bail!(
            Verity,
            "{name}: data of {data_size} bytes is not a positive multiple of {BLOCK_SIZE}"
        );
    }
    let mut tree = HashTreeBuilder::new(HashAlgorithm::Sha256, salt, data_size)?;
    tree.update(data)?;
    let tree = tree.finish()?;
    let mut image = data.to_vec();
    image.extend_from_slice(&tree.tree);
    let fec_offset = image.len() as u64;
    let mut fec = FecEncoder::new(fec_offset, roots)?;
    fec.update(&image)?;
    image.extend_from_slice(&fec.finish()?);

    let descriptor = HashtreeDescriptor {
        dm_verity_version: 1,
        image_size: data_size,
        tree_offset: data_size,
        tree_size: tree.tree.len() as u64,
        data_block_size: BLOCK_SIZE as u32,
        hash_block_size: BLOCK_SIZE as u32,
        fec_num_roots: u32::from(roots.get()),
        fec_offset,
        fec_size: verity::fec_size(fec_offset, roots),
        hash_algorithm: HashAlgorithm::Sha256.name().to_owned(),
        partition_name: name.to_owned(),
        salt: salt.to_vec(),
        root_digest: tree.root_digest.clone(),
        flags: 0,
    };
    let vbmeta = VbmetaBuilder::new(Algorithm::None)
        .descriptor(Descriptor::Hashtree(descriptor.clone()))
        .build(None)?;
    let vbmeta_offset = image.len() as u64;
    image.extend_from_slice(&vbmeta);
    if image.len() as u64 + FOOTER_SIZE as u64 > partition_size {
        bail!(
            Verity,
            "{name}: {} bytes of image and metadata do not fit {partition_size}",
            image.len()
        );
    }
    image.resize(partition_size as usize, 0);
    let footer = AvbFooter::new(data_size, vbmeta_offset, vbmeta.len() as u64).encode();
    let at = image.len() - FOOTER_SIZE;
    image[at..].copy_from_slice(&footer);
    Ok((image, descriptor))
}
