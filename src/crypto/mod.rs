//! The public-key primitives the device needs from a crypto library, behind one small trait so
//! the same engine code runs on both builds:
//! - [`Crypto`]: pre-hashed RSA PKCS#1 v1.5 and ECDSA P-256 verification (the payload
//!   signature covers a digest of the streamed payload, never held whole), and reading the
//!   public key of an X.509 certificate or a `SubjectPublicKeyInfo`;
//! - [`BoringSsl`]: through the `openssl` crate, which is AOSP's binding of BoringSSL; the
//!   device backend under Soong (`--cfg soong`). Cargo builds it over the host's OpenSSL, so
//!   the host tests run it too;
//! - `RustCrypto` (hosts only): the `rsa`, `p256` and `x509-parser` crates, which AOSP lacks.
//!
//! [`Default`] is the backend the build selects. Message signatures (whole bytes in memory)
//! and digests go through `ring`, which both builds have; PEM is our own ([`pem`]).

mod boringssl;
pub mod pem;
#[cfg(not(soong))]
mod rustcrypto;
pub mod sha256;

pub use boringssl::BoringSsl;
#[cfg(not(soong))]
pub use rustcrypto::RustCrypto;

/// The backend this build uses: BoringSSL under Soong, the RustCrypto crates elsewhere.
#[cfg(soong)]
pub type Default = BoringSsl;
/// The backend this build uses: BoringSSL under Soong, the RustCrypto crates elsewhere.
#[cfg(not(soong))]
pub type Default = RustCrypto;

/// DER `DigestInfo` prefix for SHA-256, prepended to the digest inside PKCS#1 v1.5 padding.
pub const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// RSA key sizes accepted for verification: `ring`'s `RSA_PKCS1_2048_8192_SHA256` policy.
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A public key read from a `SubjectPublicKeyInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpkiKey {
    /// An RSA key: its DER `RSAPublicKey` (PKCS#1) and big-endian modulus and exponent.
    Rsa {
        /// The key as DER `RSAPublicKey ::= SEQUENCE { n, e }`.
        pkcs1_der: Vec<u8>,
        /// The modulus, big-endian, without leading zeros.
        n: Vec<u8>,
        /// The public exponent, big-endian, without leading zeros.
        e: Vec<u8>,
    },
    /// A P-256 key as an uncompressed SEC1 point (65 bytes).
    EcP256 {
        /// `04 || x || y`.
        point: Vec<u8>,
    },
    /// A well-formed key of another algorithm or curve, named in the message.
    Unsupported(String),
}

/// One crypto backend. Failures are plain messages: callers add what was being read and
/// their status code.
pub trait Crypto {
    /// Whether `sig` is a PKCS#1 v1.5 signature of the SHA-256 `digest` under the RSA key
    /// `pkcs1_der` (DER `RSAPublicKey`, [`RSA_BITS`] in size).
    fn verify_rsa_sha256_digest(pkcs1_der: &[u8], digest: &[u8; 32], sig: &[u8]) -> bool;

    /// Whether `sig` (DER `ECDSA-Sig-Value`) signs the SHA-256 `digest` under the P-256 key
    /// `point` (SEC1 encoded).
    fn verify_ecdsa_p256_sha256_digest(point: &[u8], digest: &[u8; 32], sig: &[u8]) -> bool;

    /// The DER `SubjectPublicKeyInfo` of a DER X.509 certificate.
    fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, String>;

    /// The key in a DER `SubjectPublicKeyInfo`: RSA, P-256, or [`SpkiKey::Unsupported`] for
    /// other algorithms and curves.
    fn parse_spki(spki_der: &[u8]) -> Result<SpkiKey, String>;

    /// Modulus and exponent (big-endian) of a DER `RSAPublicKey`.
    fn rsa_components(pkcs1_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String>;
}

/// The digest length of a `ring` algorithm. AOSP 15's ring (0.17.0-alpha.11) has
/// `output_len` as a field, later releases as a method: hashing nothing works with both.
pub fn digest_len(algorithm: &'static ring::digest::Algorithm) -> usize {
    ring::digest::digest(algorithm, &[]).as_ref().len()
}

/// `bytes` without leading zero bytes (DER integers carry one before a set top bit).
pub(crate) fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

#[cfg(all(test, not(soong)))]
mod tests;
