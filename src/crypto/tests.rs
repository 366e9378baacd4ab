//! Both backends against each other: signatures made by one library verify with the other,
//! tampering fails with both, and both read the same keys out of certificates and SPKIs.

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509Builder, X509NameBuilder};

use super::*;

const TESTKEY_A: &str = include_str!("../../tests/data/payload/testkey_a.pem");

fn digest(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// A self-signed certificate for `key`.
fn certificate(key: &PKey<openssl::pkey::Private>) -> Vec<u8> {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "abupdate test").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build().to_der().unwrap()
}

#[test]
fn rsa_signatures_verify_across_libraries() {
    use rsa::pkcs8::DecodePrivateKey;
    let private = rsa::PrivateKey::from_pkcs8_pem(TESTKEY_A).unwrap();
    let pkey = PKey::private_key_from_pem(TESTKEY_A.as_bytes()).unwrap();
    let spki = pkey.public_key_to_der().unwrap();
    let SpkiKey::Rsa { pkcs1_der, n, e } = BoringSsl::parse_spki(&spki).unwrap() else {
        panic!("not RSA");
    };
    assert_eq!(
        RustCrypto::parse_spki(&spki).unwrap(),
        SpkiKey::Rsa {
            pkcs1_der: pkcs1_der.clone(),
            n: n.clone(),
            e: e.clone()
        }
    );
    assert_eq!(
        BoringSsl::rsa_components(&pkcs1_der).unwrap(),
        (n.clone(), e.clone())
    );
    assert_eq!(RustCrypto::rsa_components(&pkcs1_der).unwrap(), (n, e));

    let d = digest(b"payload");
    let mut prefixed = SHA256_DIGEST_INFO.to_vec();
    prefixed.extend_from_slice(&d);
    // Made by the RustCrypto signer; checked by both.
    let sig = private
        .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &prefixed)
        .unwrap();
    assert!(BoringSsl::verify_rsa_sha256_digest(&pkcs1_der, &d, &sig));
    assert!(RustCrypto::verify_rsa_sha256_digest(&pkcs1_der, &d, &sig));
    let other = digest(b"other");
    assert!(!BoringSsl::verify_rsa_sha256_digest(
        &pkcs1_der, &other, &sig
    ));
    assert!(!RustCrypto::verify_rsa_sha256_digest(
        &pkcs1_der, &other, &sig
    ));
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert!(!BoringSsl::verify_rsa_sha256_digest(&pkcs1_der, &d, &bad));
    assert!(!RustCrypto::verify_rsa_sha256_digest(&pkcs1_der, &d, &bad));
    assert!(!BoringSsl::verify_rsa_sha256_digest(b"junk", &d, &sig));

    // The certificate's key is the same key, read by both.
    let cert = certificate(&pkey);
    assert_eq!(BoringSsl::certificate_spki(&cert).unwrap(), spki);
    assert_eq!(RustCrypto::certificate_spki(&cert).unwrap(), spki);
    assert!(BoringSsl::certificate_spki(b"junk").is_err());
    assert!(RustCrypto::certificate_spki(b"junk").is_err());
}

#[test]
fn ecdsa_signatures_verify_across_libraries() {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let pkey = PKey::from_ec_key(ec.clone()).unwrap();
    let spki = pkey.public_key_to_der().unwrap();
    let SpkiKey::EcP256 { point } = BoringSsl::parse_spki(&spki).unwrap() else {
        panic!("not P-256");
    };
    assert_eq!(point.len(), 65);
    assert_eq!(
        RustCrypto::parse_spki(&spki).unwrap(),
        SpkiKey::EcP256 {
            point: point.clone()
        }
    );

    let d = digest(b"payload");
    // One signature from each library, each checked by both.
    let by_openssl = openssl::ecdsa::EcdsaSig::sign(&d, &ec)
        .unwrap()
        .to_der()
        .unwrap();
    let scalar = ec.private_key().to_vec_padded(32).unwrap();
    let signing = p256::ecdsa::SigningKey::from_slice(&scalar).unwrap();
    let sig: p256::ecdsa::Signature = signing.sign_prehash(&d).unwrap();
    let by_rustcrypto = sig.to_der().as_bytes().to_vec();
    for sig in [&by_openssl, &by_rustcrypto] {
        assert!(BoringSsl::verify_ecdsa_p256_sha256_digest(&point, &d, sig));
        assert!(RustCrypto::verify_ecdsa_p256_sha256_digest(&point, &d, sig));
        let other = digest(b"other");
        assert!(!BoringSsl::verify_ecdsa_p256_sha256_digest(
            &point, &other, sig
        ));
        assert!(!RustCrypto::verify_ecdsa_p256_sha256_digest(
            &point, &other, sig
        ));
    }
    let mut off_curve = point.clone();
    off_curve[40] ^= 1;
    assert!(!BoringSsl::verify_ecdsa_p256_sha256_digest(
        &off_curve,
        &d,
        &by_openssl
    ));
    assert!(!RustCrypto::verify_ecdsa_p256_sha256_digest(
        &off_curve,
        &d,
        &by_openssl
    ));
}

#[test]
fn other_curves_are_unsupported_not_errors() {
    let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    let pkey = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let spki = pkey.public_key_to_der().unwrap();
    for parsed in [BoringSsl::parse_spki(&spki), RustCrypto::parse_spki(&spki)] {
        match parsed {
            Ok(SpkiKey::Unsupported(what)) => assert!(what.contains("only P-256"), "{what}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(BoringSsl::parse_spki(b"junk").is_err());
    assert!(RustCrypto::parse_spki(b"junk").is_err());
}

#[test]
fn portable_sha256_matches_ring() {
    let data: Vec<u8> = (0..64 * 37).map(|i| (i * 31 % 251) as u8).collect();
    let blocks: Vec<[u8; 64]> = data
        .chunks_exact(64)
        .map(|c| c.try_into().unwrap())
        .collect();
    let mut ours = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut theirs = ours;
    sha256::portable_compress256(&mut ours, &blocks);
    sha256::compress256(&mut theirs, &blocks);
    assert_eq!(ours, theirs);
    // And the padded single block of "abc" gives FIPS 180-4's test vector.
    let mut block = [0u8; 64];
    block[..3].copy_from_slice(b"abc");
    block[3] = 0x80;
    block[63] = 24;
    let mut state = [
        0x6a09e667,
        0xbb67ae85,
        0x3c6ef372,
        0xa54ff53a,
        0x510e527f,
        0x9b05688c,
        0x1f83d9ab,
        0x5be0cd19u32,
    ];
    sha256::portable_compress256(&mut state, &[block]);
    let out: Vec<u8> = state.iter().flat_map(|w| w.to_be_bytes()).collect();
    assert_eq!(out, digest(b"abc"));
}
