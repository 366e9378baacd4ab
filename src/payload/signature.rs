//! Payload and metadata signatures: verification against [`TrustedKeys`], and signing for
//! `abupdate payload build`.
//!
//! Both signatures are PKCS#1 v1.5 (or ECDSA P-256) over SHA-256. The metadata signature covers
//! bytes the engine holds in memory, so `ring` verifies it directly. The payload signature covers
//! the whole streamed payload (minus the metadata signature), which is never in memory at once:
//! only its digest is, and `ring` has no pre-hashed API, so that check goes through the build's
//! [`crate::crypto`] backend (BoringSSL under Soong).

use protobuf::Message;
#[cfg(feature = "host-tools")]
use rsa::Pkcs1v15Sign;

use super::keys::{PublicKey, TrustedKeys};
use super::proto::update_metadata as pb;
use crate::error::Result;
use crate::{bail, err};

pub use crate::crypto::SHA256_DIGEST_INFO;

/// Signatures are a few hundred bytes; more than this many is an attack, not a payload.
const MAX_SIGNATURES: usize = 16;

/// The signatures in a `Signatures` message, each cut to its unpadded size.
#[derive(Debug, Clone)]
pub struct SignatureSet(Vec<Vec<u8>>);

impl SignatureSet {
    /// Parses a `Signatures` message (`MalformedPayload` when it is not one, or holds too many).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        super::decode_cost::check(bytes, super::decode_cost::Kind::Signatures)?;
        let msg = pb::Signatures::parse_from_bytes(bytes).map_err(|e| {
            err!(
                MalformedPayload,
                "signature blob is not a valid protobuf: {e}"
            )
        })?;
        if msg.signatures.len() > MAX_SIGNATURES {
            bail!(
                MalformedPayload,
                "{} signatures exceed {MAX_SIGNATURES}",
                msg.signatures.len()
            );
        }
        let sigs = msg
            .signatures
            .iter()
            .map(|s| {
                let data = s.data();
                match s.unpadded_signature_size {
                    Some(n) if (n as usize) <= data.len() => data[..n as usize].to_vec(),
                    _ => data.to_vec(),
                }
            })
            .collect();
        Ok(SignatureSet(sigs))
    }

    /// One detached signature as it is (an update feed's `feed.json.sig`).
    pub fn single(signature: Vec<u8>) -> Self {
        SignatureSet(vec![signature])
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any signature verifies `message` under any key (with `ring`).
    pub fn verifies_message(&self, keys: &TrustedKeys, message: &[u8]) -> bool {
        use ring::signature::{
            UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256,
        };
        self.0.iter().any(|sig| {
            keys.keys().iter().any(|key| match key {
                PublicKey::Rsa { pkcs1_der } => {
                    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1_der)
                        .verify(message, sig)
                        .is_ok()
                }
                PublicKey::EcdsaP256 { point } => {
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                        .verify(message, sig)
                        .is_ok()
                }
            })
        })
    }

    /// Whether any signature verifies the SHA-256 `digest` under any key.
    pub fn verifies_digest(&self, keys: &TrustedKeys, digest: &[u8; 32]) -> bool {
        self.0.iter().any(|sig| {
            keys.keys()
                .iter()
                .any(|key| verify_digest(key, digest, sig))
        })
    }
}

fn verify_digest(key: &PublicKey, digest: &[u8; 32], sig: &[u8]) -> bool {
    use crate::crypto::{Crypto, Default as Backend};
    match key {
        PublicKey::Rsa { pkcs1_der } => Backend::verify_rsa_sha256_digest(pkcs1_der, digest, sig),
        PublicKey::EcdsaP256 { point } => {
            Backend::verify_ecdsa_p256_sha256_digest(point, digest, sig)
        }
    }
}

/// Checks a signature blob against the trusted keys: a missing or wrong signature is fatal
/// (`code`), and so is having no key at all (29), unless unsigned payloads were explicitly
/// accepted ([`TrustedKeys::accept_unsigned`]), the one case where nothing is checked.
pub fn check(
    keys: &TrustedKeys,
    blob: Option<&[u8]>,
    what: &str,
    code: crate::ErrorCode,
    verifies: impl Fn(&SignatureSet) -> bool,
) -> Result<()> {
    keys.require()?;
    if keys.accepts_unsigned() {
        return Ok(());
    }
    let Some(blob) = blob.filter(|b| !b.is_empty()) else {
        return Err(crate::Error::new(
            code,
            format!("{what} is not signed, but a trusted key is configured"),
        ));
    };
    let set = SignatureSet::parse(blob).map_err(|e| crate::Error::new(code, e.message))?;
    if set.is_empty() {
        return Err(crate::Error::new(
            code,
            format!("{what} carries no signature"),
        ));
    }
    if !verifies(&set) {
        return Err(crate::Error::new(
            code,
            format!(
                "none of the {} {what} signature(s) verifies with a trusted key",
                set.len()
            ),
        ));
    }
    Ok(())
}

/// An RSA private key that signs payloads (`abupdate payload build --key`).
#[cfg(feature = "host-tools")]
pub struct Signer {
    key: rsa::PrivateKey,
}

#[cfg(feature = "host-tools")]
impl Signer {
    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`, what `openssl genpkey` writes) or PKCS#1.
    pub fn from_pem(text: &str) -> Result<Self> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::PrivateKey::from_pkcs8_pem(text)
            .or_else(|_| rsa::PrivateKey::from_pkcs1_pem(text))
            .map_err(|e| {
                err!(
                    VerificationFailed,
                    "not an RSA private key in PEM form: {e}"
                )
            })?;
        Ok(Signer { key })
    }

    /// A new random RSA key of `bits` bits (for the demo and tests; real keys come from a
    /// signing server).
    pub fn generate(bits: usize) -> Result<Self> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
            .map_err(|e| err!(VerificationFailed, "generating an RSA key: {e}"))?;
        Ok(Signer { key })
    }

    /// The private key as PKCS#8 PEM, what [`Signer::from_pem`] reads.
    pub fn private_key_pem(&self) -> Result<String> {
        use rsa::pkcs8::EncodePrivateKey;
        self.key
            .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| err!(VerificationFailed, "encoding private key: {e}"))
    }

    /// The public half, as a PEM `PUBLIC KEY` that [`TrustedKeys`] loads.
    pub fn public_key_pem(&self) -> Result<String> {
        use rsa::pkcs8::EncodePublicKey;
        self.key
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| err!(VerificationFailed, "encoding public key: {e}"))
    }

    /// Length of every signature this key makes.
    pub fn signature_len(&self) -> usize {
        rsa::traits::PublicKeyParts::size(&self.key)
    }

    /// A PKCS#1 v1.5 signature of a SHA-256 digest.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>> {
        let mut hashed = SHA256_DIGEST_INFO.to_vec();
        hashed.extend_from_slice(digest);
        self.key
            .sign(Pkcs1v15Sign::new_unprefixed(), &hashed)
            .map_err(|e| err!(VerificationFailed, "signing failed: {e}"))
    }
}

/// Encodes signatures as the `Signatures` message payloads carry.
pub fn encode_signatures(sigs: &[Vec<u8>]) -> Vec<u8> {
    let mut msg = pb::Signatures::new();
    for sig in sigs {
        let mut s = pb::signatures::Signature::new();
        s.set_data(sig.clone());
        s.set_unpadded_signature_size(sig.len() as u32);
        msg.signatures.push(s);
    }
    // Writing a message to a Vec cannot fail.
    msg.write_to_bytes().unwrap_or_default()
}
