//! Signatures and the header pairs: with a trusted key configured, a payload whose metadata or
//! payload signature is wrong, missing or made by another key is refused, and so is one whose
//! `FILE_HASH`, `FILE_SIZE`, `METADATA_HASH` or `METADATA_SIZE` does not match.

use abupdate::payload::signature::encode_signatures;
use abupdate::ErrorCode::*;

use crate::common::forge::{self, Forge};
use crate::{Attempt, Case, Fixture};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "metadata signature corrupted",
            expect: MetadataSignature,
            says: "none of the 1 metadata signature",
            attempt: |fx| {
                let mut f = fx.full.clone();
                let at = f.metadata_signature.len() - 7;
                f.metadata_signature[at] ^= 1;
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "metadata signature missing",
            expect: MetadataSignature,
            says: "not signed",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.metadata_signature.clear();
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "metadata signature is not protobuf",
            expect: MetadataSignature,
            says: "not a valid protobuf",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.metadata_signature = vec![0xff; f.metadata_signature.len()];
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "metadata signature holds no signature",
            expect: MetadataSignature,
            says: "carries no signature",
            attempt: |fx| {
                let mut f = fx.full.clone();
                // A `Signatures` message with only an unknown field: it parses, and holds no
                // signature at all.
                f.metadata_signature = vec![0x10, 0x01];
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "17 metadata signatures",
            expect: MetadataSignature,
            says: "exceed",
            attempt: |fx| {
                let mut f = fx.full.clone();
                let sig = fx.key_a.sign_digest(&forge::sha256(&f.metadata())).unwrap();
                f.metadata_signature = encode_signatures(&vec![sig; 17]);
                // The header now names a longer signature; sign what it became.
                let sig = fx.key_a.sign_digest(&forge::sha256(&f.metadata())).unwrap();
                f.metadata_signature = encode_signatures(&vec![sig; 17]);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "unsigned payload with a key configured",
            expect: MetadataSignature,
            says: "not signed",
            attempt: |fx| Attempt::ours(fx, fx.full.clone().unsign().to_bytes()),
        },
        Case {
            name: "signed by another key",
            expect: MetadataSignature,
            says: "none of the 1 metadata signature",
            attempt: |fx| Attempt::ours(fx, fx.full.clone().sign(&fx.key_b).to_bytes()),
        },
        Case {
            name: "payload signature corrupted",
            expect: PayloadSignature,
            says: "none of the 1 payload signature",
            attempt: |fx| {
                let mut f = fx.full.clone();
                let at = f.payload_signature.len() - 9;
                f.payload_signature[at] ^= 0x80;
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "payload signature missing",
            expect: PayloadSignature,
            says: "no signature blob",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| {
                    m.clear_signatures_offset();
                    m.clear_signatures_size();
                });
                f.payload_signature.clear();
                sign_metadata(fx, &mut f);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "payload signature by another key",
            expect: PayloadSignature,
            says: "none of the 1 payload signature",
            attempt: |fx| {
                let mut f = fx.full.clone();
                let mut signed = f.metadata();
                signed.extend_from_slice(&f.blobs);
                f.payload_signature = forge::signature(&fx.key_b, &signed);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "payload signature over other blobs",
            expect: PayloadSignature,
            says: "none of the 1 payload signature",
            attempt: |fx| {
                // The blobs of the delta, signed as if they were the full payload's.
                let mut f = fx.full.clone();
                let mut signed = f.metadata();
                signed.extend_from_slice(&fx.delta.blobs);
                f.payload_signature = forge::signature(&fx.key_a, &signed);
                Attempt::ours(fx, f.to_bytes())
            },
        },
        Case {
            name: "the other key trusted",
            expect: MetadataSignature,
            says: "none of the 1 metadata signature",
            attempt: |fx| Attempt::ours(fx, fx.full.to_bytes()).key(&fx.pub_b),
        },
        Case {
            name: "FILE_HASH mismatch",
            expect: PayloadSignature,
            says: "FILE_HASH",
            attempt: |fx| with_properties(fx, &fx.full, "FILE_HASH", flip_base64),
        },
        Case {
            name: "FILE_SIZE mismatch",
            expect: SizeMismatch,
            says: "FILE_SIZE",
            attempt: |fx| {
                with_properties(fx, &fx.full, "FILE_SIZE", |v| {
                    (v.parse::<u64>().unwrap() + 1).to_string()
                })
            },
        },
        Case {
            name: "METADATA_HASH mismatch",
            expect: MetadataSignature,
            says: "METADATA_HASH",
            attempt: |fx| with_properties(fx, &fx.full, "METADATA_HASH", flip_base64),
        },
        Case {
            name: "METADATA_SIZE mismatch",
            expect: MetadataSignature,
            says: "METADATA_SIZE",
            attempt: |fx| {
                with_properties(fx, &fx.full, "METADATA_SIZE", |v| {
                    (v.parse::<u64>().unwrap() - 1).to_string()
                })
            },
        },
        Case {
            name: "no trusted key, unsigned payload",
            expect: NoTrustedKey,
            says: "no trusted payload key",
            attempt: |fx| Attempt::aosp(fx.aosp_full.to_bytes()).no_trust(),
        },
        Case {
            name: "no trusted key, signed payload",
            expect: NoTrustedKey,
            says: "no trusted payload key",
            attempt: |fx| Attempt::ours(fx, fx.full.to_bytes()).no_trust(),
        },
        Case {
            // Signed as it is, so the payload signature would verify, but only after every
            // blob had gone through a decompressor and onto the disk.
            name: "signed payload, a blob without data_sha256_hash",
            expect: PayloadHash,
            says: "has no data_sha256_hash",
            attempt: |fx| {
                let mut f = fx.full.clone();
                f.edit(|m| {
                    let op = m.partitions[0]
                        .operations
                        .iter_mut()
                        .find(|op| op.data_length() > 0)
                        .unwrap();
                    op.clear_data_sha256_hash();
                });
                Attempt::ours(fx, f.sign(&fx.key_a).to_bytes())
            },
        },
        Case {
            name: "signed delta, a source read without src_sha256_hash",
            expect: PayloadHash,
            says: "SOURCE_COPY has no src_sha256_hash",
            attempt: |fx| {
                use abupdate::payload::proto::update_metadata::install_operation::Type;
                let mut f = fx.delta.clone();
                f.edit(|m| {
                    let op = m
                        .partitions
                        .iter_mut()
                        .flat_map(|p| p.operations.iter_mut())
                        .find(|op| op.type_() == Type::SOURCE_COPY)
                        .unwrap();
                    op.clear_src_sha256_hash();
                });
                Attempt::ours(fx, f.sign(&fx.key_a).to_bytes())
            },
        },
        Case {
            // update_engine: a partial update must version every partition the running
            // build versions, or it could put back an older one unnoticed.
            name: "partial update without the versions the running build has",
            expect: MalformedPayload,
            says: "partition system carries no version",
            attempt: |fx| {
                let mut f = fx.delta.clone();
                f.edit(|m| m.set_partial_update(true));
                Attempt::ours(fx, f.sign(&fx.key_a).to_bytes()).tweak(|dev| {
                    let props =
                        "ro.build.date.utc=1700000000\nro.system.build.date.utc=1700000000\n";
                    std::fs::write(dev.join("build.prop"), props).unwrap();
                })
            },
        },
        Case {
            name: "AOSP unsigned payload with a key configured",
            expect: MetadataSignature,
            says: "not signed",
            attempt: |fx| Attempt::aosp(fx.aosp_full.to_bytes()).key(&fx.pub_a),
        },
        Case {
            name: "AOSP payload, FILE_HASH of another payload",
            expect: PayloadSignature,
            says: "FILE_HASH",
            attempt: |fx| {
                let other = forge::properties(&fx.aosp_delta.to_bytes());
                let file_hash = other
                    .into_iter()
                    .find(|p| p.starts_with("FILE_HASH="))
                    .unwrap();
                Attempt::aosp(fx.aosp_full.to_bytes()).header(file_hash)
            },
        },
    ]
}

/// Re-signs the metadata (only) with the trusted key.
pub fn sign_metadata(fx: &Fixture, f: &mut Forge) {
    f.metadata_signature = vec![0; f.metadata_signature.len()];
    f.metadata_signature = forge::signature(&fx.key_a, &f.metadata());
}

/// The payload with all four properties as header pairs, `key`'s value changed by `change`.
fn with_properties(fx: &Fixture, f: &Forge, key: &str, change: fn(&str) -> String) -> Attempt {
    let bytes = f.to_bytes();
    let mut attempt = Attempt::ours(fx, bytes.clone());
    for pair in forge::properties(&bytes) {
        let (k, v) = pair.split_once('=').unwrap();
        attempt = attempt.header(if k == key {
            format!("{k}={}", change(v))
        } else {
            pair.clone()
        });
    }
    attempt
}

/// A different valid base64 SHA-256: the first character changed.
fn flip_base64(v: &str) -> String {
    let first = if v.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &v[1..])
}
