//! The dm-verity format 1 hash tree: block digest `H(salt || block)`, digests zero-padded to a
//! power of two, each level padded to the block size, levels stored top-down, root digest
//! `H(salt || top level block)`.

use std::fmt;

use super::geometry::TreeGeometry;
use super::hasher::{hash_blocks, SaltedHasher};
use super::{default_threads, HashAlgorithm};
use crate::error::Result;

/// The verity block size Android uses for data and tree alike.
pub const BLOCK_SIZE: u32 = 4096;

/// Builds the hash tree of `data_size` bytes fed in order, in chunks of any size.
///
/// Memory: the tree (about 0.8% of the data for SHA-256) plus one partial block.
pub struct HashTreeBuilder {
    salted: SaltedHasher,
    alg: HashAlgorithm,
    geometry: TreeGeometry,
    data_size: u64,
    fed: u64,
    /// The whole tree, top-down; leaf digests are written straight into the bottom level.
    tree: Vec<u8>,
    /// Byte offset of the next leaf digest within the bottom level.
    next_leaf: usize,
    /// The digest of the only block when the data is one block long and there is no tree.
    single: Vec<u8>,
    partial: Vec<u8>,
    threads: usize,
}

/// A finished hash tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    /// `H(salt || top level block)`, or `H(salt || data)` for one block of data.
    pub root_digest: Vec<u8>,
    /// The tree as stored on disk, levels top-down; empty for one block of data.
    pub tree: Vec<u8>,
    geometry: TreeGeometry,
}

/// Where a stored tree first differs from the one computed from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeMismatch {
    /// The stored tree has the wrong size.
    Size {
        /// The size the data implies, in bytes.
        expected: u64,
        /// The stored tree's size, in bytes.
        found: u64,
    },
    /// The stored digest of this data block (0-based) does not match the data.
    DataBlock(u64),
    /// This block of the tree (0-based from the start of the tree) does not match the level
    /// below it.
    TreeBlock(u64),
}

impl HashTreeBuilder {
    /// A builder for `data_size` bytes hashed in [`BLOCK_SIZE`] blocks.
    pub fn new(alg: HashAlgorithm, salt: &[u8], data_size: u64) -> Result<Self> {
        Self::with_block_size(alg, salt, data_size, BLOCK_SIZE)
    }

    /// A builder for another block size (a power of two in 512..=65536), used for both the
    /// data and the tree.
    pub fn with_block_size(
        alg: HashAlgorithm,
        salt: &[u8],
        data_size: u64,
        block_size: u32,
    ) -> Result<Self> {
        let geometry = TreeGeometry::new(data_size, block_size, alg)?;
        if data_size == 0 || data_size % u64::from(block_size) != 0 {
            crate::bail!(
                Verity,
                "verity data size {data_size} is not a positive multiple of {block_size}"
            );
        }
        let tree_len = usize::try_from(geometry.size).map_err(|_| {
            crate::err!(
                Verity,
                "hash tree of {} bytes does not fit in memory",
                geometry.size
            )
        })?;
        Ok(HashTreeBuilder {
            salted: SaltedHasher::new(alg, salt),
            alg,
            single: vec![0; geometry.slot],
            partial: Vec::with_capacity(geometry.block_size),
            geometry,
            data_size,
            fed: 0,
            tree: vec![0; tree_len],
            next_leaf: 0,
            threads: default_threads(),
        })
    }

