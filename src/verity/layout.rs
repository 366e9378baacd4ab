//! Where an image's verity metadata sits, and what is computed for it. Reading and writing
//! image files is the adapter [`crate::device::verity_image`].

use super::{fec_size, hash_tree_size, FecRoots, HashAlgorithm, BLOCK_SIZE};
use crate::error::Result;

/// Where the verity metadata of an image sits, as an AVB hashtree descriptor or an
/// update_engine manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerityLayout {
    /// The hash algorithm.
    pub alg: HashAlgorithm,
    /// Salt hashed before each block.
    pub salt: Vec<u8>,
    /// The hashed data: bytes `0..data_size`, a multiple of 4096.
    pub data_size: u64,
    /// Where the hash tree is stored; usually `data_size`.
    pub tree_offset: u64,
    /// FEC parity, if any, covers bytes `0..tree_offset + tree_size` and is stored right after
    /// the tree, as avbtool lays it out.
    pub fec_roots: Option<FecRoots>,
}

/// Verity metadata computed from an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerityData {
    /// The root hash of the tree.
    pub root_digest: Vec<u8>,
    /// The hash tree, levels top-down.
    pub tree: Vec<u8>,
    /// The FEC area; empty without FEC.
    pub fec: Vec<u8>,
}

impl VerityLayout {
    /// The tree right after the data, no FEC.
    pub fn new(alg: HashAlgorithm, salt: &[u8], data_size: u64) -> Self {
        VerityLayout {
            alg,
            salt: salt.to_vec(),
            data_size,
            tree_offset: data_size,
            fec_roots: None,
        }
    }

    /// The hash tree's size in bytes.
    pub fn tree_size(&self) -> Result<u64> {
        hash_tree_size(self.data_size, BLOCK_SIZE, self.alg)
    }

    /// Where the FEC area starts, which is also how many bytes it covers.
    pub fn fec_offset(&self) -> Result<u64> {
        self.tree_offset
            .checked_add(self.tree_size()?)
            .ok_or_else(|| crate::err!(Verity, "hash tree offset {} overflows", self.tree_offset))
    }

    /// Size of the FEC area; 0 without FEC.
    pub fn fec_size(&self) -> Result<u64> {
        Ok(match self.fec_roots {
            Some(roots) => fec_size(self.fec_offset()?, roots),
            None => 0,
        })
    }

    /// Where the verity metadata ends.
    pub fn end(&self) -> Result<u64> {
        Ok(self.fec_offset()? + self.fec_size()?)
    }

    /// Fails with `Verity` if the tree overlaps the data or the metadata's end overflows.
    pub fn check(&self) -> Result<()> {
        if self.tree_offset < self.data_size {
            crate::bail!(
                Verity,
                "hash tree at {} overlaps the data (0..{})",
                self.tree_offset,
                self.data_size
            );
        }
        self.end().map(|_| ())
    }
}
