//! The keystore2 device key (`src/feed/keystore_key.rs`) over real Binder (rsbinder RPC on a
//! unix socket) against a stand-in keystore2 (`common/keystore2.rs`: a host has none) that
//! holds real X25519 keys and checks what the adapter asks for. The first open generates the
//! key, later opens reuse it; an agreement through the adapter equals ring's with the private
//! key the stand-in holds; an encrypted payload decrypts with the key and not with another
//! keystore's; keystore failures are 20-class errors that name the call.

#[path = "common/keystore2.rs"]
mod keystore2;

use abupdate::error::ErrorCode;
use abupdate::feed::crypt::{encrypt_all, ContentKey, KeyFile, Layout};
use abupdate::feed::decrypt::DecryptingSource;
use abupdate::feed::device_key::DeviceKey;
use abupdate::feed::keystore_key::{KeystoreDeviceKey, ALIAS};
use abupdate::service::binder_adapter::Transport;
use keystore2::{Fault, Keystore2};
use ring::agreement;

#[test]
fn first_open_generates_the_key_and_later_opens_reuse_it() {
    let keystore = Keystore2::start();
    let first = KeystoreDeviceKey::open(&keystore.transport()).unwrap();
    {
        let state = keystore.state();
        assert_eq!(state.generated, 1);
        let stored = &state.keys[ALIAS];
        assert_eq!(first.public_key(), stored.public);
        // The public key came out of a real certificate.
        let cert = openssl::x509::X509::from_der(&stored.certificate).unwrap();
        let raw = cert.public_key().unwrap().raw_public_key().unwrap();
        assert_eq!(raw, stored.public);
    }
    drop(first);
    let second = KeystoreDeviceKey::open(&keystore.transport()).unwrap();
    let third = KeystoreDeviceKey::open(&keystore.transport()).unwrap();
    assert_eq!(keystore.state().generated, 1, "the key is made once");
    assert_eq!(second.public_key(), third.public_key());
    assert_eq!(second.public_key(), keystore.state().keys[ALIAS].public);

    // Another keystore (another device) has another key.
    let other = Keystore2::start();
    let foreign = KeystoreDeviceKey::open(&other.transport()).unwrap();
    assert_ne!(foreign.public_key(), second.public_key());
}

#[test]
fn agreement_equals_rings_with_the_key_the_keystore_holds() {
    let keystore = Keystore2::start();
    let key = KeystoreDeviceKey::open(&keystore.transport()).unwrap();
    let rng = ring::rand::SystemRandom::new();
    for round in 0..3 {
        let peer = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).unwrap();
        let peer_public: [u8; 32] = peer
            .compute_public_key()
            .unwrap()
            .as_ref()
            .try_into()
            .unwrap();
        let device_public = keystore.state().keys[ALIAS].public;
        let expected = agreement::agree_ephemeral(
            peer,
            &agreement::UnparsedPublicKey::new(&agreement::X25519, device_public),
            |secret| secret.to_vec(),
        )
        .unwrap();
        let secret = key.agree(&peer_public).unwrap();
        assert_eq!(secret.to_vec(), expected, "round {round}");
    }
    assert_eq!(keystore.state().agreements, 3);
    // A low-order peer point: keystore2 answers all zeros, the adapter refuses it.
    let e = key.agree(&[0u8; 32]).unwrap_err();
    assert_eq!(e.code, ErrorCode::VerificationFailed);
    assert!(e.message.contains("low-order"), "{e}");
}

/// A payload encrypted for `recipient`, as `publish --encrypt-for` writes it: the key file's
/// JSON and the encrypted chunks.
fn encrypted_package(plain: &[u8], recipient: &[u8; 32], layout: Layout) -> (Vec<u8>, Vec<u8>) {
    let content = ContentKey::generate().unwrap();
    let mut keys = KeyFile::new();
    keys.add(&content, recipient).unwrap();
    (
        serde_json::to_vec(&keys).unwrap(),
        encrypt_all(&content, layout, plain).unwrap(),
    )
}

