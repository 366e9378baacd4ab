//! dm-verity: the hash tree (format 1) and the Reed-Solomon FEC area that follow a partition's
//! data, byte-identical to what `veritysetup`, avbtool and update_engine produce.
//!
//! The core is sans-I/O and streaming: [`HashTreeBuilder`] and [`FecEncoder`] are fed the bytes
//! in order, in chunks of any size, and hand back the tree and the FEC area; [`VerityLayout`] says
//! where they sit in an image. [`crate::device::verity_image`] feeds them from files (host tools
//! and the CLI).
//!
//! On-disk layout (as avbtool and update_engine write it):
//! `[data | hash tree, levels top-down | FEC parity over data + tree]`.

mod fec;
mod fec_kernels;
mod geometry;
mod gf256;
mod hash_tree;
mod hasher;
mod layout;

pub use fec::{FecEncoder, FecRoots};
pub use geometry::{fec_size, hash_tree_size, FEC_BLOCK_SIZE};
pub use hash_tree::{HashTree, HashTreeBuilder, TreeMismatch, BLOCK_SIZE};
pub use layout::{VerityData, VerityLayout};

use crate::error::Result;

/// A hash function a verity tree is built with, as named in AVB hashtree descriptors and in
/// update_engine's `hash_tree_algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// `sha1`.
    Sha1,
    /// `sha256`.
    Sha256,
    /// `sha512`.
    Sha512,
}

impl HashAlgorithm {
    /// Parses `"sha1"`, `"sha256"` or `"sha512"` (ASCII case-insensitive, as update_engine
    /// accepts). Anything else is [`ErrorCode::Verity`](crate::ErrorCode::Verity); a caller
    /// reading the name from a payload maps that to `MalformedPayload`.
    pub fn from_name(name: &str) -> Result<Self> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                crate::err!(
                    Verity,
                    "unsupported verity hash algorithm {}",
                    crate::error::shown(name)
                )
            })
    }

    /// The name as avbtool and update_engine spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of one digest in bytes.
    pub fn digest_len(self) -> usize {
        crate::crypto::digest_len(self.ring())
    }

    /// Bytes one digest occupies inside a tree block: format 1 pads every digest with zeros to
    /// the next power of two (SHA-1's 20 bytes take 32).
    pub fn digest_slot(self) -> usize {
        self.digest_len().next_power_of_two()
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }
}

impl std::fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for HashAlgorithm {
    type Err = crate::error::Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::from_name(name)
    }
}

/// Threads for hashing and encoding large chunks unless the caller says otherwise: the cores
/// this process may use, at most 4 (more buys little once memory bandwidth is the limit).
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
        ] {
            assert_eq!(HashAlgorithm::from_name(alg.name()).ok(), Some(alg));
        }
        assert_eq!(
            HashAlgorithm::from_name("SHA256").ok(),
            Some(HashAlgorithm::Sha256)
        );
        for bad in ["md5", "sha384", "", "sha256 "] {
            let err = HashAlgorithm::from_name(bad).err().map(|e| e.code);
            assert_eq!(err, Some(ErrorCode::Verity), "{bad:?}");
        }
    }

    #[test]
    fn digest_slots_are_powers_of_two() {
        assert_eq!(
            (
                HashAlgorithm::Sha1.digest_len(),
                HashAlgorithm::Sha1.digest_slot()
            ),
            (20, 32)
        );
        assert_eq!(HashAlgorithm::Sha256.digest_slot(), 32);
        assert_eq!(HashAlgorithm::Sha512.digest_slot(), 64);
    }
}
