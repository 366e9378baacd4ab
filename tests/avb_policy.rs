//! Tamper resistance of vbmeta verification, the chain-of-trust check (code 28) and the rollback
//! check (code 27), on images written by our builder.

mod avb_common;

use abupdate::avb::{
    check_rollback, rollback_claims, verify_chain, Algorithm, AvbPublicKey,
    ChainPartitionDescriptor, Descriptor, HashDescriptor, KernelCmdlineDescriptor,
    PropertyDescriptor, RingSigner, RollbackClaim, RollbackFloors, VbmetaBuilder, VbmetaImage,
    VbmetaSigner,
};
use abupdate::ErrorCode;
use avb_common::{data, ring_signer};

/// Flips every byte of a signed image (two different ways) and requires each change to be caught
/// by `parse` or `verify`, except exactly the authentication block's padding after the
/// signature, which nothing covers (avbtool writes zeros; libavb ignores them as well).
#[test]
fn every_covered_byte_is_tamper_evident() {
    for (image, bytes) in [
        ("top", top_builder().build(Some(&top_key())).unwrap()),
        ("avbtool", data("vbmeta.img")[..3968].to_vec()),
    ] {
        let original = VbmetaImage::parse(&bytes).unwrap();
        let auth_size = u64::from_be_bytes(bytes[12..20].try_into().unwrap()) as usize;
        let used = original.algorithm().hash_len() + original.algorithm().signature_len();
        let uncovered = 256 + used..256 + auth_size;
        assert_eq!(
            uncovered.len(),
            32,
            "{image}: 32 + 256 bytes rounded up to 320"
        );
        let mut accepted = Vec::new();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0xa5] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                let verdict = VbmetaImage::parse(&bad).and_then(|img| img.verify().map(|_| ()));
                match verdict {
                    Ok(()) => accepted.push(i),
                    Err(e) => assert_eq!(e.code, ErrorCode::AvbSignature, "{image}: byte {i}: {e}"),
                }
            }
        }
        accepted.dedup();
        assert_eq!(
            accepted,
            uncovered.collect::<Vec<_>>(),
            "{image}: bytes whose change went unnoticed"
        );
    }
}

#[test]
fn truncations_and_hostile_header_fields_are_errors_not_panics() {
    let bytes = top_builder().build(Some(&top_key())).unwrap();
    for len in 0..bytes.len() {
        assert_eq!(
            VbmetaImage::parse(&bytes[..len]).unwrap_err().code,
            ErrorCode::AvbSignature,
            "{len}"
        );
    }
    // Every 64-bit size/offset field (12..112) and the 32-bit ones around them, set to extremes.
    let huge = [
        u64::MAX,
        u64::MAX - 63,
        1 << 63,
        u32::MAX as u64,
        bytes.len() as u64,
        64,
    ];
    for field in (12..112).step_by(4) {
        for value in huge {
            let mut bad = bytes.clone();
            bad[field..field + 8].copy_from_slice(&value.to_be_bytes());
            if let Ok(image) = VbmetaImage::parse(&bad) {
                assert!(image.verify().is_err(), "field {field} = {value:#x}");
            }
        }
    }
}

