//! Platform adapter: building and checking the verity metadata of an image file or block
//! device, for `abupdate verity build|verify` and tests. The streaming core it feeds is the
//! sans-I/O [`crate::verity`].

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};
use crate::verity::{
    FecEncoder, HashTree, HashTreeBuilder, TreeMismatch, VerityData, VerityLayout, BLOCK_SIZE,
};

/// Bytes read at a time.
const CHUNK: usize = 8 << 20;

/// Computes the root digest, hash tree and FEC of `image` as `layout` places them, reading
/// the image once. The FEC covers the computed tree, as if it were already written.
pub fn build_image(image: &File, layout: &VerityLayout) -> Result<VerityData> {
    layout.check()?;
    require_len(image, layout.tree_offset)?;
    let (tree, fec) = compute(image, layout, None)?;
    Ok(VerityData {
        root_digest: tree.root_digest,
        tree: tree.tree,
        fec,
    })
}

/// Writes `data` (from [`build_image`]) into `image` at the places `layout` gives.
pub fn write_image(image: &File, layout: &VerityLayout, data: &VerityData) -> Result<()> {
    layout.check()?;
    if data.tree.len() as u64 != layout.tree_size()?
        || data.fec.len() as u64 != layout.fec_size()?
    {
        crate::bail!(Verity, "verity data does not match its layout");
    }
    image
        .write_all_at(&data.tree, layout.tree_offset)
        .map_err(|e| Error::io("writing the hash tree", e))?;
    image
        .write_all_at(&data.fec, layout.fec_offset()?)
        .map_err(|e| Error::io("writing the FEC area", e))
}

/// Checks the hash tree (and the FEC area, if the layout has one) stored in `image` against
/// its data, and the root digest against `expected_root` if given. Fails with `Verity` naming
/// the first bad block; returns what it computed.
pub fn verify_image(
    image: &File,
    layout: &VerityLayout,
    expected_root: Option<&[u8]>,
) -> Result<VerityData> {
    layout.check()?;
    require_len(image, layout.end()?)?;
    // The tree of an image past 4 GiB of tree would not fit a 32-bit address space.
    let tree_size = layout.tree_size()?;
    let tree_len = usize::try_from(tree_size).map_err(|_| {
        crate::err!(
            Verity,
            "a {tree_size}-byte hash tree does not fit in memory here"
        )
    })?;
    let mut stored_tree = vec![0u8; tree_len];
    read_at(image, &mut stored_tree, layout.tree_offset)?;
    let (tree, fec) = compute(image, layout, Some(&stored_tree))?;
    let bs = u64::from(BLOCK_SIZE);
    match tree.first_mismatch(&stored_tree) {
        None => {}
        Some(TreeMismatch::DataBlock(block)) => crate::bail!(
            Verity,
            "data block {block} (offset {}) does not match its digest in the hash tree",
            block * bs
        ),
        Some(TreeMismatch::TreeBlock(block)) => crate::bail!(
            Verity,
            "hash tree block {block} (offset {}) does not match the level below it",
            layout.tree_offset + block * bs
        ),
        Some(mismatch) => crate::bail!(Verity, "{mismatch}"),
    }
    let computed = VerityData {
        root_digest: tree.root_digest,
        tree: tree.tree,
        fec,
    };
    if let Some(expected) = expected_root {
        if expected != computed.root_digest.as_slice() {
            crate::bail!(
                Verity,
                "root digest {} does not match the expected {}",
                crate::hex::encode(&computed.root_digest),
                crate::hex::encode(expected)
            );
        }
    }
    if let Some(roots) = layout.fec_roots {
        let mut stored_fec = vec![0u8; computed.fec.len()];
        read_at(image, &mut stored_fec, layout.fec_offset()?)?;
        if let Some(at) = first_difference(&computed.fec, &stored_fec) {
            crate::bail!(
                Verity,
                "FEC area differs at byte {at} (offset {}, codeword {})",
                layout.fec_offset()? + at as u64,
                at / usize::from(roots.get())
            );
        }
    }
    Ok(computed)
}

/// Reads the data once, feeding the tree builder and the FEC encoder; the FEC then gets the
/// bytes between data and tree, and the tree (`stored_tree` if given, else the computed one).
/// Returns the tree and the FEC area (empty without FEC).
fn compute(
    image: &File,
    layout: &VerityLayout,
    stored_tree: Option<&[u8]>,
) -> Result<(HashTree, Vec<u8>)> {
    let mut builder = HashTreeBuilder::new(layout.alg, &layout.salt, layout.data_size)?;
    let mut fec = match layout.fec_roots {
        Some(roots) => Some(FecEncoder::new(layout.fec_offset()?, roots)?),
        None => None,
    };
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < layout.tree_offset {
        let n = (layout.tree_offset - offset).min(CHUNK as u64) as usize;
        read_at(image, &mut buf[..n], offset)?;
        let hashed = (layout.data_size.saturating_sub(offset)).min(n as u64) as usize;
        builder.update(&buf[..hashed])?;
        if let Some(fec) = &mut fec {
            fec.update(&buf[..n])?;
        }
        offset += n as u64;
    }
    let tree = builder.finish()?;
    let fec = match fec {
        Some(mut fec) => {
            fec.update(stored_tree.unwrap_or(&tree.tree))?;
            fec.finish()?
        }
        None => Vec::new(),
    };
    Ok((tree, fec))
}

fn require_len(image: &File, needed: u64) -> Result<()> {
    let len = image
        .metadata()
        .map_err(|e| Error::io("reading the image size", e))?
        .len();
    if len < needed {
        crate::bail!(
            Verity,
            "image is {len} bytes, its verity layout needs {needed}"
        );
    }
    Ok(())
}

fn read_at(image: &File, buf: &mut [u8], offset: u64) -> Result<()> {
    image
        .read_exact_at(buf, offset)
        .map_err(|e| Error::io(format!("reading the image at {offset}"), e))
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}
