//! The device's X25519 key, which unwraps the content keys of encrypted payloads.
//!
//! Behind [`DeviceKey`], the same kind of adapter boundary as the boot HAL: on Android the key is
//! a KeyMint key with purpose `AGREE_KEY` (EC curve 25519) that the platform keystore holds and
//! never exports (`super::keystore_key`, Android builds with the `keystore` feature; hosts build
//! it too, against a stand-in keystore2 in the tests). On a host the key is usually a file,
//! [`FileDeviceKey`]: the PKCS#8 PEM `openssl genpkey -algorithm X25519` writes.

use crate::error::Result;
use crate::{bail, err};

/// An X25519 key whose private half may never be seen.
pub trait DeviceKey: Send + Sync {
    /// The raw 32-byte public key, as publishers wrap content keys for it.
    fn public_key(&self) -> [u8; 32];
    /// X25519 of the private key with `peer`'s public key.
    fn agree(&self, peer: &[u8; 32]) -> Result<[u8; 32]>;
}

/// DER prefixes of an X25519 PKCS#8 private key and SubjectPublicKeyInfo (RFC 8410), each
/// followed by the 32 key bytes.
// Only the host's file key reads and writes PKCS#8.
#[cfg(not(soong))]
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];
pub(crate) const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// The 32 key bytes after `prefix` in the PEM block labelled `label` of `text`.
fn pem_key(text: &[u8], label: &str, prefix: &[u8]) -> Result<[u8; 32]> {
    let blocks = crate::crypto::pem::parse_many(text)
        .map_err(|e| err!(VerificationFailed, "not a PEM key: {e}"))?;
    let Some(block) = blocks.first() else {
        bail!(VerificationFailed, "not a PEM key: no PEM block");
    };
    if block.tag != label {
        bail!(
            VerificationFailed,
            "a PEM {} where a {label} was expected",
            block.tag
        );
    }
    block
        .contents
        .strip_prefix(prefix)
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or_else(|| err!(VerificationFailed, "not an X25519 {label}"))
}

/// An X25519 public key from its PEM `PUBLIC KEY` (what `openssl pkey -pubout` writes).
pub fn public_key_from_pem(text: &[u8]) -> Result<[u8; 32]> {
    pem_key(text, "PUBLIC KEY", &SPKI_PREFIX)
}

/// A public key as PEM.
pub fn public_key_to_pem(key: &[u8; 32]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key);
    crate::crypto::pem::encode("PUBLIC KEY", &der)
}

/// The device key in the PEM file `path`: a [`FileDeviceKey`] on hosts. Android builds keep
/// the key in the platform keystore instead: they refuse (20).
pub fn load_file(path: &std::path::Path) -> Result<Box<dyn DeviceKey>> {
    #[cfg(not(soong))]
    return Ok(Box::new(FileDeviceKey::load(path)?));
    #[cfg(soong)]
    bail!(
        VerificationFailed,
        "{}: device keys are KeyMint AGREE_KEY keys on Android, not files",
        path.display()
    )
}

/// A host's device key, kept in a file.
#[cfg(not(soong))]
pub struct FileDeviceKey {
    secret: x25519_dalek::StaticSecret,
}

#[cfg(not(soong))]
impl FileDeviceKey {
    /// Reads a PKCS#8 PEM X25519 private key (20 when it is not one).
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| {
            err!(
                VerificationFailed,
                "reading device key {}: {e}",
                path.display()
            )
        })?;
        let raw = pem_key(&text, "PRIVATE KEY", &PKCS8_PREFIX).map_err(|e| {
            err!(
                VerificationFailed,
                "device key {}: {}",
                path.display(),
                e.message
            )
        })?;
        Ok(FileDeviceKey {
            secret: x25519_dalek::StaticSecret::from(raw),
        })
    }

    /// A new random key, as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String> {
        let mut raw = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .map_err(|_| err!(VerificationFailed, "no randomness"))?;
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        Ok(crate::crypto::pem::encode("PRIVATE KEY", &der))
    }
}

#[cfg(not(soong))]
impl DeviceKey for FileDeviceKey {
    fn public_key(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.secret).to_bytes()
    }

    fn agree(&self, peer: &[u8; 32]) -> Result<[u8; 32]> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
        // A low-order peer point gives an all-zero secret: refuse it, as RFC 7748 advises.
        if !shared.was_contributory() {
            bail!(
                VerificationFailed,
                "the ephemeral key in the key file is a low-order point"
            );
        }
        Ok(shared.to_bytes())
    }
}

// The tests use the host's file key.
#[cfg(all(test, not(soong)))]
mod tests {
    use super::*;
    use crate::feed::crypt::{ContentKey, KeyFile};

    #[test]
    fn wrapped_key_opens_only_with_its_device_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("a.pem"), FileDeviceKey::generate_pem().unwrap()).unwrap();
        std::fs::write(path("b.pem"), FileDeviceKey::generate_pem().unwrap()).unwrap();
        let a = FileDeviceKey::load(&path("a.pem")).unwrap();
        let b = FileDeviceKey::load(&path("b.pem")).unwrap();
        let pem = public_key_to_pem(&a.public_key());
        assert_eq!(public_key_from_pem(pem.as_bytes()).unwrap(), a.public_key());

        let key = ContentKey::generate().unwrap();
        let mut file = KeyFile::new();
        file.add(&key, &a.public_key()).unwrap();
        let file = KeyFile::parse(&serde_json::to_vec(&file).unwrap()).unwrap();
        let opened = file.unwrap_for(&a).unwrap();
        let mut chunk = b"data".to_vec();
        key.seal_chunk(0, true, &mut chunk).unwrap();
        assert_eq!(opened.open_chunk(0, true, &mut chunk).unwrap(), b"data");

        let e = file.unwrap_for(&b).unwrap_err();
        assert!(e.message.contains("not encrypted for this device"), "{e}");
        // An entry naming b's public key but wrapped for a: b cannot unwrap it.
        let mut forged = file.clone();
        forged.recipients[0].device = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b.public_key())
        };
        let e = forged.unwrap_for(&b).unwrap_err();
        assert!(e.message.contains("does not unwrap"), "{e}");
    }
}
