//! The update payload format (`payload.bin`, major version 2): parsing, validation and signatures.
//!
//! Nothing here does I/O. [`header`] reads the fixed 24-byte header, [`manifest`] turns the protobuf
//! manifest into checked, typed structures (every extent, size and name is validated once, here),
//! [`signature`] verifies the metadata and payload signatures, [`properties`] reads
//! `payload_properties.txt` and the header key/value pairs that carry the same facts.
//! [`decode_cost`] bounds what decoding a hostile manifest or signature blob would allocate.

mod decode_cost;
pub mod header;
pub mod keys;
pub mod manifest;
pub mod properties;
pub mod signature;

/// The rust-protobuf messages generated from `proto/update_metadata.proto`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/proto/mod.rs"));
}

pub use header::{PayloadHeader, HEADER_SIZE};
pub use manifest::{
    ApexInfo, CowPlan, Extent, Manifest, MergeKind, MergeOperation, OpKind, Operation, Partition,
    Vabc, BLOCK_SIZE,
};