/// The plaintext of an encrypted package, streamed from a file with the device key.
fn decrypt(keys: &[u8], encrypted: &[u8], layout: Layout, key: &dyn DeviceKey) -> Vec<u8> {
    use abupdate::engine::PayloadSource as _;
    use std::io::Read as _;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.bin.enc");
    std::fs::write(&path, encrypted).unwrap();
    let content = KeyFile::parse(keys).unwrap().unwrap_for(key).unwrap();
    let file = abupdate::source::Source::file(&path).unwrap();
    let mut source = DecryptingSource::new(file, content, layout).unwrap();
    let mut plain = Vec::new();
    source.open(0).unwrap().read_to_end(&mut plain).unwrap();
    plain
}

#[test]
fn encrypted_payload_opens_with_the_keystore_key_and_not_another() {
    let keystore = Keystore2::start();
    let key = KeystoreDeviceKey::open(&keystore.transport()).unwrap();
    let plain: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let layout = Layout {
        chunk_size: 16384,
        plain_size: plain.len() as u64,
    };
    let (keys, encrypted) = encrypted_package(&plain, &key.public_key(), layout);
    assert_eq!(decrypt(&keys, &encrypted, layout, &key), plain);

    let other = Keystore2::start();
    let foreign = KeystoreDeviceKey::open(&other.transport()).unwrap();
    let e = KeyFile::parse(&keys)
        .unwrap()
        .unwrap_for(&foreign)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::VerificationFailed);
    assert!(e.message.contains("not encrypted for this device"), "{e}");
    // A key file that names the other device but wraps for this one: the other keystore's
    // agreement gives another secret, and the unwrap fails.
    let mut forged = KeyFile::parse(&keys).unwrap();
    forged.recipients[0].device = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(foreign.public_key())
    };
    let e = forged.unwrap_for(&foreign).unwrap_err();
    assert_eq!(e.code, ErrorCode::VerificationFailed);
    assert!(e.message.contains("does not unwrap"), "{e}");
    assert_eq!(
        other.state().agreements,
        1,
        "the foreign keystore was asked"
    );
}

/// `open` (and `agree`) with the stand-in failing as `fault`: the error.
fn failing(fault: Fault) -> abupdate::Error {
    let keystore = Keystore2::start();
    keystore.set_fault(fault);
    match KeystoreDeviceKey::open(&keystore.transport()) {
        Ok(key) => key.agree(&[9u8; 32]).unwrap_err(),
        Err(e) => e,
    }
}

#[test]
fn keystore_failures_are_verification_errors_that_name_the_call() {
    let cases = [
        (
            Fault::GetKeyEntry(4),
            "getKeyEntry failed: keystore2 ResponseCode 4",
        ),
        (
            Fault::GenerateKey(-38),
            "generateKey failed: KeyMint ErrorCode -38",
        ),
        (
            Fault::CreateOperation(6),
            "createOperation(AGREE_KEY) failed: keystore2 ResponseCode 6",
        ),
        (Fault::ShortSecret, "agreement is not 32 bytes"),
        (Fault::NoPublicKey, "holds no X25519 public key"),
    ];
    for (fault, needle) in cases {
        let e = failing(fault);
        assert_eq!(e.code, ErrorCode::VerificationFailed, "{fault:?}: {e}");
        assert_eq!(e.code.as_i32(), 20);
        assert!(e.message.contains(needle), "{fault:?}: {e}");
    }

    // No keystore2 at all.
    let dir = tempfile::tempdir().unwrap();
    let uri = format!(
        "unix://{}?profile=android13plus",
        dir.path().join("none.sock").display()
    );
    let e = match KeystoreDeviceKey::open(&Transport::parse(&uri).unwrap()) {
        Ok(_) => panic!("opened a key without keystore2"),
        Err(e) => e,
    };
    assert_eq!(e.code, ErrorCode::VerificationFailed, "{e}");
    assert!(e.message.contains("connecting to keystore2"), "{e}");

    // keystore2 gone after the key was opened.
    let keystore = Keystore2::start();
    let key = KeystoreDeviceKey::open(&keystore.transport()).unwrap();
    drop(keystore);
    let e = key.agree(&[9u8; 32]).unwrap_err();
    assert_eq!(e.code, ErrorCode::VerificationFailed, "{e}");
    assert!(
        e.message.contains("createOperation(AGREE_KEY) failed"),
        "{e}"
    );
}
