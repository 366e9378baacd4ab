//! Sizes and offsets of the hash tree levels and of the FEC area.

use super::{FecRoots, HashAlgorithm};
use crate::error::Result;

/// The FEC area is organised in 4096-byte blocks whatever the verity block size (libfec, the
/// kernel's dm-verity FEC and avbtool all fix it).
pub const FEC_BLOCK_SIZE: u64 = 4096;

/// Symbols in one Reed-Solomon codeword over GF(2^8).
pub(super) const RS_SYMBOLS: usize = 255;

/// Size in bytes of the hash tree for `data_size` bytes of data: every level, each padded to
/// the block size, as avbtool and `veritysetup` lay it out. Data of one block or less needs no
/// tree (the root digest is the digest of that block), so the size is 0. (update_engine's
/// libverity alone writes a one-block level for such data; no real partition is that small.)
///
/// Fails with `Verity` when `block_size` is not a power of two in 512..=65536.
pub fn hash_tree_size(data_size: u64, block_size: u32, alg: HashAlgorithm) -> Result<u64> {
    Ok(TreeGeometry::new(data_size, block_size, alg)?.size)
}

/// Size in bytes of the FEC parity for `input_size` bytes of input (data and hash tree):
/// `rounds * roots * 4096` with `rounds = ceil(ceil(input_size / 4096) / (255 - roots))`.
pub fn fec_size(input_size: u64, roots: FecRoots) -> u64 {
    FecGeometry::new(input_size, roots).size()
}

/// Where each level of a hash tree sits within the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TreeGeometry {
    pub block_size: usize,
    pub slot: usize,
    /// Bottom-up: `levels[0]` holds the digests of the data blocks. Offsets are relative to the
    /// start of the tree, which stores the levels top-down.
    pub levels: Vec<Level>,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Level {
    pub offset: u64,
    pub size: u64,
}

impl TreeGeometry {
    pub fn new(data_size: u64, block_size: u32, alg: HashAlgorithm) -> Result<Self> {
        if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
            crate::bail!(
                Verity,
                "verity block size {block_size} is not a power of two in 512..=65536"
            );
        }
        let bs = u64::from(block_size);
        let slot = alg.digest_slot() as u64;
        // Each level has at most 1/16 the size of the one below it (slot <= 64, block >= 512,
        // both rounded up to blocks), so this loop ends after a handful of levels.
        let mut sizes = Vec::new();
        let mut below = data_size;
        while below > bs {
            let size = below
                .div_ceil(bs)
                .saturating_mul(slot)
                .div_ceil(bs)
                .saturating_mul(bs);
            sizes.push(size);
            below = size;
        }
        let mut levels = vec![Level { offset: 0, size: 0 }; sizes.len()];
        let mut offset = 0u64;
        for (level, &size) in levels.iter_mut().zip(&sizes).rev() {
            *level = Level { offset, size };
            offset = offset.saturating_add(size);
        }
        Ok(TreeGeometry {
            block_size: block_size as usize,
            slot: slot as usize,
            levels,
            size: offset,
        })
    }
}

/// The interleaving of the FEC codewords over the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FecGeometry {
    pub roots: usize,
    /// Data symbols per codeword, `255 - roots`.
    pub data_symbols: usize,
    pub rounds: u64,
}

impl FecGeometry {
    pub fn new(input_size: u64, roots: FecRoots) -> Self {
        let roots = usize::from(roots.get());
        let data_symbols = RS_SYMBOLS - roots;
        let blocks = input_size.div_ceil(FEC_BLOCK_SIZE);
        FecGeometry {
            roots,
            data_symbols,
            rounds: blocks.div_ceil(data_symbols as u64),
        }
    }

    /// Number of codewords, and the distance between consecutive symbols of one codeword:
    /// codeword `c` takes symbol `j` from input offset `c + j * stripe`.
    pub fn stripe(&self) -> u64 {
        self.rounds.saturating_mul(FEC_BLOCK_SIZE)
    }

    pub fn size(&self) -> u64 {
        self.stripe().saturating_mul(self.roots as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn tree_levels_are_stored_top_down() {
        // 129 blocks of SHA-256: the leaf level needs 2 blocks, the next one 1.
        let g = TreeGeometry::new(129 * 4096, 4096, HashAlgorithm::Sha256).unwrap();
        assert_eq!(
            g.levels,
            vec![
                Level {
                    offset: 4096,
                    size: 8192
                },
                Level {
                    offset: 0,
                    size: 4096
                }
            ]
        );
        assert_eq!(g.size, 3 * 4096);
    }

    #[test]
    fn tree_sizes() {
        let size = |data, alg| hash_tree_size(data, 4096, alg).unwrap();
        assert_eq!(size(4096, HashAlgorithm::Sha256), 0);
        assert_eq!(size(2 * 4096, HashAlgorithm::Sha256), 4096);
        assert_eq!(size(128 * 4096, HashAlgorithm::Sha256), 4096);
        // 1 GiB: 262144 leaves in 2048 blocks, then 16 blocks, then 1.
        assert_eq!(
            size(1024 * MIB, HashAlgorithm::Sha256),
            (2048 + 16 + 1) * 4096
        );
        // SHA-1 digests take 32-byte slots, so the tree is as big as SHA-256's.
        assert_eq!(
            size(1024 * MIB, HashAlgorithm::Sha1),
            (2048 + 16 + 1) * 4096
        );
        assert_eq!(
            size(1024 * MIB, HashAlgorithm::Sha512),
            (4096 + 64 + 1) * 4096
        );
    }

    #[test]
    fn bad_block_sizes_are_refused() {
        for bs in [0, 256, 1000, 4095, 131072] {
            assert!(
                hash_tree_size(1 << 20, bs, HashAlgorithm::Sha256).is_err(),
                "{bs}"
            );
        }
        assert_eq!(
            hash_tree_size(3 * 512, 512, HashAlgorithm::Sha512).unwrap(),
            512
        );
    }

    #[test]
    fn fec_sizes() {
        let roots = |n| FecRoots::new(n).unwrap();
        // The numbers update_engine's FilesystemVerifierAction test derives: 253 data blocks
        // per round at 2 roots.
        assert_eq!(fec_size(253 * 4096, roots(2)), 2 * 4096);
        assert_eq!(fec_size(254 * 4096, roots(2)), 2 * 2 * 4096);
        assert_eq!(fec_size(1, roots(2)), 2 * 4096);
        assert_eq!(fec_size(231 * 4096 + 1, roots(24)), 2 * 24 * 4096);
        let g = FecGeometry::new(1024 * MIB + 2065 * 4096, roots(2));
        assert_eq!((g.rounds, g.data_symbols), (1045, 253));
    }
}
