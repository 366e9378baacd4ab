//! Hostile operations and devices: corrupt blobs, wrong source data, operation types this
//! engine does not apply, decompression bombs, operations that break their type's rules, target
//! partitions that are missing or too small, and the same attacks on AOSP's sample payloads.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use abupdate::payload::proto::update_metadata::install_operation::Type;
use abupdate::payload::proto::update_metadata::InstallOperation;
use abupdate::ErrorCode::*;
use protobuf::EnumOrUnknown;

use crate::common::forge::Forge;
use crate::format::{extent, signed};
use crate::{Attempt, Case, Fixture};

pub fn cases() -> Vec<Case> {
    vec![
        // Blob and source integrity.
        Case {
            name: "blob corrupted",
            expect: PayloadHash,
            says: "data_sha256_hash",
            attempt: |fx| {
                let mut f = fx.full.clone();
                let at = f.blobs.len() / 3;
                f.blobs[at] ^= 0x20;
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "wrong data_sha256_hash",
            expect: PayloadHash,
            says: "data_sha256_hash",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.partitions[1].operations[0].set_data_sha256_hash(vec![0xab; 32]));
                signed(fx, f)
            },
        },
        Case {
            name: "delta on the wrong base",
            expect: SourceHash,
            says: "not the base",
            attempt: |fx| {
                Attempt::ours(fx, fx.delta.to_bytes())
                    .tweak(|dev| flip_byte(&dev.join("system_a.img"), 12345))
            },
        },
        Case {
            name: "source partition smaller than the delta's base",
            expect: SourceHash,
            says: "has 4096 bytes",
            attempt: |fx| {
                Attempt::ours(fx, fx.delta.to_bytes())
                    .tweak(|dev| set_len(&dev.join("vendor_a.img"), 4096))
            },
        },
        Case {
            name: "wrong src_sha256_hash",
            expect: SourceHash,
            says: "src_sha256_hash",
            attempt: |fx| {
                let mut f = fx.delta.clone();
                f.edit(|m| {
                    let op = m.partitions[0]
                        .operations
                        .iter_mut()
                        .find(|op| op.has_src_sha256_hash())
                        .unwrap();
                    op.set_src_sha256_hash(vec![0x11; 32]);
                });
                signed(fx, f)
            },
        },
        Case {
            name: "written partition does not match new_partition_info",
            expect: PartitionHash,
            says: "new_partition_info.hash",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| {
                    m.partitions[1]
                        .new_partition_info
                        .mut_or_insert_default()
                        .set_hash(vec![0; 32])
                });
                signed(fx, f)
            },
        },
        // Operation types.
        Case {
            name: "unknown operation type",
            expect: Unsupported,
            says: "unknown operation type 99",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.partitions[1].operations[0].type_ = Some(EnumOrUnknown::from_i32(99)));
                signed(fx, f)
            },
        },
        Case {
            name: "PUFFDIFF operation",
            expect: MalformedPayload,
            says: "not a puffin patch",
            attempt: |fx| retyped(fx, Type::PUFFDIFF, true),
        },
        Case {
            name: "ZUCCHINI operation",
            expect: MalformedPayload,
            says: "zucchini: brotli",
            attempt: |fx| retyped(fx, Type::ZUCCHINI, true),
        },
        Case {
            name: "LZ4DIFF_BSDIFF operation with another operation's blob",
            expect: MalformedPayload,
            says: "not an lz4diff patch",
            attempt: |fx| retyped(fx, Type::LZ4DIFF_BSDIFF, true),
        },
        Case {
            name: "LZ4DIFF_PUFFDIFF operation with another operation's blob",
            expect: MalformedPayload,
            says: "not an lz4diff patch",
            attempt: |fx| retyped(fx, Type::LZ4DIFF_PUFFDIFF, true),
        },
        Case {
            name: "obsolete MOVE operation",
            expect: Unsupported,
            says: "MOVE",
            attempt: |fx| retyped(fx, Type::MOVE, false),
        },
        Case {
            name: "obsolete BSDIFF operation",
            expect: Unsupported,
            says: "BSDIFF",
            attempt: |fx| retyped(fx, Type::BSDIFF, true),
        },
        // Decompression.
        Case {
            name: "xz bomb",
            expect: MalformedPayload,
            says: "more than",
            attempt: |fx| vendor_blob(fx, Type::REPLACE_XZ, bomb(Bomb::Xz)),
        },
        Case {
            name: "bzip2 bomb",
            expect: MalformedPayload,
            says: "more than",
            attempt: |fx| vendor_blob(fx, Type::REPLACE_BZ, bomb(Bomb::Bzip2)),
        },
        Case {
            name: "zstd bomb",
            expect: MalformedPayload,
            says: "more than",
            attempt: |fx| vendor_blob(fx, Type::ZSTD, bomb(Bomb::Zstd)),
        },
        Case {
            name: "xz blob too short for its extents",
            expect: MalformedPayload,
            says: "decompresses to 4096 bytes",
            attempt: |fx| vendor_blob(fx, Type::REPLACE_XZ, xz(&[7; 4096])),
        },
        Case {
            name: "xz blob that is not xz",
            expect: MalformedPayload,
            says: "corrupt",
            attempt: |fx| {
                let mut blob = xz(&[7; 24 * 4096]);
                blob[0] ^= 0xff;
                vendor_blob(fx, Type::REPLACE_XZ, blob)
            },
        },
        Case {
            name: "bsdiff patch that is not a patch",
            expect: MalformedPayload,
            says: "bsdiff",
            attempt: |fx| {
                let mut f = fx.delta.clone();
                let mut done = false;
                f.edit_ops(|name, _, op, blob| {
                    if !done && name == "system" && op.type_() == Type::SOURCE_COPY {
                        op.set_type(Type::BROTLI_BSDIFF);
                        *blob = b"BSDF2\x02\x02\x02 and then nothing sensible".to_vec();
                        done = true;
                    }
                });
                signed(fx, f)
            },
        },
        // Operations that break their type's rules.
        Case {
            name: "REPLACE blob shorter than its extents",
            expect: MalformedPayload,
            says: "REPLACE of 4096 bytes",
            attempt: |fx| vendor_blob(fx, Type::REPLACE, vec![1; 4096]),
        },
        Case {
            name: "ZERO carrying data",
            expect: MalformedPayload,
            says: "carries",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.partitions[1].operations[0].set_type(Type::ZERO));
                signed(fx, f)
            },
        },
        Case {
            name: "REPLACE_XZ without data",
            expect: MalformedPayload,
            says: "without data",
            attempt: |fx| vendor_blob(fx, Type::REPLACE_XZ, vec![]),
        },
        Case {
            name: "SOURCE_COPY in a full payload",
            expect: MalformedPayload,
            says: "in a full payload",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit_ops(|name, _, op, blob| {
                    if name == "vendor" {
                        op.set_type(Type::SOURCE_COPY);
                        op.src_extents.push(extent(0, 24));
                        blob.clear();
                    }
                });
                signed(fx, f)
            },
        },
        Case {
            name: "SOURCE_COPY into a different size",
            expect: MalformedPayload,
            says: "SOURCE_COPY of",
            attempt: |fx| {
                let mut f = fx.delta.clone();
                f.edit(|m| {
                    let op = m.partitions[0]
                        .operations
                        .iter_mut()
                        .find(|op| op.type_() == Type::SOURCE_COPY)
                        .unwrap();
                    op.src_extents.push(extent(0, 1));
                });
                signed(fx, f)
            },
        },
        Case {
            name: "source operation without source extents",
            expect: MalformedPayload,
            says: "without source extents",
            attempt: |fx| {
                let mut f = fx.delta.clone();
                f.edit(|m| {
                    let op = m.partitions[0]
                        .operations
                        .iter_mut()
                        .find(|op| op.type_() == Type::SOURCE_COPY)
                        .unwrap();
                    op.src_extents.clear();
                });
                signed(fx, f)
            },
        },
        // The device.
        Case {
            name: "target partition missing",
            expect: PartitionMissing,
            says: "vendor_b.img does not exist",
            attempt: |fx| {
                Attempt::ours(fx, fx.full.to_bytes())
                    .tweak(|dev| std::fs::remove_file(dev.join("vendor_b.img")).unwrap())
            },
        },
        Case {
            name: "target partition too small",
            expect: PartitionMissing,
            says: "the update needs",
            attempt: |fx| {
                Attempt::ours(fx, fx.full.to_bytes())
                    .tweak(|dev| set_len(&dev.join("system_b.img"), 100 * 4096))
            },
        },
        Case {
            name: "partition unknown to the device",
            expect: PartitionMissing,
            says: "odm_b.img does not exist",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| m.partitions[1].set_partition_name("odm".into()));
                signed(fx, f)
            },
        },
        Case {
            name: "source partition missing for a delta",
            expect: PartitionMissing,
            says: "vendor_a.img does not exist",
            attempt: |fx| {
                Attempt::ours(fx, fx.delta.to_bytes())
                    .tweak(|dev| std::fs::remove_file(dev.join("vendor_a.img")).unwrap())
            },
        },
        // AOSP's sample payloads (unsigned, no key configured).
        Case {
            name: "AOSP full truncated mid-blob",
            expect: SizeMismatch,
            says: "beyond the payload",
            attempt: |fx| {
                let mut bytes = fx.aosp_full.to_bytes();
                bytes.truncate(bytes.len() - fx.aosp_full.blobs.len() / 2);
                Attempt::aosp(bytes)
            },
        },
        Case {
            name: "AOSP full with a bad magic",
            expect: MalformedPayload,
            says: "magic",
            attempt: |fx| {
                let mut bytes = fx.aosp_full.to_bytes();
                bytes[3] = b'X';
                Attempt::aosp(bytes)
            },
        },
        Case {
            name: "AOSP full with a garbage manifest",
            expect: MalformedPayload,
            says: "not a valid protobuf",
            attempt: |fx| {
                let mut f = fx.aosp_full.clone();
                f.manifest.iter_mut().step_by(3).for_each(|b| *b = 0xff);
                Attempt::aosp(f.to_bytes())
            },
        },
        Case {
            name: "AOSP delta with a corrupted blob",
            expect: PayloadHash,
            says: "data_sha256_hash",
            attempt: |fx| {
                let mut f = fx.aosp_delta.clone();
                let last = f.blobs.len() - 1;
                f.blobs[last] ^= 1;
                Attempt::aosp(f.to_bytes())
            },
        },
        Case {
            name: "AOSP delta on the wrong base",
            expect: SourceHash,
            says: "not the base",
            attempt: |fx| {
                Attempt::aosp(fx.aosp_delta.to_bytes())
                    .tweak(|dev| flip_byte(&dev.join("kernel_a.img"), 4096))
            },
        },
        Case {
            name: "AOSP delta with a wrong src_sha256_hash",
            expect: SourceHash,
            says: "src_sha256_hash",
            attempt: |fx| {
                let mut f = fx.aosp_delta.clone();
                f.edit(|m| {
                    let op = m
                        .partitions
                        .iter_mut()
                        .flat_map(|p| p.operations.iter_mut())
                        .find(|op| op.has_src_sha256_hash())
                        .unwrap();
                    op.set_src_sha256_hash(vec![0; 32]);
                });
                Attempt::aosp(f.to_bytes())
            },
        },
        Case {
            name: "AOSP delta with BROTLI_BSDIFF made PUFFDIFF",
            expect: MalformedPayload,
            says: "not a puffin patch",
            attempt: |fx| {
                let mut f = fx.aosp_delta.clone();
                f.edit(|m| {
                    for op in m
                        .partitions
                        .iter_mut()
                        .flat_map(|p| p.operations.iter_mut())
                    {
                        if op.type_() == Type::BROTLI_BSDIFF {
                            op.set_type(Type::PUFFDIFF);
                        }
                    }
                });
                Attempt::aosp(f.to_bytes())
            },
        },
        Case {
            name: "AOSP full with an xz bomb",
            expect: MalformedPayload,
            says: "more than",
            attempt: |fx| {
                let mut f = fx.aosp_full.clone();
                let mut done = false;
                f.edit_ops(|_, _, op, blob| {
                    if !done && op.type_() == Type::REPLACE_XZ {
                        *blob = bomb(Bomb::Xz);
                        done = true;
                    }
                });
                assert!(done, "the AOSP full payload has a REPLACE_XZ operation");
                Attempt::aosp(f.to_bytes())
            },
        },
    ]
}

