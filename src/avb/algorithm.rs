//! The signature algorithms a vbmeta header can name (`AvbAlgorithmType`).

use ring::{digest, signature};

/// `AvbAlgorithmType`: the hash over `header || auxiliary block` and the RSA key size that signs
/// it with PKCS#1 v1.5. `None` means the image carries no hash, no signature and no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `NONE`: unsigned, no hash.
    None,
    /// `SHA256_RSA2048`.
    Sha256Rsa2048,
    /// `SHA256_RSA4096`.
    Sha256Rsa4096,
    /// `SHA256_RSA8192`.
    Sha256Rsa8192,
    /// `SHA512_RSA2048`.
    Sha512Rsa2048,
    /// `SHA512_RSA4096`.
    Sha512Rsa4096,
    /// `SHA512_RSA8192`.
    Sha512Rsa8192,
}

impl Algorithm {
    /// Every algorithm, in `algorithm_type` order.
    pub const ALL: [Algorithm; 7] = [
        Self::None,
        Self::Sha256Rsa2048,
        Self::Sha256Rsa4096,
        Self::Sha256Rsa8192,
        Self::Sha512Rsa2048,
        Self::Sha512Rsa4096,
        Self::Sha512Rsa8192,
    ];

    /// The algorithm for a header's `algorithm_type`, if libavb knows it.
    pub fn from_type(algorithm_type: u32) -> Option<Self> {
        Self::ALL
            .get(usize::try_from(algorithm_type).ok()?)
            .copied()
    }

    /// The header's `algorithm_type` value.
    pub fn type_value(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Sha256Rsa2048 => 1,
            Self::Sha256Rsa4096 => 2,
            Self::Sha256Rsa8192 => 3,
            Self::Sha512Rsa2048 => 4,
            Self::Sha512Rsa4096 => 5,
            Self::Sha512Rsa8192 => 6,
        }
    }

    /// The name avbtool uses (`--algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Sha256Rsa2048 => "SHA256_RSA2048",
            Self::Sha256Rsa4096 => "SHA256_RSA4096",
            Self::Sha256Rsa8192 => "SHA256_RSA8192",
            Self::Sha512Rsa2048 => "SHA512_RSA2048",
            Self::Sha512Rsa4096 => "SHA512_RSA4096",
            Self::Sha512Rsa8192 => "SHA512_RSA8192",
        }
    }

    /// The RSA modulus size in bits, `None` for the unsigned algorithm.
    pub fn key_bits(self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Sha256Rsa2048 | Self::Sha512Rsa2048 => Some(2048),
            Self::Sha256Rsa4096 | Self::Sha512Rsa4096 => Some(4096),
            Self::Sha256Rsa8192 | Self::Sha512Rsa8192 => Some(8192),
        }
    }

    /// Size of the hash stored in the authentication block (0 for `None`).
    pub fn hash_len(self) -> usize {
        self.digest().map_or(0, crate::crypto::digest_len)
    }

    /// Size of the signature stored in the authentication block (0 for `None`).
    pub fn signature_len(self) -> usize {
        self.key_bits().map_or(0, |bits| bits as usize / 8)
    }

    pub(crate) fn digest(self) -> Option<&'static digest::Algorithm> {
        match self {
            Self::None => None,
            Self::Sha256Rsa2048 | Self::Sha256Rsa4096 | Self::Sha256Rsa8192 => {
                Some(&digest::SHA256)
            }
            Self::Sha512Rsa2048 | Self::Sha512Rsa4096 | Self::Sha512Rsa8192 => {
                Some(&digest::SHA512)
            }
        }
    }

    /// ring's PKCS#1 v1.5 verification parameters. ring checks the DigestInfo prefix and the
    /// `00 01 FF.. 00` padding exactly as libavb's per-algorithm padding table does; the key size
    /// is pinned to the algorithm separately (ring alone accepts any 2048..8192-bit modulus).
    pub(crate) fn verification(self) -> Option<&'static signature::RsaParameters> {
        match self {
            Self::None => None,
            Self::Sha256Rsa2048 | Self::Sha256Rsa4096 | Self::Sha256Rsa8192 => {
                Some(&signature::RSA_PKCS1_2048_8192_SHA256)
            }
            Self::Sha512Rsa2048 | Self::Sha512Rsa4096 | Self::Sha512Rsa8192 => {
                Some(&signature::RSA_PKCS1_2048_8192_SHA512)
            }
        }
    }

    /// ring's PKCS#1 v1.5 signing encoding, for the builder.
    #[cfg(feature = "host-tools")]
    pub(crate) fn signing(self) -> Option<&'static dyn signature::RsaEncoding> {
        match self {
            Self::None => None,
            Self::Sha256Rsa2048 | Self::Sha256Rsa4096 | Self::Sha256Rsa8192 => {
                Some(&signature::RSA_PKCS1_SHA256)
            }
            Self::Sha512Rsa2048 | Self::Sha512Rsa4096 | Self::Sha512Rsa8192 => {
                Some(&signature::RSA_PKCS1_SHA512)
            }
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_values_round_trip_and_sizes_match_libavb() {
        for (i, alg) in Algorithm::ALL.iter().enumerate() {
            assert_eq!(alg.type_value() as usize, i);
            assert_eq!(Algorithm::from_type(alg.type_value()), Some(*alg));
        }
        assert_eq!(Algorithm::from_type(7), None);
        assert_eq!(Algorithm::from_type(u32::MAX), None);
        // avb_crypto.h: hash_size 32/64, signature_size = key bits / 8.
        assert_eq!(
            (Algorithm::None.hash_len(), Algorithm::None.signature_len()),
            (0, 0)
        );
        assert_eq!(
            (
                Algorithm::Sha256Rsa4096.hash_len(),
                Algorithm::Sha256Rsa4096.signature_len()
            ),
            (32, 512)
        );
        assert_eq!(
            (
                Algorithm::Sha512Rsa8192.hash_len(),
                Algorithm::Sha512Rsa8192.signature_len()
            ),
            (64, 1024)
        );
        assert_eq!(Algorithm::Sha512Rsa2048.name(), "SHA512_RSA2048");
    }
}
