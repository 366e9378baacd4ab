//! The update payload format (`payload.bin`, major version 2): parsing, validation and signatures.
//!
//! Nothing here does I/O. [`header`] reads the fixed 24-byte header, [`manifest`] turns the protobuf
//! manifest into checked, typed structures (every extent, size and name is validated once, here),
//! [`signature`] verifies the metadata and payload signatures, [`properties`] reads
//! `payload_properties.txt` and the header key/value pairs that carry the same facts.
//! `decode_cost` bounds what decoding a hostile manifest or signature blob would allocate.

mod decode_cost;
pub mod header;
pub mod keys;
pub mod manifest;
pub mod properties;
pub mod signature;

/// The rust-protobuf messages generated from `proto/update_metadata.proto`,
/// `proto/checkpoint.proto` and `proto/snapshot.proto` (libsnapshot's state): by build.rs under Cargo, by the `rust_protobuf` module
/// `libabupdate_proto` under Soong, which runs no build script.
// Generated code: its accessors unwrap fields they have just set, which is not ours to change.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[cfg(not(soong))]
#[path = "proto_cargo.rs"]
pub mod proto;

/// The rust-protobuf messages of `proto/*.proto`, from Soong's `rust_protobuf` crate.
#[cfg(soong)]
pub mod proto {
    pub use abupdate_proto::{checkpoint, snapshot, update_metadata};
}

pub use header::{PayloadHeader, HEADER_SIZE};
pub use manifest::{
    ApexInfo, CowPlan, Extent, Manifest, MergeKind, MergeOperation, OpKind, Operation, Partition,
    Vabc, BLOCK_SIZE,
};
