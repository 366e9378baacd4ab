//! [`Crypto`] over the `openssl` crate: BoringSSL in AOSP (`libopenssl`), the system OpenSSL
//! in Cargo builds. Only APIs both libraries have are used.

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey};
use openssl::rsa::{Padding, Rsa};
use openssl::x509::X509;

use super::{strip_zeros, Crypto, SpkiKey, RSA_BITS, SHA256_DIGEST_INFO};

/// BoringSSL (or OpenSSL) through the `openssl` crate.
pub struct BoringSsl;

impl Crypto for BoringSsl {
    fn verify_rsa_sha256_digest(pkcs1_der: &[u8], digest: &[u8; 32], sig: &[u8]) -> bool {
        let Ok(key) = Rsa::public_key_from_der_pkcs1(pkcs1_der) else {
            return false;
        };
        let bits = usize::try_from(key.n().num_bits()).unwrap_or(0);
        if !RSA_BITS.contains(&bits) || sig.len() != key.size() as usize {
            return false;
        }
        // RSA_public_decrypt with PKCS#1 padding checks the 00 01 FF.. 00 framing and returns
        // what it wraps, which must be exactly DigestInfo(SHA-256) || digest.
        let mut out = vec![0u8; key.size() as usize];
        let Ok(len) = key.public_decrypt(sig, &mut out, Padding::PKCS1) else {
            return false;
        };
        let mut expected = SHA256_DIGEST_INFO.to_vec();
        expected.extend_from_slice(digest);
        out.get(..len) == Some(&expected[..])
    }

    fn verify_ecdsa_p256_sha256_digest(point: &[u8], digest: &[u8; 32], sig: &[u8]) -> bool {
        let verified = || -> Result<bool, openssl::error::ErrorStack> {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            let mut ctx = BigNumContext::new()?;
            let point = EcPoint::from_bytes(&group, point, &mut ctx)?;
            let key = EcKey::from_public_key(&group, &point)?;
            key.check_key()?;
            let sig = EcdsaSig::from_der(sig)?;
            sig.verify(digest, &key)
        };
        verified().unwrap_or(false)
    }

    fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, String> {
        let cert = X509::from_der(cert_der).map_err(|e| e.to_string())?;
        let key = cert.public_key().map_err(|e| e.to_string())?;
        key.public_key_to_der().map_err(|e| e.to_string())
    }

    fn parse_spki(spki_der: &[u8]) -> Result<SpkiKey, String> {
        let key = PKey::public_key_from_der(spki_der).map_err(|e| e.to_string())?;
        match key.id() {
            Id::RSA => {
                let rsa = key.rsa().map_err(|e| e.to_string())?;
                Ok(SpkiKey::Rsa {
                    pkcs1_der: rsa.public_key_to_der_pkcs1().map_err(|e| e.to_string())?,
                    n: strip_zeros(&rsa.n().to_vec()),
                    e: strip_zeros(&rsa.e().to_vec()),
                })
            }
            Id::EC => {
                let ec = key.ec_key().map_err(|e| e.to_string())?;
                let curve = ec.group().curve_name();
                if curve != Some(Nid::X9_62_PRIME256V1) {
                    return Ok(SpkiKey::Unsupported(format!(
                        "EC key on curve {curve:?}: only P-256 is supported"
                    )));
                }
                let mut ctx = BigNumContext::new().map_err(|e| e.to_string())?;
                let point = ec
                    .public_key()
                    .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
                    .map_err(|e| e.to_string())?;
                Ok(SpkiKey::EcP256 { point })
            }
            other => Ok(SpkiKey::Unsupported(format!(
                "public key algorithm {other:?} is not supported"
            ))),
        }
    }

    fn rsa_components(pkcs1_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let rsa = Rsa::public_key_from_der_pkcs1(pkcs1_der).map_err(|e| e.to_string())?;
        Ok((
            strip_zeros(&rsa.n().to_vec()),
            strip_zeros(&rsa.e().to_vec()),
        ))
    }
}
