//! What decoding a protobuf message would allocate, measured on its wire bytes before
//! rust-protobuf decodes them.
//!
//! Decoded messages are far larger than their encoding: an `InstallOperation` that takes 4 bytes
//! on the wire (a type and nothing else) becomes a struct of about 200 bytes, an empty `Extent`
//! of 2 bytes one of about 50. A 64 MiB manifest of empty operations, which the header's size
//! limit allows, would make the decoder allocate over 3 GB. This walk follows the nesting of
//! `update_metadata.proto` without allocating, charges every message its decoded size and every
//! string, bytes or unknown field its copy, and refuses input over a budget. It also counts
//! partitions and operations, so their limits hold before decoding rather than after.

use std::mem::size_of;

use super::manifest::{MAX_OPERATIONS, MAX_PARTITIONS};
use super::proto::update_metadata as pb;
use crate::bail;
use crate::error::Result;

/// Most memory a manifest may take decoded. A large real delta (100 000 operations with two
/// or three extents and two hashes each) takes about 40 MiB.
pub const MAX_DECODED_BYTES: usize = 256 << 20;

/// The messages of `update_metadata.proto` that contain other messages, and their leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Partition,
    Operation,
    CowMergeOperation,
    DynamicPartitionMetadata,
    DynamicPartitionGroup,
    Signatures,
    /// Messages without message fields: charged their size, their fields scanned as leaves.
    Leaf(usize),
}

/// Checks that decoding `bytes` as a `root` message stays within [`MAX_DECODED_BYTES`] and,
/// for a manifest, the partition and operation limits.
pub fn check(bytes: &[u8], root: Kind) -> Result<()> {
    Walk {
        cost: 0,
        partitions: 0,
        operations: 0,
    }
    .message(bytes, root)
}

struct Walk {
    cost: usize,
    partitions: usize,
    operations: usize,
}

/// What a field of a message holds, by message kind and field number.
fn field_kind(kind: Kind, field: u32) -> Option<Kind> {
    let leaf = |size| Some(Kind::Leaf(size));
    match (kind, field) {
        (Kind::Manifest, 13) => Some(Kind::Partition),
        (Kind::Manifest, 15) => Some(Kind::DynamicPartitionMetadata),
        (Kind::Manifest, 17) => leaf(size_of::<pb::ApexInfo>()),
        (Kind::Partition, 5) => leaf(size_of::<pb::signatures::Signature>()),
        (Kind::Partition, 6 | 7) => leaf(size_of::<pb::PartitionInfo>()),
        (Kind::Partition, 8) => Some(Kind::Operation),
        (Kind::Partition, 10 | 11 | 14 | 15) => leaf(size_of::<pb::Extent>()),
        (Kind::Partition, 18) => Some(Kind::CowMergeOperation),
        (Kind::Operation, 4 | 6) | (Kind::CowMergeOperation, 2 | 3) => {
            leaf(size_of::<pb::Extent>())
        }
        (Kind::DynamicPartitionMetadata, 1) => Some(Kind::DynamicPartitionGroup),
        (Kind::DynamicPartitionMetadata, 6) => leaf(size_of::<pb::VABCFeatureSet>()),
        (Kind::Signatures, 1) => leaf(size_of::<pb::signatures::Signature>()),
        _ => None,
    }
}

fn decoded_size(kind: Kind) -> usize {
    match kind {
        Kind::Manifest => size_of::<pb::DeltaArchiveManifest>(),
        Kind::Partition => size_of::<pb::PartitionUpdate>(),
        Kind::Operation => size_of::<pb::InstallOperation>(),
        Kind::CowMergeOperation => size_of::<pb::CowMergeOperation>(),
        Kind::DynamicPartitionMetadata => size_of::<pb::DynamicPartitionMetadata>(),
        Kind::DynamicPartitionGroup => size_of::<pb::DynamicPartitionGroup>(),
        Kind::Signatures => size_of::<pb::Signatures>(),
        Kind::Leaf(size) => size,
    }
}

/// A field kept as unknown: rust-protobuf stores its value in a vector per field number.
const UNKNOWN_FIELD_COST: usize = 16;
/// A string, bytes or unknown length-delimited field: a `Vec`/`String` header plus the bytes.
const BYTES_FIELD_COST: usize = size_of::<Vec<u8>>();

