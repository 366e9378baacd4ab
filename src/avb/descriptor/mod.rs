//! vbmeta descriptors (`avb_descriptor.h` and the per-tag headers): parsed from the auxiliary
//! block and encoded byte-for-byte as avbtool encodes them.
//!
//! Every descriptor is `tag: u64, num_bytes_following: u64` (a multiple of 8) and a body; the
//! fixed part of each body is followed by its variable fields, then zero padding to 8 bytes.

mod encode;
mod parse;

#[cfg(any(test, feature = "host-tools"))]
pub(crate) use encode::{put_u32, put_u64};
pub(crate) use parse::parse_descriptors;

use super::key::AvbPublicKey;

/// One descriptor of a vbmeta image. Tags this code does not know are kept raw so an image that
/// uses them still parses (libavb ignores unknown tags too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Tag 0.
    Property(PropertyDescriptor),
    /// Tag 1.
    Hashtree(HashtreeDescriptor),
    /// Tag 2.
    Hash(HashDescriptor),
    /// Tag 3.
    KernelCmdline(KernelCmdlineDescriptor),
    /// Tag 4.
    ChainPartition(ChainPartitionDescriptor),
    /// Any other tag, with its body (`num_bytes_following` bytes, padding included).
    Unknown {
        /// The tag.
        tag: u64,
        /// The body.
        data: Vec<u8>,
    },
}

/// Tag 0: a free-form key/value pair (`avbtool --prop`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyDescriptor {
    /// The property's name.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
}

/// Tag 1: a dm-verity hash tree over a partition (verified by the kernel at run time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashtreeDescriptor {
    /// dm-verity's format version (1).
    pub dm_verity_version: u32,
    /// Size of the data the tree covers, in bytes.
    pub image_size: u64,
    /// Offset of the hash tree in the partition, in bytes.
    pub tree_offset: u64,
    /// Size of the hash tree, in bytes.
    pub tree_size: u64,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Reed-Solomon parity bytes per codeword (0: no FEC).
    pub fec_num_roots: u32,
    /// Offset of the FEC data in the partition, in bytes.
    pub fec_offset: u64,
    /// Size of the FEC data, in bytes.
    pub fec_size: u64,
    /// E.g. `sha1`, `sha256` (NUL-padded to 32 bytes on disk).
    pub hash_algorithm: String,
    /// The partition it covers, without a slot suffix.
    pub partition_name: String,
    /// Salt hashed before each block.
    pub salt: Vec<u8>,
    /// Empty when the digest is persistent (stored outside the image, libavb 1.1).
    pub root_digest: Vec<u8>,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// Tag 2: a hash of a whole partition image (checked by the bootloader, e.g. `boot`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashDescriptor {
    /// Size of the image the digest covers, in bytes.
    pub image_size: u64,
    /// E.g. `sha256`.
    pub hash_algorithm: String,
    /// The partition it covers, without a slot suffix.
    pub partition_name: String,
    /// Salt hashed before the image.
    pub salt: Vec<u8>,
    /// Empty when the digest is persistent (libavb 1.1).
    pub digest: Vec<u8>,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// Tag 3: text the bootloader appends to the kernel command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCmdlineDescriptor {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The command line text.
    pub cmdline: String,
}

/// Tag 4: delegates a partition to its own vbmeta (in its footer), signed by `public_key`, with
/// its rollback index kept at `rollback_index_location` (1..32, never 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainPartitionDescriptor {
    /// Rollback index location of the chained vbmeta.
    pub rollback_index_location: u32,
    /// The chained partition, without a slot suffix.
    pub partition_name: String,
    /// The key the chained vbmeta must be signed with.
    pub public_key: AvbPublicKey,
    /// `FLAG_*` bits.
    pub flags: u32,
}

impl HashtreeDescriptor {
    /// `AVB_HASHTREE_DESCRIPTOR_FLAGS_DO_NOT_USE_AB`: the partition has no slot suffix.
    pub const FLAG_DO_NOT_USE_AB: u32 = 1 << 0;
    /// `AVB_HASHTREE_DESCRIPTOR_FLAGS_CHECK_AT_MOST_ONCE`.
    pub const FLAG_CHECK_AT_MOST_ONCE: u32 = 1 << 1;
}

impl HashDescriptor {
    /// `AVB_HASH_DESCRIPTOR_FLAGS_DO_NOT_USE_AB`.
    pub const FLAG_DO_NOT_USE_AB: u32 = 1 << 0;
}

impl KernelCmdlineDescriptor {
    /// Applied only if the top-level vbmeta does not disable hash trees.
    pub const FLAG_USE_ONLY_IF_HASHTREE_NOT_DISABLED: u32 = 1 << 0;
    /// Applied only if the top-level vbmeta disables hash trees.
    pub const FLAG_USE_ONLY_IF_HASHTREE_DISABLED: u32 = 1 << 1;
}

impl ChainPartitionDescriptor {
    /// `AVB_CHAIN_PARTITION_DESCRIPTOR_FLAGS_DO_NOT_USE_AB` (libavb 1.3).
    pub const FLAG_DO_NOT_USE_AB: u32 = 1 << 0;
}

pub(super) const TAG_PROPERTY: u64 = 0;
pub(super) const TAG_HASHTREE: u64 = 1;
pub(super) const TAG_HASH: u64 = 2;
pub(super) const TAG_KERNEL_CMDLINE: u64 = 3;
pub(super) const TAG_CHAIN_PARTITION: u64 = 4;
/// Size of the zeroed `reserved` field in hash, hashtree and chain descriptors.
pub(super) const RESERVED: usize = 60;
pub(super) const HASH_ALGORITHM_LEN: usize = 32;
/// Highest rollback index location + 1 (`AVB_MAX_NUMBER_OF_ROLLBACK_INDEX_LOCATIONS`).
pub(crate) const MAX_LOCATIONS: u32 = 32;

impl Descriptor {
    /// The descriptor's tag.
    pub fn tag(&self) -> u64 {
        match self {
            Self::Property(_) => TAG_PROPERTY,
            Self::Hashtree(_) => TAG_HASHTREE,
            Self::Hash(_) => TAG_HASH,
            Self::KernelCmdline(_) => TAG_KERNEL_CMDLINE,
            Self::ChainPartition(_) => TAG_CHAIN_PARTITION,
            Self::Unknown { tag, .. } => *tag,
        }
    }
}