#[test]
fn chain_verifies_and_every_broken_link_is_code_28() {
    let (top_signer, chain_signer) = (top_key(), chain_key());
    let top = build(top_builder(), &top_signer);
    let boot = build(boot_builder(), &chain_signer);
    let trusted = top_signer.public_key().clone();
    verify_chain(&top, &trusted, &[("boot", &boot)]).unwrap();

    let refused = |top: &VbmetaImage, chained: &[(&str, &VbmetaImage)], why: &str| {
        let e = verify_chain(top, &trusted, chained).unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbSignature, "{why}: {e}");
    };
    // Top-level validly signed, but by another key than the device trusts.
    let other_top = build(top_builder_with(Algorithm::Sha256Rsa4096), &chain_signer);
    other_top.verify().unwrap();
    refused(&other_top, &[("boot", &boot)], "untrusted top-level key");
    // Chained image validly signed, but not by the key in its chain descriptor.
    let boot_wrong_key = build(boot_builder_with(Algorithm::Sha256Rsa2048), &top_signer);
    boot_wrong_key.verify().unwrap();
    refused(&top, &[("boot", &boot_wrong_key)], "chained key mismatch");
    // Unsigned top-level or chained image.
    let unsigned_top =
        VbmetaImage::parse(&VbmetaBuilder::new(Algorithm::None).build(None).unwrap()).unwrap();
    refused(&unsigned_top, &[], "unsigned top");
    let unsigned_boot =
        VbmetaImage::parse(&VbmetaBuilder::new(Algorithm::None).build(None).unwrap()).unwrap();
    refused(&top, &[("boot", &unsigned_boot)], "unsigned chained");
    // Missing, unknown and duplicate chained partitions.
    refused(&top, &[], "missing boot");
    refused(&top, &[("boot", &boot), ("dtbo", &boot)], "unchained dtbo");
    refused(&top, &[("boot", &boot), ("boot", &boot)], "boot twice");
    // A chained image with flags, or chaining further.
    let flagged = build(
        boot_builder().flags(VbmetaImage::FLAG_HASHTREE_DISABLED),
        &chain_signer,
    );
    refused(&top, &[("boot", &flagged)], "chained flags");
    let nested = build(
        boot_builder().descriptor(chain("vendor", 2, chain_signer.public_key())),
        &chain_signer,
    );
    refused(&top, &[("boot", &nested)], "nested chain");
    // A chained image whose signature broke in transit.
    let mut corrupt = boot.as_bytes().to_vec();
    corrupt[256 + 64 + 10] ^= 1; // inside the signature (the SHA-512 hash takes the first 64 bytes)
    let corrupt = VbmetaImage::parse(&corrupt).unwrap();
    refused(&top, &[("boot", &corrupt)], "chained signature");
}

#[test]
fn rollback_indexes_below_the_floor_are_code_27() {
    let (top_signer, chain_signer) = (top_key(), chain_key());
    let top = build(top_builder(), &top_signer); // index 5 at location 0
    let boot = build(boot_builder(), &chain_signer); // index 3, chained at location 1
    let chained: &[(&str, &VbmetaImage)] = &[("boot", &boot)];

    assert_eq!(
        rollback_claims(&top, chained).unwrap(),
        [
            RollbackClaim {
                partition: None,
                location: 0,
                index: 5
            },
            RollbackClaim {
                partition: Some("boot".into()),
                location: 1,
                index: 3
            },
        ]
    );
    for ok in [
        floors(&[]),
        floors(&[(0, 5), (1, 3)]),
        floors(&[(0, 4), (1, 0), (2, 99), (31, u64::MAX)]),
    ] {
        check_rollback(&top, chained, &ok).unwrap();
    }
    for low in [
        floors(&[(0, 6)]),
        floors(&[(1, 4)]),
        floors(&[(0, u64::MAX), (1, u64::MAX)]),
    ] {
        let e = check_rollback(&top, chained, &low).unwrap_err();
        assert_eq!(e.code, ErrorCode::RollbackIndex, "{e}");
    }
    // The chained image's own header location is ignored: its descriptor says location 1.
    let boot_claims_7 = build(boot_builder().rollback_index_location(7), &chain_signer);
    let chained_7: &[(&str, &VbmetaImage)] = &[("boot", &boot_claims_7)];
    check_rollback(&top, chained_7, &floors(&[(7, 100)])).unwrap();
    assert_eq!(
        check_rollback(&top, chained_7, &floors(&[(1, 4)]))
            .unwrap_err()
            .code,
        ErrorCode::RollbackIndex
    );
    // The top-level image's location is its header's.
    let top_at_9 = build(top_builder().rollback_index_location(9), &top_signer);
    check_rollback(&top_at_9, chained, &floors(&[(0, 100)])).unwrap();
    assert_eq!(
        check_rollback(&top_at_9, chained, &floors(&[(9, 6)]))
            .unwrap_err()
            .code,
        ErrorCode::RollbackIndex
    );
    // An incomplete or foreign set cannot be checked: 28, never a silent pass.
    assert_eq!(
        check_rollback(&top, &[], &floors(&[])).unwrap_err().code,
        ErrorCode::AvbSignature
    );
    let foreign: &[(&str, &VbmetaImage)] = &[("boot", &boot), ("dtbo", &boot)];
    assert_eq!(
        check_rollback(&top, foreign, &floors(&[]))
            .unwrap_err()
            .code,
        ErrorCode::AvbSignature
    );
}