    /// Caps the threads used to hash large chunks (default: the available cores, at most 4).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Feeds the next bytes of data.
    pub fn update(&mut self, mut data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        if len > self.data_size - self.fed {
            crate::bail!(
                Verity,
                "hash tree input exceeds the declared {} bytes",
                self.data_size
            );
        }
        self.fed += len;
        let bs = self.geometry.block_size;
        if !self.partial.is_empty() {
            let take = (bs - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < bs {
                return Ok(());
            }
            let block = std::mem::take(&mut self.partial);
            self.hash_leaves(&block);
            self.partial = block;
            self.partial.clear();
        }
        let whole = data.len() - data.len() % bs;
        self.hash_leaves(&data[..whole]);
        self.partial.extend_from_slice(&data[whole..]);
        Ok(())
    }

    /// Completes the tree. Fails with `Verity` unless exactly `data_size` bytes were fed.
    pub fn finish(mut self) -> Result<HashTree> {
        if self.fed != self.data_size {
            crate::bail!(
                Verity,
                "hash tree got {} of {} bytes of data",
                self.fed,
                self.data_size
            );
        }
        let TreeGeometry {
            block_size,
            slot,
            ref levels,
            ..
        } = self.geometry;
        for pair in levels.windows(2) {
            let (below, level) = (pair[0], pair[1]);
            // Levels are stored top-down, so the level being built lies before the one below.
            let (upper, lower) = self.tree.split_at_mut(below.offset as usize);
            let src = &lower[..below.size as usize];
            let start = level.offset as usize;
            let dst = &mut upper[start..start + src.len() / block_size * slot];
            hash_blocks(&self.salted, src, block_size, slot, dst, self.threads);
        }
        let root_digest = if levels.is_empty() {
            self.single[..self.alg.digest_len()].to_vec()
        } else {
            let mut root = vec![0u8; slot];
            self.salted.digest_into(&self.tree[..block_size], &mut root);
            root.truncate(self.alg.digest_len());
            root
        };
        Ok(HashTree {
            root_digest,
            tree: self.tree,
            geometry: self.geometry,
        })
    }

    /// Hashes whole data blocks into the next leaf slots.
    fn hash_leaves(&mut self, blocks: &[u8]) {
        if blocks.is_empty() {
            return;
        }
        let TreeGeometry {
            block_size,
            slot,
            ref levels,
            ..
        } = self.geometry;
        let out_len = blocks.len() / block_size * slot;
        let out = match levels.first() {
            Some(leaves) => {
                let start = leaves.offset as usize + self.next_leaf;
                &mut self.tree[start..start + out_len]
            }
            None => &mut self.single[..out_len],
        };
        hash_blocks(&self.salted, blocks, block_size, slot, out, self.threads);
        self.next_leaf += out_len;
    }
}

impl HashTree {
    /// Compares a stored tree with this one, computed from the data; `None` when they match.
    pub fn first_mismatch(&self, stored: &[u8]) -> Option<TreeMismatch> {
        if stored.len() != self.tree.len() {
            return Some(TreeMismatch::Size {
                expected: self.tree.len() as u64,
                found: stored.len() as u64,
            });
        }
        // The leaves first: a bad data block is the likelier and more useful finding.
        if let Some(leaves) = self.geometry.levels.first() {
            let range = leaves.offset as usize..(leaves.offset + leaves.size) as usize;
            if let Some(at) = first_difference(&self.tree[range.clone()], &stored[range]) {
                return Some(TreeMismatch::DataBlock((at / self.geometry.slot) as u64));
            }
        }
        first_difference(&self.tree, stored)
            .map(|at| TreeMismatch::TreeBlock((at / self.geometry.block_size) as u64))
    }
}

impl fmt::Display for TreeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size { expected, found } => {
                write!(f, "hash tree is {found} bytes, expected {expected}")
            }
            Self::DataBlock(block) => write!(
                f,
                "data block {block} does not match its digest in the hash tree"
            ),
            Self::TreeBlock(block) => write!(
                f,
                "hash tree block {block} does not match the level below it"
            ),
        }
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    // Compare in 4 KiB steps so the common all-equal case runs at memcmp speed.
    let step = 4096;
    let chunk = a
        .chunks(step)
        .zip(b.chunks(step))
        .position(|(x, y)| x != y)?;
    let base = chunk * step;
    a[base..]
        .iter()
        .zip(&b[base..])
        .position(|(x, y)| x != y)
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn sha256(parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        parts.iter().for_each(|p| ctx.update(p));
        ctx.finish().as_ref().to_vec()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// The tree spelled out by hand for three blocks: one leaf level, one block.
    #[test]
    fn three_blocks_by_hand() {
        let data = pattern(3 * 4096);
        let salt = b"salt";
        let mut leaves = Vec::new();
        for block in data.chunks(4096) {
            leaves.extend(sha256(&[salt, block]));
        }
        leaves.resize(4096, 0);
        let mut builder =
            HashTreeBuilder::new(HashAlgorithm::Sha256, salt, data.len() as u64).unwrap();
        builder.update(&data).unwrap();
        let tree = builder.finish().unwrap();
        assert_eq!(tree.tree, leaves);
        assert_eq!(tree.root_digest, sha256(&[salt, &leaves]));
    }

    #[test]
    fn one_block_has_no_tree() {
        let data = pattern(4096);
        let mut builder = HashTreeBuilder::new(HashAlgorithm::Sha256, b"", 4096).unwrap();
        builder.update(&data).unwrap();
        let tree = builder.finish().unwrap();
        assert!(tree.tree.is_empty());
        assert_eq!(tree.root_digest, sha256(&[&data]));
    }

    #[test]
    fn chunking_and_threads_do_not_change_the_tree() {
        let data = pattern(300 * 4096);
        let build = |chunk: usize, threads: usize| {
            let mut b = HashTreeBuilder::new(HashAlgorithm::Sha1, b"\x01\x02", data.len() as u64)
                .unwrap()
                .threads(threads);
            data.chunks(chunk).for_each(|c| b.update(c).unwrap());
            b.finish().unwrap()
        };
        let reference = build(4096, 1);
        for (chunk, threads) in [
            (1, 1),
            (4095, 2),
            (4097, 3),
            (65 * 4096 + 1, 2),
            (data.len(), 2),
        ] {
            assert_eq!(
                build(chunk, threads),
                reference,
                "chunk {chunk} threads {threads}"
            );
        }
    }

    #[test]
    fn wrong_amount_of_data_is_refused() {
        let mut b = HashTreeBuilder::new(HashAlgorithm::Sha256, b"", 8192).unwrap();
        b.update(&[0; 4096]).unwrap();
        assert_eq!(
            b.update(&[0; 4097]).err().map(|e| e.code),
            Some(ErrorCode::Verity)
        );
        assert_eq!(b.finish().err().map(|e| e.code), Some(ErrorCode::Verity));
        for size in [0, 4095, 4097] {
            assert!(
                HashTreeBuilder::new(HashAlgorithm::Sha256, b"", size).is_err(),
                "{size}"
            );
        }
    }

    #[test]
    fn mismatches_name_the_bad_block() {
        let data = pattern(200 * 4096);
        let mut b = HashTreeBuilder::new(HashAlgorithm::Sha256, b"", data.len() as u64).unwrap();
        b.update(&data).unwrap();
        let tree = b.finish().unwrap();
        // Two leaf blocks after one top block: data block 150's digest sits at 4096 + 150 * 32.
        let mut stored = tree.tree.clone();
        assert_eq!(tree.first_mismatch(&stored), None);
        stored[4096 + 150 * 32 + 5] ^= 1;
        assert_eq!(
            tree.first_mismatch(&stored),
            Some(TreeMismatch::DataBlock(150))
        );
        let mut stored = tree.tree.clone();
        stored[100] ^= 1;
        assert_eq!(
            tree.first_mismatch(&stored),
            Some(TreeMismatch::TreeBlock(0))
        );
        assert_eq!(
            tree.first_mismatch(&stored[..4096]),
            Some(TreeMismatch::Size {
                expected: 3 * 4096,
                found: 4096
            })
        );
    }
}
