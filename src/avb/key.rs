//! RSA public keys in AVB's own serialisation (`AvbRSAPublicKeyHeader` followed by `n` and `rr`)
//! and in the PEM/DER forms people keep them in.
//!
//! libavb verifies with Montgomery arithmetic driven by the blob's precomputed `n0inv` and `rr`,
//! so a blob whose precomputed values do not belong to its modulus can never verify on a device.
//! [`AvbPublicKey::from_avb_blob`] therefore recomputes and checks them: a key that parses here
//! behaves on the device exactly as `n` with exponent 65537 does in ring.

use num_bigint::BigUint;
use ring::signature::{self, KeyPair, RsaKeyPair};

use crate::crypto::{pem, Crypto, Default as Backend, SpkiKey};

use super::algorithm::Algorithm;
use super::spki;
use crate::error::Result;

/// The only public exponent AVB supports (it is not stored in the blob).
pub const AVB_RSA_EXPONENT: u32 = 65537;

/// An RSA public key of 2048, 4096 or 8192 bits with exponent 65537, held as its canonical AVB
/// blob. Two keys are equal exactly when their blobs are byte-equal, which is how libavb compares
/// a chained partition's key with its chain descriptor.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AvbPublicKey {
    blob: Vec<u8>,
}

impl AvbPublicKey {
    /// Parses an AVB public key blob (`avbtool extract_public_key` output):
    /// `key_num_bits: u32 BE, n0inv: u32 BE, n[key_num_bits/8], rr[key_num_bits/8]`.
    /// Errors (code 28) for other sizes, a modulus that does not use all `key_num_bits` bits or
    /// is even, and precomputed `n0inv`/`rr` values that do not match `n`.
    pub fn from_avb_blob(blob: &[u8]) -> Result<Self> {
        let Some((header, rest)) = blob.split_first_chunk::<8>() else {
            crate::bail!(
                AvbSignature,
                "AVB public key: {} bytes, shorter than its header",
                blob.len()
            );
        };
        let [b0, b1, b2, b3, n0inv @ ..] = *header;
        let bits = u32::from_be_bytes([b0, b1, b2, b3]);
        if !matches!(bits, 2048 | 4096 | 8192) {
            crate::bail!(
                AvbSignature,
                "AVB public key: unsupported key_num_bits {bits}"
            );
        }
        let len = bits as usize / 8;
        if rest.len() != 2 * len {
            crate::bail!(
                AvbSignature,
                "AVB public key: {} bytes, a {bits}-bit key takes {}",
                blob.len(),
                8 + 2 * len
            );
        }
        let key = Self::from_modulus(&rest[..len])?;
        if key.num_bits() != bits {
            crate::bail!(
                AvbSignature,
                "AVB public key: modulus has {} bits, header says {bits}",
                key.num_bits()
            );
        }
        if key.blob[4..8] != n0inv {
            crate::bail!(
                AvbSignature,
                "AVB public key: n0inv does not match the modulus"
            );
        }
        if key.blob[8 + len..] != rest[len..] {
            crate::bail!(
                AvbSignature,
                "AVB public key: rr does not match the modulus"
            );
        }
        Ok(key)
    }

    /// A key from its big-endian modulus (leading zero bytes allowed) and exponent 65537. The
    /// modulus must be odd and exactly 2048, 4096 or 8192 bits long.
    pub fn from_modulus(n: &[u8]) -> Result<Self> {
        let first = n.iter().position(|&b| b != 0).unwrap_or(n.len());
        let n = &n[first..];
        let bits = match n.first() {
            Some(top) => n.len() as u64 * 8 - u64::from(top.leading_zeros()),
            None => 0,
        };
        if !matches!(bits, 2048 | 4096 | 8192) {
            crate::bail!(
                AvbSignature,
                "RSA modulus of {bits} bits; AVB supports 2048, 4096 and 8192"
            );
        }
        let (last, n0) = match n.last_chunk::<4>() {
            Some(chunk) => (chunk[3], u32::from_be_bytes(*chunk)),
            None => (0, 0),
        };
        if last & 1 == 0 {
            crate::bail!(AvbSignature, "RSA modulus is even");
        }
        let modulus = BigUint::from_bytes_be(n);
        // rr = (2^key_num_bits)^2 mod n, as libavb's Montgomery code expects.
        let rr = (BigUint::from(1u8) << (2 * bits as usize)) % &modulus;
        let rr = rr.to_bytes_be();
        let len = n.len();
        let mut blob = Vec::with_capacity(8 + 2 * len);
        blob.extend_from_slice(&(bits as u32).to_be_bytes());
        blob.extend_from_slice(&n0inv(n0).to_be_bytes());
        blob.extend_from_slice(n);
        blob.resize(8 + 2 * len - rr.len(), 0);
        blob.extend_from_slice(&rr);
        Ok(AvbPublicKey { blob })
    }

