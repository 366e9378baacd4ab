//! Hostile header and manifest structure: truncation, bad magic and versions, absurd sizes,
//! manifests that are not protobuf or break the format's invariants (all re-signed, so the
//! engine's own validation is what stops them), extents and blobs out of place, bad names.

use abupdate::payload::manifest::MAX_OPERATIONS;
use abupdate::payload::proto::update_metadata::{Extent, PartitionUpdate};
use abupdate::ErrorCode::*;

use crate::common::forge::Forge;
use crate::{Attempt, Case, Fixture, SYSTEM_BLOCKS};

pub fn cases() -> Vec<Case> {
    vec![
        // Truncation, anywhere: the file ends before what its header or manifest places in it.
        Case {
            name: "empty file",
            expect: SizeMismatch,
            says: "header",
            attempt: |fx| cut(fx, |_| 0),
        },
        Case {
            name: "truncated in the header",
            expect: SizeMismatch,
            says: "header",
            attempt: |fx| cut(fx, |_| 13),
        },
        Case {
            name: "truncated in the manifest",
            expect: SizeMismatch,
            says: "metadata",
            attempt: |fx| cut(fx, |f| 24 + f.manifest.len() / 2),
        },
        Case {
            name: "truncated in the metadata signature",
            expect: SizeMismatch,
            says: "metadata",
            attempt: |fx| cut(fx, |f| 24 + f.manifest.len() + 10),
        },
        Case {
            name: "truncated mid-blob",
            expect: SizeMismatch,
            says: "beyond the payload",
            attempt: |fx| {
                cut(fx, |f| {
                    f.metadata().len() + f.metadata_signature.len() + f.blobs.len() / 2
                })
            },
        },
        Case {
            name: "truncated before the payload signature",
            expect: SizeMismatch,
            says: "beyond the payload",
            attempt: |fx| cut(fx, |f| f.to_bytes().len() - f.payload_signature.len()),
        },
        Case {
            name: "truncated in the payload signature",
            expect: SizeMismatch,
            says: "beyond the payload",
            attempt: |fx| cut(fx, |f| f.to_bytes().len() - 1),
        },
        Case {
            name: "data after the payload signature",
            expect: SizeMismatch,
            says: "signature ends at",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.trailer = vec![0; 4096];
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "unsigned payload with data after its last blob",
            expect: SizeMismatch,
            says: "last blob ends at",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.unsign().trailer = b"trailing".to_vec();
                Attempt::ours(fx, f.to_bytes()).no_key()
            },
        },
        // The header.
        Case {
            name: "bad magic",
            expect: MalformedPayload,
            says: "magic",
            attempt: |fx| poke(fx, 0, b"CrAv"),
        },
        Case {
            name: "major version 1",
            expect: Unsupported,
            says: "major version 1",
            attempt: |fx| poke(fx, 4, &1u64.to_be_bytes()),
        },
        Case {
            name: "unknown major version",
            expect: Unsupported,
            says: "major version 3",
            attempt: |fx| poke(fx, 4, &3u64.to_be_bytes()),
        },
        Case {
            name: "manifest_size u64::MAX",
            expect: MalformedPayload,
            says: "manifest size",
            attempt: |fx| poke(fx, 12, &u64::MAX.to_be_bytes()),
        },
        Case {
            name: "manifest_size just over the limit",
            expect: MalformedPayload,
            says: "manifest size",
            attempt: |fx| poke(fx, 12, &((64u64 << 20) + 1).to_be_bytes()),
        },
        Case {
            name: "manifest_size 0",
            expect: MalformedPayload,
            says: "manifest size",
            attempt: |fx| poke(fx, 12, &[0; 8]),
        },
        Case {
            name: "manifest_size beyond the file",
            expect: SizeMismatch,
            says: "beyond the payload",
            attempt: |fx| poke(fx, 12, &(32u64 << 20).to_be_bytes()),
        },
        Case {
            name: "metadata_signature_size u32::MAX",
            expect: MalformedPayload,
            says: "metadata signature size",
            attempt: |fx| poke(fx, 20, &u32::MAX.to_be_bytes()),
        },
        // The manifest, signed by the trusted key.
        Case {
            name: "manifest is not protobuf",
            expect: MalformedPayload,
            says: "not a valid protobuf",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.manifest = b"\xff\xff\xff\xff\x0f not a protobuf message".to_vec();
                signed(fx, f)
            },
        },
        Case {
            name: "manifest lacks a required field",
            expect: MalformedPayload,
            says: "not a valid protobuf",
            attempt: |fx| resigned(fx, &fx.full, |m| m.partitions[0].clear_partition_name()),
        },
        Case {
            name: "block size 8192",
            expect: MalformedPayload,
            says: "block size 8192",
            attempt: |fx| resigned(fx, &fx.full, |m| m.set_block_size(8192)),
        },
        Case {
            name: "block size 0",
            expect: MalformedPayload,
            says: "block size 0",
            attempt: |fx| resigned(fx, &fx.full, |m| m.set_block_size(0)),
        },
        Case {
            name: "minor version from the future",
            expect: Unsupported,
            says: "minor version 99",
            attempt: |fx| resigned(fx, &fx.delta, |m| m.set_minor_version(99)),
        },
        Case {
            name: "no partitions",
            expect: MalformedPayload,
            says: "no partitions",
            attempt: |fx| resigned(fx, &fx.full, |m| m.partitions.clear()),
        },
        Case {
            name: "delta with minor version 0",
            expect: MalformedPayload,
            says: "minor version 0",
            attempt: |fx| resigned(fx, &fx.delta, |m| m.set_minor_version(0)),
        },
        Case {
            name: "new_partition_info missing",
            expect: MalformedPayload,
            says: "no new_partition_info",
            attempt: |fx| resigned(fx, &fx.full, |m| m.partitions[1].new_partition_info.clear()),
        },
        Case {
            name: "partition size not a multiple of the block size",
            expect: MalformedPayload,
            says: "not a multiple",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[1]
                        .new_partition_info
                        .mut_or_insert_default()
                        .set_size(4097)
                })
            },
        },
        // Extents.
        Case {
            name: "dst extent past the partition",
            expect: MalformedPayload,
            says: "dst extent",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[0].operations[0].dst_extents[0]
                        .set_start_block(SYSTEM_BLOCKS as u64 - 1)
                })
            },
        },
        Case {
            name: "dst extent overflowing u64",
            expect: MalformedPayload,
            says: "dst extent",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[0].operations[0].dst_extents[0].set_start_block(u64::MAX - 1)
                })
            },
        },
        Case {
            name: "dst extent is a sparse hole",
            expect: MalformedPayload,
            says: "dst extent",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[0].operations[0].dst_extents[0].set_start_block(u64::MAX)
                })
            },
        },
        Case {
            name: "dst extent whose byte offset overflows",
            expect: MalformedPayload,
            says: "dst extent",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[0].operations[0]
                        .dst_extents
                        .push(extent(u64::MAX / 4096, 1))
                })
            },
        },
        Case {
            name: "empty dst extent",
            expect: MalformedPayload,
            says: "empty dst extent",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[1].operations[0].dst_extents.push(extent(0, 0))
                })
            },
        },
        Case {
            name: "operation without dst extents",
            expect: MalformedPayload,
            says: "without destination extents",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[1].operations[0].dst_extents.clear()
                })
            },
        },
        Case {
            name: "too many extents in one operation",
            expect: MalformedPayload,
            says: "extents exceed",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    let op = &mut m.partitions[0].operations[0];
                    op.dst_extents = (0..=(1u64 << 16)).map(|_| extent(0, 1)).collect();
                })
            },
        },
        Case {
            name: "src extent past the source partition",
            expect: MalformedPayload,
            says: "src extent",
            attempt: |fx| {
                resigned(fx, &fx.delta, |m| {
                    source_op(m).src_extents[0].set_start_block(SYSTEM_BLOCKS as u64)
                })
            },
        },
        Case {
            name: "src extent overflowing u64",
            expect: MalformedPayload,
            says: "src extent",
            attempt: |fx| {
                resigned(fx, &fx.delta, |m| {
                    source_op(m).src_extents.push(extent(u64::MAX - 3, 7))
                })
            },
        },
        Case {
            name: "operation larger than the limit",
            expect: MalformedPayload,
            says: "more than",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    let p = &mut m.partitions[0];
                    p.new_partition_info
                        .mut_or_insert_default()
                        .set_size(1 << 30);
                    p.operations[0].dst_extents.push(extent(1 << 17, 1 << 16));
                })
            },
        },
        // Blobs.
        Case {
            name: "blobs not contiguous",
            expect: MalformedPayload,
            says: "not contiguous",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    bump_offset(&mut m.partitions[0].operations[1], 1)
                })
            },
        },
        Case {
            name: "blobs overlap",
            expect: MalformedPayload,
            says: "not contiguous",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    m.partitions[0].operations[1].set_data_offset(0)
                })
            },
        },
        Case {
            name: "blob beyond the file",
            expect: SizeMismatch,
            says: "beyond the payload",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    let op = m.partitions[1].operations.last_mut().unwrap();
                    op.set_data_length(op.data_length() + (1 << 20));
                })
            },
        },
        Case {
            name: "signature blob not after the last blob",
            expect: MalformedPayload,
            says: "signature blob at",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.set_signatures_offset(m.signatures_offset() - 1));
                crate::trust::sign_metadata(fx, &mut f);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "signature blob of 2 MiB",
            expect: MalformedPayload,
            says: "signature blob size",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.set_signatures_size(2 << 20));
                crate::trust::sign_metadata(fx, &mut f);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "only signatures_offset set",
            expect: MalformedPayload,
            says: "only one of",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.clear_signatures_size());
                crate::trust::sign_metadata(fx, &mut f);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        // Partitions.
        Case {
            name: "partition name in upper case",
            expect: MalformedPayload,
            says: "partition name",
            attempt: |fx| renamed(fx, "System"),
        },
        Case {
            name: "partition name with a path",
            expect: MalformedPayload,
            says: "partition name",
            attempt: |fx| renamed(fx, "../x"),
        },
        Case {
            name: "empty partition name",
            expect: MalformedPayload,
            says: "partition name",
            attempt: |fx| renamed(fx, ""),
        },
        Case {
            name: "partition name too long",
            expect: MalformedPayload,
            says: "partition name",
            attempt: |fx| renamed(fx, "s".repeat(65).leak()),
        },
        Case {
            name: "duplicate partition",
            expect: MalformedPayload,
            says: "appears twice",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| {
                    let copy = m.partitions[1].clone();
                    m.partitions.push(copy);
                });
                // Lay the copied partition's blobs out after the others, so that only the name
                // is wrong.
                f.edit_ops(|_, _, _, _| {});
                signed(fx, f)
            },
        },
        Case {
            name: "too many partitions",
            expect: MalformedPayload,
            says: "partitions exceed",
            attempt: |fx| {
                resigned(fx, &fx.full, |m| {
                    for i in 0..128 {
                        let mut p = PartitionUpdate::new();
                        p.set_partition_name(format!("p{i}"));
                        m.partitions.push(p);
                    }
                })
            },
        },
        Case {
            name: "too many operations",
            expect: MalformedPayload,
            says: "operations exceed",
            attempt: |fx| {
                // A million and one operations of four bytes each (type REPLACE, nothing else),
                // in one more partition appended to the encoded manifest.
                let ops = MAX_OPERATIONS + 1;
                let mut part = vec![0x0a, 3, b'b', b'i', b'g'];
                for _ in 0..ops {
                    part.extend_from_slice(&[0x42, 2, 0x08, 0x00]);
                }
                appended_partition(fx, part)
            },
        },
        Case {
            name: "manifest that decodes to hundreds of megabytes",
            expect: MalformedPayload,
            says: "would take more than",
            attempt: |fx| {
                // 12 MiB of empty extents (2 bytes each on the wire, 48 decoded): 300 MB.
                let mut op = vec![0x08, 0x00];
                for _ in 0..(6 << 20) {
                    op.extend_from_slice(&[0x32, 0x00]);
                }
                let mut part = vec![0x0a, 3, b'b', b'i', b'g', 0x42];
                push_varint(&mut part, op.len() as u64);
                part.extend_from_slice(&op);
                appended_partition(fx, part)
            },
        },
    ]
}

