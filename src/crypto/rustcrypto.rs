//! [`Crypto`] over the RustCrypto crates (`rsa`, `p256`) and `x509-parser`: the host backend.
//! AOSP carries none of them, so Soong builds use [`super::BoringSsl`].

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::Pkcs1v15Sign;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{strip_zeros, Crypto, SpkiKey, RSA_BITS, SHA256_DIGEST_INFO};

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_PRIME256V1: &str = "1.2.840.10045.3.1.7";

/// The RustCrypto crates and x509-parser.
pub struct RustCrypto;

impl Crypto for RustCrypto {
    fn verify_rsa_sha256_digest(pkcs1_der: &[u8], digest: &[u8; 32], sig: &[u8]) -> bool {
        let Ok(key) = rsa::PublicKey::from_pkcs1_der(pkcs1_der) else {
            return false;
        };
        let bits = rsa::traits::PublicKeyParts::n(&key).bit_width() as usize;
        if !RSA_BITS.contains(&bits) {
            return false;
        }
        let mut hashed = SHA256_DIGEST_INFO.to_vec();
        hashed.extend_from_slice(digest);
        key.verify(Pkcs1v15Sign::new_unprefixed(), &hashed, sig)
            .is_ok()
    }

    fn verify_ecdsa_p256_sha256_digest(point: &[u8], digest: &[u8; 32], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
            return false;
        };
        let Ok(sig) = p256::ecdsa::DerSignature::try_from(sig) else {
            return false;
        };
        key.verify_prehash(digest, &sig).is_ok()
    }

    fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, String> {
        let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
        Ok(cert.public_key().raw.to_vec())
    }

    fn parse_spki(spki_der: &[u8]) -> Result<SpkiKey, String> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes", rest.len()));
        }
        let alg = spki.algorithm.algorithm.to_id_string();
        match alg.as_str() {
            OID_RSA => {
                let pkcs1_der = spki.subject_public_key.data.to_vec();
                let (n, e) = Self::rsa_components(&pkcs1_der)?;
                Ok(SpkiKey::Rsa { pkcs1_der, n, e })
            }
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string());
                if curve.as_deref() != Some(OID_PRIME256V1) {
                    return Ok(SpkiKey::Unsupported(format!(
                        "EC key on curve {curve:?}: only P-256 is supported"
                    )));
                }
                Ok(SpkiKey::EcP256 {
                    point: spki.subject_public_key.data.to_vec(),
                })
            }
            other => Ok(SpkiKey::Unsupported(format!(
                "public key algorithm {other} is not supported"
            ))),
        }
    }

    fn rsa_components(pkcs1_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let (rest, key) = RSAPublicKey::from_der(pkcs1_der).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes", rest.len()));
        }
        Ok((strip_zeros(key.modulus), strip_zeros(key.exponent)))
    }
}