    /// Reads the first key in PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo), `RSA PUBLIC KEY`
    /// (PKCS#1), `CERTIFICATE` (X.509, its subject key), or the public half of a `PRIVATE KEY`
    /// (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1; private keys only up to 4096 bits, ring's limit).
    /// Other blocks are skipped. Errors (code 28) when no block holds a usable RSA key.
    pub fn from_pem(text: &[u8]) -> Result<Self> {
        let blocks = pem::parse_many(text).map_err(|e| crate::err!(AvbSignature, "PEM: {e}"))?;
        for block in &blocks {
            let der = &block.contents[..];
            match block.tag.as_str() {
                "PUBLIC KEY" => return Self::from_spki_der(der),
                "RSA PUBLIC KEY" => return Self::from_pkcs1_der(der),
                "CERTIFICATE" => {
                    let spki = Backend::certificate_spki(der)
                        .map_err(|e| crate::err!(AvbSignature, "X.509 certificate: {e}"))?;
                    return Self::from_spki_der(&spki);
                }
                "PRIVATE KEY" => {
                    let pair = RsaKeyPair::from_pkcs8(der)
                        .map_err(|e| crate::err!(AvbSignature, "PKCS#8 RSA private key: {e}"))?;
                    return Self::from_key_pair(&pair);
                }
                "RSA PRIVATE KEY" => {
                    let pair = RsaKeyPair::from_der(der)
                        .map_err(|e| crate::err!(AvbSignature, "PKCS#1 RSA private key: {e}"))?;
                    return Self::from_key_pair(&pair);
                }
                _ => continue,
            }
        }
        crate::bail!(
            AvbSignature,
            "PEM: no public key, certificate or RSA private key block"
        )
    }

    /// Parses a DER `SubjectPublicKeyInfo` holding an RSA key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        match Backend::parse_spki(der) {
            Ok(SpkiKey::Rsa { n, e, .. }) => Self::from_rsa_components(&n, &e),
            Ok(_) => crate::bail!(AvbSignature, "SubjectPublicKeyInfo: not an RSA key"),
            Err(e) => crate::bail!(AvbSignature, "SubjectPublicKeyInfo: {e}"),
        }
    }

    /// Parses a DER PKCS#1 `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let (n, e) = Backend::rsa_components(der)
            .map_err(|e| crate::err!(AvbSignature, "RSAPublicKey: {e}"))?;
        Self::from_rsa_components(&n, &e)
    }

    /// The public half of a ring key pair (how a signer learns the key it signs for).
    pub fn from_key_pair(pair: &RsaKeyPair) -> Result<Self> {
        // The DER `RSAPublicKey`, in AOSP's ring 0.17.0-alpha.11 as in later releases (whose
        // `RsaPublicKeyComponents` conversion alpha.11 lacks).
        Self::from_pkcs1_der(pair.public_key().as_ref())
    }

    /// The canonical AVB blob (what a chain descriptor and a vbmeta auxiliary block hold).
    pub fn to_avb_blob(&self) -> &[u8] {
        &self.blob
    }

    /// The key as a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) PEM with LF line ends.
    pub fn to_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.to_spki_der())
    }

    /// The key as DER `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Vec<u8> {
        spki::rsa_spki_der(self.modulus(), &AVB_RSA_EXPONENT.to_be_bytes())
    }

    /// Modulus size in bits: 2048, 4096 or 8192.
    pub fn num_bits(&self) -> u32 {
        (self.modulus().len() * 8) as u32
    }

    /// The big-endian modulus, `num_bits / 8` bytes with the top bit set.
    pub fn modulus(&self) -> &[u8] {
        let len = (self.blob.len() - 8) / 2;
        &self.blob[8..8 + len]
    }

    /// SHA-256 of the AVB blob (`avbtool extract_public_key_digest`), for logs and reports.
    pub fn digest(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &self.blob).as_ref());
        out
    }

    /// Checks a PKCS#1 v1.5 `signature` over `message` made with this key and `algorithm`, whose
    /// key size must be this key's. Error code 28 on any mismatch.
    pub(crate) fn verify(
        &self,
        algorithm: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        let (Some(params), Some(bits)) = (algorithm.verification(), algorithm.key_bits()) else {
            crate::bail!(
                AvbSignature,
                "algorithm {algorithm} has no signature to check"
            );
        };
        if bits != self.num_bits() {
            crate::bail!(
                AvbSignature,
                "{algorithm} needs a {bits}-bit key, this one has {}",
                self.num_bits()
            );
        }
        let components = signature::RsaPublicKeyComponents {
            n: self.modulus(),
            e: &AVB_RSA_EXPONENT.to_be_bytes()[1..],
        };
        components
            .verify(params, message, signature)
            .map_err(|_| crate::err!(AvbSignature, "{algorithm} signature does not verify"))
    }

    fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self> {
        let first = e.iter().position(|&b| b != 0).unwrap_or(e.len());
        if e[first..] != AVB_RSA_EXPONENT.to_be_bytes()[1..] {
            crate::bail!(
                AvbSignature,
                "RSA public exponent is not 65537, which AVB requires"
            );
        }
        Self::from_modulus(n)
    }
}

