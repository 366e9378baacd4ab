//! Android Verified Boot: the vbmeta format (external/avb 1.3), its signatures, and rollback
//! index policy. Pure: bytes in, typed values or errors out; the only I/O is through the
//! `read_at` callback of [`load_vbmeta`].
//!
//! Error codes: a vbmeta, footer or key that cannot be parsed or does not verify is 28
//! (`AvbSignature`): the image is not acceptable to AVB, whatever is wrong with it. A rollback
//! index below the device's floor is 27 (`RollbackIndex`).
//!
//! The engine's use: after writing the target slot, [`load_vbmeta`] its top-level `vbmeta` and
//! the partitions the top-level image chains to, then [`verify_chain`] against the device's
//! trusted key and [`check_rollback`] against `RollbackFloors::from_slot(current slot)` raised by
//! the persisted floors (`crate::rollback_store`); then, for every hash and hashtree descriptor of those
//! images, `check_contents` against the partition it names (43, `AvbContents`, when the contents
//! differ or the partition is short). Partition names from descriptors go through
//! [`validate_partition_name`] before anything is opened by them.

mod algorithm;
#[cfg(feature = "host-tools")]
mod builder;
mod contents;
mod descriptor;
mod footer;
mod image;
mod key;
mod reader;
mod rollback;
mod spki;
mod verify;

pub use algorithm::Algorithm;
#[cfg(feature = "host-tools")]
pub use builder::{RingSigner, VbmetaBuilder, VbmetaSigner};
pub use contents::{validate_partition_name, PARTITION_NAME_MAX};
pub use descriptor::{
    ChainPartitionDescriptor, Descriptor, HashDescriptor, HashtreeDescriptor,
    KernelCmdlineDescriptor, PropertyDescriptor,
};
pub use footer::{find_vbmeta, load_vbmeta, AvbFooter, FOOTER_MAGIC, FOOTER_SIZE, VBMETA_MAX_SIZE};
pub use image::{VbmetaImage, HEADER_SIZE, MAGIC, RELEASE_STRING_SIZE};
pub use key::{AvbPublicKey, AVB_RSA_EXPONENT};
pub use rollback::{
    check_rollback, rollback_claims, RollbackClaim, RollbackFloors, MAX_ROLLBACK_LOCATIONS,
};
pub use verify::{verify_chain, Verification};