/// Our signed full payload, cut to `len(forge)` bytes.
fn cut(fx: &Fixture, len: fn(&Forge) -> usize) -> Attempt {
    let mut bytes = fx.full.to_bytes();
    bytes.truncate(len(&fx.full));
    Attempt::ours(fx, bytes)
}

/// Our signed full payload with `bytes` written at `at`.
fn poke(fx: &Fixture, at: usize, bytes: &[u8]) -> Attempt {
    let mut payload = fx.full.to_bytes();
    payload[at..at + bytes.len()].copy_from_slice(bytes);
    Attempt::ours(fx, payload)
}

/// `base` with its manifest changed by `f`, signed by the trusted key.
pub fn resigned(
    fx: &Fixture,
    base: &Forge,
    f: impl FnOnce(&mut abupdate::payload::proto::update_metadata::DeltaArchiveManifest),
) -> Attempt {
    let mut forge = base.clone();
    forge.edit(f);
    signed(fx, forge)
}

pub fn signed(fx: &Fixture, mut forge: Forge) -> Attempt {
    forge.sign(&fx.key_a);
    Attempt::ours(fx, forge.to_bytes())
}

fn renamed(fx: &Fixture, name: &'static str) -> Attempt {
    resigned(fx, &fx.full, |m| {
        m.partitions[1].set_partition_name(name.to_owned())
    })
}

pub fn extent(start: u64, num: u64) -> Extent {
    let mut e = Extent::new();
    e.set_start_block(start);
    e.set_num_blocks(num);
    e
}

/// The first operation of the delta's `system` that reads the source.
fn source_op(
    m: &mut abupdate::payload::proto::update_metadata::DeltaArchiveManifest,
) -> &mut abupdate::payload::proto::update_metadata::InstallOperation {
    m.partitions[0]
        .operations
        .iter_mut()
        .find(|op| !op.src_extents.is_empty())
        .unwrap()
}

fn bump_offset(op: &mut abupdate::payload::proto::update_metadata::InstallOperation, by: u64) {
    op.set_data_offset(op.data_offset() + by);
}

/// Our full payload with an encoded partition appended to its manifest, signed. The signature
/// fields stay valid: the new partition has no blobs.
fn appended_partition(fx: &Fixture, part: Vec<u8>) -> Attempt {
    let mut f = fx.full.clone();
    f.manifest.push(0x6a);
    push_varint(&mut f.manifest, part.len() as u64);
    f.manifest.extend_from_slice(&part);
    Attempt::ours(fx, f.sign_as_is(&fx.key_a).to_bytes())
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
