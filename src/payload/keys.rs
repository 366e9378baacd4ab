//! Trusted keys for payload signatures: PEM public keys, X.509 certificates and AOSP's
//! `otacerts.zip` (a zip of `*.x509.pem` certificates, `/system/etc/security/otacerts.zip`).

use std::io::{Cursor, Read};

use crate::crypto::{pem, Crypto, Default as Backend, SpkiKey};
use crate::error::Result;
use crate::{bail, err};

/// One trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An RSA key as a DER `RSAPublicKey` (PKCS#1), the form `ring` and `rsa` take.
    Rsa {
        /// The `RSAPublicKey` DER.
        pkcs1_der: Vec<u8>,
    },
    /// A P-256 key as an uncompressed SEC1 point.
    EcdsaP256 {
        /// The 65-byte point (`04 || x || y`).
        point: Vec<u8>,
    },
}

/// The set of keys a payload may be signed with; one valid signature from any of them suffices.
///
/// Trust fails closed: an empty set (the default) verifies nothing, so every payload is refused
/// with 29. Only [`TrustedKeys::accept_unsigned`], asked for explicitly, skips the signature
/// checks: `abupdated --allow-unsigned` on a debuggable build, `abupdate apply --device
/// --allow-unsigned` on a host, and tools that only print a manifest.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
    accept_unsigned: bool,
}

impl TrustedKeys {
    /// No key: every payload is refused (29) until keys are added.
    pub fn none() -> Self {
        Self::default()
    }

    /// No key, and payloads are taken without their signatures being checked. For engineering
    /// builds and host tools only, and only when a person asked for it.
    pub fn accept_unsigned() -> Self {
        TrustedKeys {
            keys: Vec::new(),
            accept_unsigned: true,
        }
    }

    /// Whether signatures are skipped: no key, and unsigned payloads were explicitly allowed.
    pub fn accepts_unsigned(&self) -> bool {
        self.keys.is_empty() && self.accept_unsigned
    }

    /// Fails with 29 when nothing could verify a payload and unsigned payloads were not
    /// explicitly allowed: the check every apply starts with.
    pub fn require(&self) -> Result<()> {
        if self.keys.is_empty() && !self.accept_unsigned {
            bail!(
                NoTrustedKey,
                "no trusted payload key is configured, and unsigned payloads are not allowed"
            );
        }
        Ok(())
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Trusts `key` too.
    pub fn add(&mut self, key: PublicKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// The keys of a key file's content: PEM (public keys and/or certificates, any number) or
    /// an `otacerts.zip`; `name` says which file in messages. Content that holds no usable
    /// public key fails with 29: a key the operator named (or the platform's `otacerts.zip`)
    /// that cannot be used is never taken for "no keys". Reading the file is the adapter's:
    /// [`crate::key_file::load`].
    pub fn from_key_file(name: &str, bytes: &[u8]) -> Result<Self> {
        let mut keys = TrustedKeys::none();
        keys.add_bytes(bytes)
            .map_err(|e| err!(NoTrustedKey, "key file {name}: {}", e.message))?;
        if keys.is_empty() {
            bail!(
                NoTrustedKey,
                "key file {name} holds no public key or certificate"
            );
        }
        Ok(keys)
    }

    /// Adds every key of `other`.
    pub fn extend(&mut self, other: TrustedKeys) {
        for key in other.keys {
            self.add(key);
        }
    }

    /// Adds the keys in a PEM file or zip archive held in memory.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.starts_with(b"PK\x03\x04") {
            self.add_zip(bytes)
        } else {
            self.add_pem(bytes)
        }
    }

    fn add_zip(&mut self, bytes: &[u8]) -> Result<()> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| err!(MalformedPayload, "not a readable zip: {e}"))?;
        let before = self.keys.len();
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| err!(MalformedPayload, "zip entry {i}: {e}"))?;
            if !entry.is_file() || !entry.name().ends_with(".pem") {
                continue;
            }
            // Certificates are a few KiB; refuse anything that claims to be huge.
            if entry.size() > 1 << 20 {
                bail!(MalformedPayload, "zip entry {} is too large", entry.name());
            }
            let mut pem = Vec::new();
            entry
                .read_to_end(&mut pem)
                .map_err(|e| err!(MalformedPayload, "zip entry {}: {e}", entry.name()))?;
            self.add_pem(&pem)?;
        }
        if self.keys.len() == before {
            bail!(MalformedPayload, "zip holds no *.pem certificate");
        }
        Ok(())
    }

    fn add_pem(&mut self, bytes: &[u8]) -> Result<()> {
        let blocks = pem::parse_many(bytes).map_err(|e| err!(MalformedPayload, "bad PEM: {e}"))?;
        if blocks.is_empty() {
            bail!(MalformedPayload, "no PEM block found");
        }
        for block in blocks {
            let key = match block.tag.as_str() {
                "CERTIFICATE" => {
                    let spki = Backend::certificate_spki(&block.contents)
                        .map_err(|e| err!(MalformedPayload, "bad certificate: {e}"))?;
                    from_spki(&spki)?
                }
                "PUBLIC KEY" => from_spki(&block.contents)?,
                "RSA PUBLIC KEY" => PublicKey::Rsa {
                    pkcs1_der: block.contents,
                },
                // Private keys and other blocks may share a file with the public part; skip them.
                _ => continue,
            };
            self.add(key);
        }
        Ok(())
    }
}

fn from_spki(spki_der: &[u8]) -> Result<PublicKey> {
    match Backend::parse_spki(spki_der) {
        Ok(SpkiKey::Rsa { pkcs1_der, .. }) => Ok(PublicKey::Rsa { pkcs1_der }),
        Ok(SpkiKey::EcP256 { point }) => Ok(PublicKey::EcdsaP256 { point }),
        Ok(SpkiKey::Unsupported(what)) => bail!(Unsupported, "{what}"),
        Err(e) => bail!(MalformedPayload, "bad public key: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    /// No key refuses; only the explicit constructor skips signatures, and a key added to it
    /// brings them back.
    #[test]
    fn trust_fails_closed() {
        let err = TrustedKeys::none().require().unwrap_err();
        assert_eq!(err.code, ErrorCode::NoTrustedKey);
        assert_eq!(
            TrustedKeys::default().require().unwrap_err().code,
            ErrorCode::NoTrustedKey
        );
        let unsigned = TrustedKeys::accept_unsigned();
        assert!(unsigned.require().is_ok() && unsigned.accepts_unsigned());
        let mut keyed = TrustedKeys::accept_unsigned();
        keyed.add(PublicKey::EcdsaP256 { point: vec![4; 65] });
        assert!(keyed.require().is_ok() && !keyed.accepts_unsigned());
    }

    #[test]
    fn a_key_file_without_a_public_key_is_an_error() {
        let private_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = TrustedKeys::from_key_file("private.pem", private_only).unwrap_err();
        assert_eq!(err.code, ErrorCode::NoTrustedKey, "{err}");
        assert!(err.message.contains("holds no public key"), "{err}");
    }
}
