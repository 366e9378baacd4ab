//! Key formats and signatures checked against the `openssl` CLI (Debian package `openssl`).

mod avb_common;

use std::path::Path;

use abupdate::avb::{
    Algorithm, AvbPublicKey, Descriptor, PropertyDescriptor, RingSigner, VbmetaBuilder,
    VbmetaImage, VbmetaSigner, Verification,
};
use abupdate::ErrorCode;
use avb_common::{data_path, openssl, OpensslSigner};

#[test]
fn every_pem_form_openssl_writes_gives_the_same_modulus() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path_str(&private),
    ]);
    let modulus = openssl_modulus(&["rsa", "-in", path_str(&private), "-noout", "-modulus"]);

    let spki = openssl(&["rsa", "-in", path_str(&private), "-pubout"]);
    assert!(spki.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let pkcs1 = openssl(&["rsa", "-in", path_str(&private), "-RSAPublicKey_out"]);
    assert!(pkcs1.starts_with(b"-----BEGIN RSA PUBLIC KEY-----"));
    let cert = openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        path_str(&private),
        "-subj",
        "/CN=abupdate test",
        "-days",
        "1",
    ]);
    let traditional = openssl(&["rsa", "-in", path_str(&private), "-traditional"]);
    assert!(traditional.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
    let pkcs8 = std::fs::read(&private).unwrap();

    let key = AvbPublicKey::from_pem(&spki).unwrap();
    assert_eq!(hex_upper(key.modulus()), modulus);
    assert_eq!(key.num_bits(), 2048);
    for (form, pem) in [
        ("pkcs1", &pkcs1),
        ("certificate", &cert),
        ("traditional", &traditional),
        ("pkcs8", &pkcs8),
    ] {
        assert_eq!(AvbPublicKey::from_pem(pem).unwrap(), key, "{form}");
    }
    // A certificate after an unrelated block is still found.
    let mut bundle = b"-----BEGIN PARAMETERS-----\nAAAA\n-----END PARAMETERS-----\n".to_vec();
    bundle.extend_from_slice(&cert);
    assert_eq!(AvbPublicKey::from_pem(&bundle).unwrap(), key);
    // The AVB blob round-trips to the same key.
    assert_eq!(AvbPublicKey::from_avb_blob(key.to_avb_blob()).unwrap(), key);
}

#[test]
fn openssl_reads_our_pem_back_byte_for_byte() {
    for bits in [2048, 4096, 8192] {
        let private = data_path(&format!("testkey_rsa{bits}.pem"));
        let expected_der = openssl(&[
            "pkey",
            "-in",
            path_str(&private),
            "-pubout",
            "-outform",
            "DER",
        ]);
        let key = AvbPublicKey::from_spki_der(&expected_der).unwrap();
        assert_eq!(
            key.to_spki_der(),
            expected_der,
            "{bits}: our DER is OpenSSL's DER"
        );
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours.pem");
        std::fs::write(&ours, key.to_pem()).unwrap();
        let modulus = openssl_modulus(&[
            "rsa",
            "-pubin",
            "-in",
            path_str(&ours),
            "-noout",
            "-modulus",
        ]);
        assert_eq!(modulus, hex_upper(key.modulus()));
        let text = String::from_utf8(openssl(&[
            "rsa",
            "-pubin",
            "-in",
            path_str(&ours),
            "-noout",
            "-text",
        ]))
        .unwrap();
        assert!(
            text.contains(&format!("Public-Key: ({bits} bit)")),
            "{text}"
        );
        assert!(text.contains("Exponent: 65537 (0x10001)"), "{text}");
    }
}

