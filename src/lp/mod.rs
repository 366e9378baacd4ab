//! liblp's `super` metadata format (Android dynamic partitions), with no I/O.
//!
//! `super` starts with 4096 reserved bytes, the geometry at 4096 and its backup at 8192,
//! then the primary copy of every metadata slot and the backup copy of every slot
//! ([`Geometry`] gives the offsets). A slot holds a header (v10.0/10.1: 128 bytes, v10.2:
//! 256 bytes with flags) and four tables: partitions, extents, groups, block devices
//! ([`Metadata`]). Parsing is strict and never panics: every count and offset is checked
//! against the buffer before anything is allocated, and malformed metadata is an
//! [`LpError`] with status 34 (`SlotError`). Serialisation is byte-identical to liblp's
//! writer, tested against AOSP's `lpmake`, `lpdump` and `lpunpack`.
//!
//! [`read_slot`] reads a slot from a buffer of the metadata region (primary, else backup).
//! [`NewSuper`] builds a new layout the way `lpmake` does (same allocation as liblp's
//! `MetadataBuilder`), [`flash_image`] produces the whole metadata region, and
//! [`prepare_target`] makes the target slot's metadata for a non-snapshot update as
//! update_engine does. [`images`] is the same format as libfiemap keeps it for the Virtual A/B
//! COW images on `/data` (an `lp_metadata` file over the data partition).
//!
//! Errors ([`LpError`], converted into [`crate::Error`]): malformed metadata is 34
//! (`SlotError`); partitions that do not fit (free space, a group's maximum, the update's space
//! limit, the metadata slot) are 37 (`SuperNoSpace`); an impossible request (an unknown or
//! duplicate group or partition, a bad name, a listed partition without a size: what a
//! payload's `dynamic_partition_metadata` could get wrong) is 21 (`MalformedPayload`).
//!
//! Where this module is stricter than liblp (deliberate deviations, each refused with a
//! message):
//! - names must be NUL-terminated inside their 36 bytes (at most 35 characters), NUL-padded,
//!   and made of ASCII letters, digits, `_`, `-`, `.`;
//! - block device 0 must be `super` (retrofit devices, with `system_a` as super, are not
//!   supported); libfiemap's image metadata ([`images`]) is checked under its own rules: its
//!   one device is the data partition, and its extents may lie anywhere on it;
//! - the tables must be laid out as liblp writes them (back to back, partitions' extents in
//!   order, every extent owned), so parse → serialise reproduces the bytes;
//! - unknown group / block device flags, non-zero reserved header bytes, extents outside
//!   their device or overlapping, and groups over their maximum size are refused.
//! - [`prepare_target`] takes "Virtual A/B device" from the source header's
//!   VIRTUAL_AB_DEVICE flag; [`prepare_target_on`] takes it from the caller (the device
//!   property `ro.virtual_ab.enabled`, which is what update_engine reads), which matters once
//!   a non-snapshot update has downgraded the header to 10.0 and dropped the flag.

mod builder;
mod bytes;
mod carry;
mod error;
mod free;
mod geometry;
mod header;
pub mod images;
mod lpmake;
mod metadata;
mod snapshot;
mod tables;
mod update;

pub use carry::carry_over;
pub use error::{LpError, LpErrorKind};
pub use free::FreeRegion;
pub use geometry::Geometry;
pub use lpmake::{NewPartition, NewSuper};
pub use metadata::{flash_image, read_slot, Metadata};
pub use snapshot::{
    cow_name, cow_size, in_slot, prepare_snapshot_target, without_snapshots, SnapshotSpace,
    SnapshotTarget, SnapshotUpdate, COW_GROUP,
};
pub use tables::{BlockDevice, Extent, ExtentTarget, Group, Partition};
pub use update::{prepare_target, prepare_target_on, DynamicGroup};

/// The unit of extents and logical sectors.
pub const SECTOR_SIZE: u64 = 512;
/// `LP_PARTITION_RESERVED_BYTES`: zeros at the start of super.
pub const RESERVED_BYTES: u64 = 4096;
/// `LP_METADATA_GEOMETRY_SIZE`: the primary geometry at 4096, the backup at 8192.
pub const GEOMETRY_SIZE: u64 = 4096;
/// The name block device 0 has.
pub const SUPER_NAME: &str = "super";
/// The group every layout has (no maximum size).
pub const DEFAULT_GROUP: &str = "default";

/// Mapped read-only.
pub const ATTR_READONLY: u32 = 1;
/// Retrofit devices: the name gets the slot suffix when mapped.
pub const ATTR_SLOT_SUFFIXED: u32 = 2;
/// Set by Virtual A/B snapshot updates (needs header 10.1).
pub const ATTR_UPDATED: u32 = 4;
/// Not mapped at boot (needs header 10.1).
pub const ATTR_DISABLED: u32 = 8;

/// `LP_HEADER_FLAG_VIRTUAL_AB_DEVICE` (header 10.2).
pub const HEADER_FLAG_VIRTUAL_AB_DEVICE: u32 = 1;
/// `LP_HEADER_FLAG_OVERLAYS_ACTIVE` (header 10.2).
pub const HEADER_FLAG_OVERLAYS_ACTIVE: u32 = 2;