impl std::fmt::Debug for AvbPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digest = self.digest();
        write!(
            f,
            "AvbPublicKey(rsa{}, sha256:{}..)",
            self.num_bits(),
            crate::hex::Hex(&digest[..8])
        )
    }
}

/// `-1 / n0 mod 2^32` for odd `n0`. Newton's step `inv * (2 - n0 * inv)` doubles the number of
/// correct low bits; `n0` is its own inverse mod 8 (3 bits), so four steps give 48 >= 32 bits.
fn n0inv(n0: u32) -> u32 {
    let mut inv = n0;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    /// An odd modulus with the top bit set: enough for the blob arithmetic (not a real RSA key).
    fn fake_modulus(bits: usize) -> Vec<u8> {
        let mut n: Vec<u8> = (0..bits / 8).map(|i| (i * 37 + 11) as u8).collect();
        n[0] |= 0x80;
        n[bits / 8 - 1] |= 1;
        n
    }

    #[test]
    fn n0inv_is_the_negated_inverse() {
        for n0 in [1u32, 3, 0xffff_ffff, 0x8000_0001, 0x1234_5677, 65537] {
            assert_eq!(n0.wrapping_mul(n0inv(n0)), u32::MAX, "{n0:#x}"); // n0 * (-1/n0) = -1
        }
    }

    #[test]
    fn blob_round_trips_and_precomputed_values_are_checked() {
        for bits in [2048, 4096, 8192] {
            let key = AvbPublicKey::from_modulus(&fake_modulus(bits)).unwrap();
            let blob = key.to_avb_blob().to_vec();
            assert_eq!(blob.len(), 8 + bits / 4);
            assert_eq!(AvbPublicKey::from_avb_blob(&blob).unwrap(), key);
            // rr < n and rr * 2^-2k ... checked independently: rr + q*n = 2^(2*bits).
            let n = BigUint::from_bytes_be(key.modulus());
            let rr = BigUint::from_bytes_be(&blob[8 + bits / 8..]);
            assert!(rr < n);
            assert_eq!(
                ((BigUint::from(1u8) << (2 * bits)) - &rr) % &n,
                BigUint::from(0u8)
            );
            for (at, what) in [(5, "n0inv"), (8 + bits / 8 + 3, "rr")] {
                let mut bad = blob.clone();
                bad[at] ^= 1;
                let e = AvbPublicKey::from_avb_blob(&bad).unwrap_err();
                assert!(e.message.contains(what), "{e}");
            }
        }
    }

    #[test]
    fn rejects_bad_sizes_and_moduli() {
        let blob = AvbPublicKey::from_modulus(&fake_modulus(2048))
            .unwrap()
            .to_avb_blob()
            .to_vec();
        for len in [0, 7, 8, 100, blob.len() - 1] {
            assert_eq!(
                AvbPublicKey::from_avb_blob(&blob[..len]).unwrap_err().code,
                ErrorCode::AvbSignature
            );
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(AvbPublicKey::from_avb_blob(&longer).is_err());
        let mut bits = blob.clone();
        bits[2] = 0x0c; // 3072
        assert!(AvbPublicKey::from_avb_blob(&bits).is_err());
        let mut short_modulus = fake_modulus(2048);
        short_modulus[0] = 0x7f; // 2047 bits
        assert!(AvbPublicKey::from_modulus(&short_modulus).is_err());
        let mut even = fake_modulus(2048);
        even[255] &= !1;
        assert!(AvbPublicKey::from_modulus(&even).is_err());
        // Leading zero bytes (as DER INTEGERs carry) are fine.
        let mut padded = vec![0u8];
        padded.extend(fake_modulus(4096));
        assert_eq!(
            AvbPublicKey::from_modulus(&padded).unwrap().num_bits(),
            4096
        );
        assert!(AvbPublicKey::from_modulus(&[]).is_err());
    }

    #[test]
    fn rejects_other_exponents_and_garbage_pem() {
        let n = fake_modulus(2048);
        assert!(AvbPublicKey::from_rsa_components(&n, &[0, 1, 0, 1]).is_ok());
        assert!(AvbPublicKey::from_rsa_components(&n, &[3]).is_err());
        assert!(AvbPublicKey::from_rsa_components(&n, &[]).is_err());
        assert!(AvbPublicKey::from_pem(b"not pem").is_err());
        assert!(AvbPublicKey::from_pem(b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n").is_err());
        let bad = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(AvbPublicKey::from_pem(bad.as_bytes()).is_err());
    }

    #[test]
    fn pem_round_trips_through_spki() {
        let key = AvbPublicKey::from_modulus(&fake_modulus(4096)).unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(AvbPublicKey::from_pem(pem.as_bytes()).unwrap(), key);
    }
}
