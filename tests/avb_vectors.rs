//! Our parser, verifier and builder against images made by AOSP avbtool 1.3.0
//! (tests/data/avb/README.md says how).

mod avb_common;

use abupdate::avb::{
    find_vbmeta, verify_chain, Algorithm, AvbFooter, AvbPublicKey, ChainPartitionDescriptor,
    Descriptor, HashDescriptor, HashtreeDescriptor, KernelCmdlineDescriptor, PropertyDescriptor,
    VbmetaBuilder, VbmetaImage, VbmetaSigner, Verification,
};
use abupdate::ErrorCode;
use avb_common::{data, ring_signer, OpensslSigner};

#[test]
fn avbtool_vbmeta_partition_parses_field_by_field_and_verifies() {
    let bytes = data("vbmeta.img");
    let image = find_vbmeta("vbmeta", &bytes).unwrap();
    assert_eq!(image, VbmetaImage::parse(&bytes).unwrap());
    assert_eq!(image.len(), 256 + 320 + 3392);
    assert_eq!(image.as_bytes(), &bytes[..image.len()]);
    assert_eq!(image.required_libavb_version(), (1, 3));
    assert_eq!(image.algorithm(), Algorithm::Sha256Rsa2048);
    assert_eq!(
        (
            image.rollback_index(),
            image.rollback_index_location(),
            image.flags()
        ),
        (7, 0, 0)
    );
    assert_eq!(image.release_string(), "avbtool 1.3.0");
    assert!(image.public_key_metadata().is_empty());
    let expected_key = key("testkey_rsa2048.avbpubkey");
    assert_eq!(image.public_key(), Some(&expected_key));
    assert_eq!(image.descriptors(), top_descriptors().as_slice());
    assert_eq!(image.property("other"), Some(&b"v2"[..]));
    assert_eq!(
        image
            .chain_partition("vendor_boot")
            .map(|c| c.rollback_index_location),
        Some(2)
    );
    assert_eq!(image.verify().unwrap(), Verification::Signed(&expected_key));
    image.verify_with_key(&expected_key).unwrap();
}

#[test]
fn avbtool_hash_footer_image_is_found_and_chains_from_the_top_level() {
    let boot_bytes = data("boot.img");
    let boot = find_vbmeta("boot", &boot_bytes).unwrap();
    let footer = AvbFooter::parse(&boot_bytes[boot_bytes.len() - 64..]).unwrap();
    assert_eq!(footer, AvbFooter::new(4096, 4096, 2048));
    assert_eq!(boot.as_bytes(), &boot_bytes[4096..4096 + 2048]);
    assert_eq!(boot.algorithm(), Algorithm::Sha512Rsa4096);
    assert_eq!(
        (
            boot.rollback_index(),
            boot.rollback_index_location(),
            boot.flags()
        ),
        (5, 0, 0)
    );
    assert_eq!(boot.required_libavb_version(), (1, 0));
    assert_eq!(
        boot.descriptors(),
        [Descriptor::Hash(boot_hash_descriptor())]
    );
    // The hash descriptor means sha256(salt || image), checked independently of avbtool.
    let mut salted = boot_hash_descriptor().salt;
    salted.extend_from_slice(&boot_bytes[..4096]);
    assert_eq!(
        ring::digest::digest(&ring::digest::SHA256, &salted).as_ref(),
        boot_hash_descriptor().digest
    );

    let top = find_vbmeta("vbmeta", &data("vbmeta.img")).unwrap();
    let trusted = key("testkey_rsa2048.avbpubkey");
    // vendor_boot is chained with the same key; boot's vbmeta stands in for it.
    verify_chain(&top, &trusted, &[("boot", &boot), ("vendor_boot", &boot)]).unwrap();
    let e = verify_chain(
        &top,
        &key("testkey_rsa4096.avbpubkey"),
        &[("boot", &boot), ("vendor_boot", &boot)],
    );
    assert_eq!(e.unwrap_err().code, ErrorCode::AvbSignature);
}

#[test]
fn avbtool_unsigned_and_rsa8192_images() {
    let none = VbmetaImage::parse(&data("vbmeta_none.img")).unwrap();
    assert_eq!(none.algorithm(), Algorithm::None);
    assert_eq!(none.verify().unwrap(), Verification::Unsigned);
    assert_eq!(none.public_key(), None);
    assert_eq!(
        (none.rollback_index(), none.rollback_index_location()),
        (2, 3)
    );
    assert_eq!(
        none.verify_with_key(&key("testkey_rsa2048.avbpubkey"))
            .unwrap_err()
            .code,
        ErrorCode::AvbSignature
    );

    let big = VbmetaImage::parse(&data("vbmeta_rsa8192.img")).unwrap();
    assert_eq!(big.algorithm(), Algorithm::Sha512Rsa8192);
    let Verification::Signed(key) = big.verify().unwrap() else {
        panic!("unsigned")
    };
    assert_eq!(key.num_bits(), 8192);
    let pem_key = AvbPublicKey::from_pem(&data("testkey_rsa8192.pem"));
    // ring reads no 8192-bit private key; openssl extracts the public half.
    let public = avb_common::openssl(&[
        "pkey",
        "-in",
        avb_common::data_path("testkey_rsa8192.pem")
            .to_str()
            .unwrap(),
        "-pubout",
    ]);
    assert!(pem_key.is_err());
    assert_eq!(AvbPublicKey::from_pem(&public).unwrap(), *key);
}