#[test]
fn keys_avb_cannot_use_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (
            "e3",
            &[
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-pkeyopt",
                "rsa_keygen_pubexp:3",
            ],
        ),
        ("3072", &["-pkeyopt", "rsa_keygen_bits:3072"]),
        ("1024", &["-pkeyopt", "rsa_keygen_bits:1024"]),
    ];
    for (name, options) in cases {
        let private = dir.path().join(name);
        let mut args = vec!["genpkey", "-algorithm", "RSA", "-out", path_str(&private)];
        args.extend_from_slice(options);
        openssl(&args);
        let public = openssl(&["pkey", "-in", path_str(&private), "-pubout"]);
        assert_eq!(
            AvbPublicKey::from_pem(&public).unwrap_err().code,
            ErrorCode::AvbSignature,
            "{name}"
        );
    }
    let ec = dir.path().join("ec");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path_str(&ec),
    ]);
    let public = openssl(&["pkey", "-in", path_str(&ec), "-pubout"]);
    assert_eq!(
        AvbPublicKey::from_pem(&public).unwrap_err().code,
        ErrorCode::AvbSignature
    );
}

#[test]
fn signatures_cross_check_between_ring_and_openssl_for_every_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    for algorithm in Algorithm::ALL.into_iter().filter(|a| *a != Algorithm::None) {
        let bits = algorithm.key_bits().unwrap();
        let key_path = data_path(&format!("testkey_rsa{bits}.pem"));
        // Signed by openssl, verified by us.
        let image = VbmetaImage::parse(&small_image(
            algorithm,
            &OpensslSigner::new(key_path.clone()),
        ))
        .unwrap();
        assert!(matches!(image.verify().unwrap(), Verification::Signed(k) if k.num_bits() == bits));
        openssl_verifies(&image, dir.path());
        // Signed by ring (up to 4096 bits), verified by openssl, and the same bytes.
        if bits <= 4096 {
            let signer = RingSigner::from_pem(&std::fs::read(&key_path).unwrap()).unwrap();
            let ring_image = VbmetaImage::parse(&small_image(algorithm, &signer)).unwrap();
            openssl_verifies(&ring_image, dir.path());
            assert_eq!(
                ring_image, image,
                "{algorithm}: PKCS#1 v1.5 is deterministic"
            );
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `openssl rsa -modulus` prints `Modulus=<upper-case hex>`.
fn openssl_modulus(args: &[&str]) -> String {
    let out = String::from_utf8(openssl(args)).unwrap();
    out.trim().strip_prefix("Modulus=").unwrap().to_string()
}

fn hex_upper(bytes: &[u8]) -> String {
    abupdate::hex::encode(bytes).to_ascii_uppercase()
}

fn small_image(algorithm: Algorithm, signer: &dyn VbmetaSigner) -> Vec<u8> {
    VbmetaBuilder::new(algorithm)
        .rollback_index(3)
        .descriptor(Descriptor::Property(PropertyDescriptor {
            key: "k".into(),
            value: b"v".to_vec(),
        }))
        .build(Some(signer))
        .unwrap()
}

/// `openssl dgst -verify` checks our builder's signature over `header || aux` with our PEM.
fn openssl_verifies(image: &VbmetaImage, dir: &Path) {
    let bytes = image.as_bytes();
    let auth_size = u64::from_be_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let sig_offset = u64::from_be_bytes(bytes[48..56].try_into().unwrap()) as usize;
    let sig_size = u64::from_be_bytes(bytes[56..64].try_into().unwrap()) as usize;
    let mut signed = bytes[..256].to_vec();
    signed.extend_from_slice(&bytes[256 + auth_size..]);
    let (message, signature, public) = (dir.join("m"), dir.join("s"), dir.join("p.pem"));
    std::fs::write(&message, signed).unwrap();
    std::fs::write(
        &signature,
        &bytes[256 + sig_offset..256 + sig_offset + sig_size],
    )
    .unwrap();
    std::fs::write(&public, image.public_key().unwrap().to_pem()).unwrap();
    let digest = if image.algorithm().hash_len() == 32 {
        "-sha256"
    } else {
        "-sha512"
    };
    let out = openssl(&[
        "dgst",
        digest,
        "-verify",
        path_str(&public),
        "-signature",
        path_str(&signature),
        path_str(&message),
    ]);
    assert_eq!(out, b"Verified OK\n");
}
