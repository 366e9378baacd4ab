//! What the `payload_parse` fuzz target does with an input, shared with the seed replay test
//! (`tests/fuzz_seeds_payload.rs` includes this file), so both run exactly the same checks.
//!
//! The input is a payload's metadata: header, manifest, metadata signature, and possibly
//! bytes after them. It goes through `PayloadHeader::parse`, `Manifest::parse` and
//! `Metadata::verify` accepting unsigned payloads (the engineering-build path, where every check
//! but the signatures and operation hashes runs), with the payload size unknown and with it
//! equal to the input's. A panic is a bug, and so is an `Ok` that breaks a promise the engine relies on downstream.

use abupdate::engine::metadata::Metadata;
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::manifest::{MAX_OPERATIONS, MAX_OP_BYTES, MAX_PARTITIONS};
use abupdate::payload::properties::PayloadProperties;
use abupdate::payload::{Manifest, PayloadHeader, BLOCK_SIZE, HEADER_SIZE};
use abupdate::Result;

/// What became of the input with the payload size unknown (the streaming case) and with it
/// equal to the input's (a file).
pub fn run(data: &[u8]) -> (Result<Metadata>, Result<Metadata>) {
    if let Ok(header) = PayloadHeader::parse(data, None) {
        assert_eq!(
            header.encode()[..],
            data[..HEADER_SIZE],
            "header does not round-trip"
        );
        if let Some(manifest) = data.get(HEADER_SIZE..header.metadata_size() as usize) {
            if let Ok(m) = Manifest::parse(manifest, None) {
                check_manifest(&m);
            }
        }
    }
    let (props, keys) = (PayloadProperties::new(), TrustedKeys::accept_unsigned());
    let streamed = Metadata::verify(data.to_vec(), None, &props, &keys);
    if let Ok(metadata) = &streamed {
        check_metadata(metadata);
    }
    let sized = Metadata::verify(data.to_vec(), Some(data.len() as u64), &props, &keys);
    if let Ok(metadata) = &sized {
        check_metadata(metadata);
        assert_eq!(
            metadata.implied_size(),
            data.len() as u64,
            "a known size must match the payload"
        );
    }
    (streamed, sized)
}

fn check_metadata(metadata: &Metadata) {
    check_manifest(&metadata.manifest);
    assert!(metadata.implied_size() >= metadata.header.data_offset());
    // `check_supported` must not panic either; its answer is the engine's to act on.
    let _ = metadata.manifest.check_supported();
}

/// The invariants `Manifest` promises: everything in range, blobs contiguous, bounded work.
fn check_manifest(m: &Manifest) {
    assert!(!m.partitions.is_empty() && m.partitions.len() <= MAX_PARTITIONS);
    assert!(m.operation_count() <= MAX_OPERATIONS);
    let mut next_blob = 0u64;
    for p in &m.partitions {
        assert_eq!(p.new_info.size % BLOCK_SIZE, 0);
        for op in &p.operations {
            assert!(!op.dst_extents.is_empty());
            for e in &op.dst_extents {
                assert!(
                    e.num_blocks > 0 && e.end_block() <= p.new_blocks(),
                    "dst extent out of range"
                );
            }
            if let Some(old) = &p.old_info {
                for e in &op.src_extents {
                    assert!(
                        e.end_block() <= old.size / BLOCK_SIZE,
                        "src extent out of range"
                    );
                }
            }
            assert!(op.dst_bytes() <= MAX_OP_BYTES && op.src_bytes() <= MAX_OP_BYTES);
            if op.kind.has_blob() {
                assert_eq!(op.data_offset, next_blob, "blobs not contiguous");
                next_blob += op.data_length;
            } else {
                assert_eq!(op.data_length, 0);
            }
        }
    }
    assert_eq!(m.blobs_size, next_blob);
    if let Some((offset, _)) = m.signatures {
        assert_eq!(offset, next_blob, "signature not after the last blob");
    }
}