/// Our delta with its first SOURCE_COPY of `system` turned into `kind` (with a small blob when
/// `blob`), signed.
fn retyped(fx: &Fixture, kind: Type, blob: bool) -> Attempt {
    let mut f = fx.delta.clone();
    let mut done = false;
    f.edit_ops(|name, _, op, data| {
        if !done && name == "system" && op.type_() == Type::SOURCE_COPY {
            op.set_type(kind);
            if blob {
                *data = b"a patch this engine cannot apply".to_vec();
            }
            done = true;
        }
    });
    signed(fx, f)
}

/// Our full payload with `vendor`'s only operation (24 blocks) turned into `kind` with `blob`.
fn vendor_blob(fx: &Fixture, kind: Type, new_blob: Vec<u8>) -> Attempt {
    let mut f: Forge = fx.full.clone();
    f.edit_ops(|name, _, op: &mut InstallOperation, blob| {
        if name == "vendor" {
            assert_eq!(op.dst_extents.len(), 1);
            op.set_type(kind);
            *blob = new_blob.clone();
        }
    });
    if new_blob.is_empty() {
        // `edit_ops` drops the fields of an empty blob; a hostile payload can still name one.
        f.edit(|m| m.partitions[1].operations[0].set_data_length(0));
    }
    signed(fx, f)
}

#[derive(Clone, Copy)]
enum Bomb {
    Xz,
    Bzip2,
    Zstd,
}

/// Size a bomb expands to: far beyond any operation's 24-block destination.
const BOMB_SIZE: usize = 16 << 20;

/// A blob of each compressor that expands to [`BOMB_SIZE`] zeros, made once.
fn bomb(kind: Bomb) -> Vec<u8> {
    static BOMBS: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    let bombs = BOMBS.get_or_init(|| {
        let zeros = vec![0u8; 1 << 20];
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        for _ in 0..(BOMB_SIZE >> 20) {
            xz.write_all(&zeros).unwrap();
            bz.write_all(&zeros).unwrap();
            zs.write_all(&zeros).unwrap();
        }
        [
            xz.finish().unwrap(),
            bz.finish().unwrap(),
            zs.finish().unwrap(),
        ]
    });
    bombs[kind as usize].clone()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn flip_byte(path: &Path, at: usize) {
    let mut data = std::fs::read(path).unwrap();
    data[at] ^= 1;
    std::fs::write(path, data).unwrap();
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}