#[test]
fn builder_reproduces_avbtool_bytes() {
    let top = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
        .release_string("avbtool 1.3.0")
        .rollback_index(7);
    let top = top_descriptors()
        .into_iter()
        .fold(top, |b, d| b.descriptor(d));
    let signer = ring_signer("testkey_rsa2048.pem");
    let built = top.build(Some(&signer as &dyn VbmetaSigner)).unwrap();
    let golden = data("vbmeta.img");
    assert_eq!(built, golden[..built.len()]);
    assert!(
        golden[built.len()..].iter().all(|&b| b == 0),
        "avbtool --padding_size pads with zeros"
    );

    let boot = VbmetaBuilder::new(Algorithm::Sha512Rsa4096)
        .release_string("avbtool 1.3.0")
        .rollback_index(5)
        .descriptor(Descriptor::Hash(boot_hash_descriptor()))
        .build(Some(&ring_signer("testkey_rsa4096.pem")))
        .unwrap();
    let boot_image = data("boot.img");
    assert_eq!(boot, boot_image[4096..4096 + 2048]);
    assert_eq!(
        AvbFooter::new(4096, 4096, 2048).encode(),
        boot_image[boot_image.len() - 64..]
    );

    let none = VbmetaBuilder::new(Algorithm::None)
        .release_string("avbtool 1.3.0")
        .rollback_index(2)
        .rollback_index_location(3)
        .descriptor(Descriptor::Property(PropertyDescriptor {
            key: "a".into(),
            value: b"b".to_vec(),
        }))
        .build(None)
        .unwrap();
    assert_eq!(none, data("vbmeta_none.img"));

    let signer = OpensslSigner::new(avb_common::data_path("testkey_rsa8192.pem"));
    let big = VbmetaBuilder::new(Algorithm::Sha512Rsa8192)
        .release_string("avbtool 1.3.0")
        .rollback_index(11)
        .rollback_index_location(4)
        .descriptor(Descriptor::Property(PropertyDescriptor {
            key: "big".into(),
            value: b"key".to_vec(),
        }))
        .build(Some(&signer))
        .unwrap();
    assert_eq!(big, data("vbmeta_rsa8192.img"));
}

#[test]
fn key_blobs_match_avbtool_extract_public_key() {
    for bits in [2048, 4096] {
        let from_pem = AvbPublicKey::from_pem(&data(&format!("testkey_rsa{bits}.pem"))).unwrap();
        assert_eq!(
            from_pem.to_avb_blob(),
            data(&format!("testkey_rsa{bits}.avbpubkey"))
        );
        assert_eq!(from_pem.num_bits(), bits);
    }
}

fn key(name: &str) -> AvbPublicKey {
    AvbPublicKey::from_avb_blob(&data(name)).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    abupdate::hex::decode(s).unwrap()
}

/// The descriptors of tests/data/avb/vbmeta.img, in avbtool's order.
fn top_descriptors() -> Vec<Descriptor> {
    let chain_key = key("testkey_rsa4096.avbpubkey");
    vec![
        Descriptor::ChainPartition(ChainPartitionDescriptor {
            rollback_index_location: 1,
            partition_name: "boot".into(),
            public_key: chain_key.clone(),
            flags: 0,
        }),
        Descriptor::ChainPartition(ChainPartitionDescriptor {
            rollback_index_location: 2,
            partition_name: "vendor_boot".into(),
            public_key: chain_key,
            flags: ChainPartitionDescriptor::FLAG_DO_NOT_USE_AB,
        }),
        Descriptor::Property(PropertyDescriptor {
            key: "com.example.k".into(),
            value: b"value".to_vec(),
        }),
        Descriptor::Property(PropertyDescriptor {
            key: "other".into(),
            value: b"v2".to_vec(),
        }),
        Descriptor::KernelCmdline(KernelCmdlineDescriptor {
            flags: 0,
            cmdline: r#"dm="1 vroot none ro 1,0 8 linear""#.into(),
        }),
        Descriptor::Hash(boot_hash_descriptor()),
        Descriptor::Hashtree(HashtreeDescriptor {
            dm_verity_version: 1,
            image_size: 16384,
            tree_offset: 16384,
            tree_size: 4096,
            data_block_size: 4096,
            hash_block_size: 4096,
            fec_num_roots: 0,
            fec_offset: 0,
            fec_size: 0,
            hash_algorithm: "sha256".into(),
            partition_name: "system".into(),
            salt: hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"),
            root_digest: hex("a6e6ee39b74e3336594073f7eee495079d266e183cd77f18b1ac9d3e452963f2"),
            flags: HashtreeDescriptor::FLAG_CHECK_AT_MOST_ONCE,
        }),
    ]
}

fn boot_hash_descriptor() -> HashDescriptor {
    HashDescriptor {
        image_size: 4096,
        hash_algorithm: "sha256".into(),
        partition_name: "boot".into(),
        salt: hex("00112233445566778899aabbccddeeff"),
        digest: hex("1be3604c6795ebb8283ff88bba603a34340a47d17a560358d7a3fde2b66f914a"),
        flags: 0,
    }
}