impl Walk {
    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.cost = self.cost.saturating_add(bytes);
        if self.cost > MAX_DECODED_BYTES {
            bail!(
                MalformedPayload,
                "decoding the message would take more than {MAX_DECODED_BYTES} bytes"
            );
        }
        Ok(())
    }

    /// Walks one message; recursion follows the schema, so its depth is bounded by it (four).
    fn message(&mut self, mut bytes: &[u8], kind: Kind) -> Result<()> {
        self.charge(decoded_size(kind))?;
        match kind {
            Kind::Partition => {
                self.partitions += 1;
                if self.partitions > MAX_PARTITIONS {
                    bail!(
                        MalformedPayload,
                        "more than {MAX_PARTITIONS} partitions exceed the limit"
                    );
                }
            }
            Kind::Operation => {
                self.operations += 1;
                if self.operations > MAX_OPERATIONS {
                    bail!(
                        MalformedPayload,
                        "more than {MAX_OPERATIONS} operations exceed the limit"
                    );
                }
            }
            _ => {}
        }
        while !bytes.is_empty() {
            let tag = varint(&mut bytes)?;
            let (field, wire_type) = (tag >> 3, tag & 7);
            let Ok(field) = u32::try_from(field) else {
                bail!(
                    MalformedPayload,
                    "not a valid protobuf: field number {field} out of range"
                );
            };
            match wire_type {
                0 => {
                    varint(&mut bytes)?;
                    self.charge(UNKNOWN_FIELD_COST)?;
                }
                1 | 5 => {
                    let len = if wire_type == 1 { 8 } else { 4 };
                    skip(&mut bytes, len)?;
                    self.charge(UNKNOWN_FIELD_COST)?;
                }
                2 => {
                    let len = varint(&mut bytes)?;
                    let Some(body) = usize::try_from(len).ok().filter(|&n| n <= bytes.len()) else {
                        bail!(
                            MalformedPayload,
                            "not a valid protobuf: field {field} runs past the end of its message"
                        );
                    };
                    let (body, rest) = bytes.split_at(body);
                    bytes = rest;
                    match field_kind(kind, field) {
                        Some(sub) => self.message(body, sub)?,
                        None => self.charge(BYTES_FIELD_COST + body.len())?,
                    }
                }
                // Groups (3, 4) are not used by update_metadata.proto; 6 and 7 do not exist.
                _ => bail!(
                    MalformedPayload,
                    "not a valid protobuf: wire type {wire_type} in field {field}"
                ),
            }
        }
        Ok(())
    }
}

fn varint(bytes: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = bytes.split_first() else {
            bail!(MalformedPayload, "not a valid protobuf: varint cut short");
        };
        *bytes = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!(
        MalformedPayload,
        "not a valid protobuf: varint longer than 10 bytes"
    )
}

fn skip(bytes: &mut &[u8], len: usize) -> Result<()> {
    match bytes.get(len..) {
        Some(rest) => {
            *bytes = rest;
            Ok(())
        }
        None => bail!(
            MalformedPayload,
            "not a valid protobuf: fixed-size field cut short"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    /// A manifest holding one partition with `ops` operations of type REPLACE and nothing else.
    fn manifest_with_ops(ops: usize) -> Vec<u8> {
        let mut part = vec![0x0a, 1, b'p'];
        for _ in 0..ops {
            part.extend_from_slice(&[0x42, 2, 0x08, 0x00]);
        }
        let mut out = vec![0x18, 0x80, 0x20, 0x6a];
        let mut len = part.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(&part);
        out
    }

    #[test]
    fn counts_operations_before_decoding() {
        assert!(check(&manifest_with_ops(1000), Kind::Manifest).is_ok());
        let err = check(&manifest_with_ops(MAX_OPERATIONS + 1), Kind::Manifest).unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedPayload);
        assert!(err.message.contains("operations exceed"), "{}", err.message);
    }

    #[test]
    fn bounds_the_decoded_size() {
        // 2 bytes per empty extent on the wire, about 50 decoded: a few MiB of them is too much.
        let mut op = vec![0x08, 0x00];
        for _ in 0..(6 << 20) {
            op.extend_from_slice(&[0x32, 0x00]);
        }
        let err = check(&op, Kind::Operation).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
        let unknown = [0x98, 0x06, 0x01].repeat(1 << 20); // field 99, varint
        assert!(check(&unknown, Kind::Leaf(0)).is_ok());
    }

    #[test]
    fn agrees_with_the_decoder_on_real_manifests() {
        use protobuf::Message;
        let mut m = pb::DeltaArchiveManifest::new();
        let mut p = pb::PartitionUpdate::new();
        p.set_partition_name("system".into());
        let mut op = pb::InstallOperation::new();
        op.set_type(pb::install_operation::Type::SOURCE_COPY);
        op.src_extents.push(pb::Extent::new());
        op.set_src_sha256_hash(vec![1; 32]);
        p.operations.push(op);
        p.new_partition_info = Some(pb::PartitionInfo::new()).into();
        m.partitions.push(p);
        m.dynamic_partition_metadata
            .mut_or_insert_default()
            .groups
            .push(pb::DynamicPartitionGroup::new());
        let bytes = m.write_to_bytes().unwrap_or_default();
        assert!(check(&bytes, Kind::Manifest).is_ok());
    }

    #[test]
    fn rejects_broken_wire_format() {
        for bad in [
            &[0x6a, 0x05, 0x00][..],
            &[0x08],
            &[0x0b],
            &[0x0d, 1, 2],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ] {
            assert_eq!(
                check(bad, Kind::Manifest).unwrap_err().code,
                ErrorCode::MalformedPayload,
                "{bad:02x?}"
            );
        }
    }
}