#[test]
fn current_slot_floors_take_what_can_be_read() {
    let (top_signer, chain_signer) = (top_key(), chain_key());
    let top = build(top_builder(), &top_signer);
    let boot = build(boot_builder(), &chain_signer);
    assert_eq!(
        RollbackFloors::from_slot(&top, &[("boot", &boot)]).unwrap(),
        floors(&[(0, 5), (1, 3)])
    );
    assert_eq!(
        RollbackFloors::from_slot(&top, &[]).unwrap(),
        floors(&[(0, 5)])
    );
    assert!(RollbackFloors::from_slot(&top, &[("dtbo", &boot)]).is_err());
    // An update from this slot to a copy of itself passes; one index lower does not.
    let current = RollbackFloors::from_slot(&top, &[("boot", &boot)]).unwrap();
    check_rollback(&top, &[("boot", &boot)], &current).unwrap();
    let older_boot = build(boot_builder().rollback_index(2), &chain_signer);
    let e = check_rollback(&top, &[("boot", &older_boot)], &current).unwrap_err();
    assert_eq!(e.code, ErrorCode::RollbackIndex);
    assert!(e.message.contains("boot has 2 < 3 at location 1"), "{e}");
}

fn top_key() -> RingSigner {
    ring_signer("testkey_rsa2048.pem")
}

fn chain_key() -> RingSigner {
    ring_signer("testkey_rsa4096.pem")
}

fn chain(name: &str, location: u32, key: &AvbPublicKey) -> Descriptor {
    Descriptor::ChainPartition(ChainPartitionDescriptor {
        rollback_index_location: location,
        partition_name: name.into(),
        public_key: key.clone(),
        flags: 0,
    })
}

/// Top-level image: index 5 at location 0, chains `boot` at location 1 with the 4096-bit key.
fn top_builder() -> VbmetaBuilder {
    top_builder_with(Algorithm::Sha256Rsa2048)
}

fn top_builder_with(algorithm: Algorithm) -> VbmetaBuilder {
    VbmetaBuilder::new(algorithm)
        .rollback_index(5)
        .descriptor(chain("boot", 1, chain_key().public_key()))
        .descriptor(Descriptor::Property(PropertyDescriptor {
            key: "p".into(),
            value: b"q".to_vec(),
        }))
        .descriptor(Descriptor::KernelCmdline(KernelCmdlineDescriptor {
            flags: 2,
            cmdline: "x=y".into(),
        }))
}

/// Chained `boot`: index 3, signed with the 4096-bit chain key.
fn boot_builder() -> VbmetaBuilder {
    boot_builder_with(Algorithm::Sha512Rsa4096)
}

fn boot_builder_with(algorithm: Algorithm) -> VbmetaBuilder {
    VbmetaBuilder::new(algorithm)
        .rollback_index(3)
        .descriptor(Descriptor::Hash(HashDescriptor {
            image_size: 4096,
            hash_algorithm: "sha256".into(),
            partition_name: "boot".into(),
            salt: vec![7; 16],
            digest: vec![9; 32],
            flags: 0,
        }))
}

fn build(builder: VbmetaBuilder, signer: &dyn VbmetaSigner) -> VbmetaImage {
    VbmetaImage::parse(&builder.build(Some(signer)).unwrap()).unwrap()
}

fn floors(pairs: &[(u32, u64)]) -> RollbackFloors {
    let mut f = RollbackFloors::new();
    for &(location, value) in pairs {
        f.raise(location, value).unwrap();
    }
    f
}
