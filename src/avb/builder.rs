//! Writes signed vbmeta images laid out exactly as avbtool's `make_vbmeta_image` lays them out:
//! the auxiliary block holds the descriptors, then the public key, then the key metadata, zero
//! padded to 64; the authentication block holds the hash, then the signature, zero padded to 64.
//! PKCS#1 v1.5 signatures are deterministic, so the same inputs give avbtool's bytes exactly.

use ring::rand::SystemRandom;
use ring::signature::RsaKeyPair;

use super::algorithm::Algorithm;
use super::descriptor::{
    put_u32, put_u64, ChainPartitionDescriptor, Descriptor, HashDescriptor, HashtreeDescriptor,
    MAX_LOCATIONS,
};
use super::image::{HEADER_SIZE, MAGIC, RELEASE_STRING_SIZE};
use super::key::AvbPublicKey;
use crate::error::Result;

/// Something that signs vbmeta images: a key in memory ([`RingSigner`]) or, like avbtool's
/// `--signing_helper`, a key held elsewhere (an HSM, `openssl`, ...).
pub trait VbmetaSigner {
    /// The key whose private half signs; it is embedded in the image.
    fn public_key(&self) -> &AvbPublicKey;
    /// The RSASSA-PKCS1-v1_5 signature of `message` with `algorithm`'s hash, exactly
    /// `algorithm.signature_len()` bytes.
    fn sign(&self, algorithm: Algorithm, message: &[u8]) -> Result<Vec<u8>>;
}

/// Signs with an RSA private key held by ring (2048 to 4096 bits: ring signs no larger keys).
pub struct RingSigner {
    pair: RsaKeyPair,
    public_key: AvbPublicKey,
}

impl RingSigner {
    /// A signer for a PKCS#8 DER private key (`openssl genpkey -algorithm RSA` output, in DER).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| crate::err!(AvbSignature, "RSA private key: {e}"))?;
        Self::from_pair(pair)
    }

    /// A signer for the first `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1) PEM block.
    pub fn from_pem(text: &[u8]) -> Result<Self> {
        let blocks = crate::crypto::pem::parse_many(text)
            .map_err(|e| crate::err!(AvbSignature, "PEM: {e}"))?;
        for block in blocks {
            let pair = match block.tag.as_str() {
                "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&block.contents),
                "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.contents),
                _ => continue,
            };
            let pair = pair.map_err(|e| crate::err!(AvbSignature, "RSA private key: {e}"))?;
            return Self::from_pair(pair);
        }
        crate::bail!(AvbSignature, "PEM: no RSA private key block")
    }

    fn from_pair(pair: RsaKeyPair) -> Result<Self> {
        let public_key = AvbPublicKey::from_key_pair(&pair)?;
        Ok(RingSigner { pair, public_key })
    }
}

impl VbmetaSigner for RingSigner {
    fn public_key(&self) -> &AvbPublicKey {
        &self.public_key
    }

    fn sign(&self, algorithm: Algorithm, message: &[u8]) -> Result<Vec<u8>> {
        let Some(encoding) = algorithm.signing() else {
            crate::bail!(AvbSignature, "algorithm {algorithm} does not sign");
        };
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        // PKCS#1 v1.5 padding takes no randomness; ring's API asks for an RNG regardless.
        self.pair
            .sign(encoding, &SystemRandom::new(), message, &mut signature)
            .map_err(|_| crate::err!(AvbSignature, "RSA signing with {algorithm} failed"))?;
        Ok(signature)
    }
}

/// Builds a vbmeta image. Descriptors are written in the order given (avbtool's
/// `make_vbmeta_image` writes chain descriptors, then properties, then kernel command lines, then
/// included descriptors sorted by type and partition name).
#[derive(Clone, Debug)]
pub struct VbmetaBuilder {
    algorithm: Algorithm,
    rollback_index: u64,
    rollback_index_location: u32,
    flags: u32,
    release_string: String,
    public_key_metadata: Vec<u8>,
    descriptors: Vec<Descriptor>,
    min_libavb_minor: u32,
}

impl VbmetaBuilder {
    /// An image for `algorithm` with rollback index 0 at location 0, flags 0, no descriptors and
    /// release string `abupdate <version>`.
    pub fn new(algorithm: Algorithm) -> Self {
        VbmetaBuilder {
            algorithm,
            rollback_index: 0,
            rollback_index_location: 0,
            flags: 0,
            release_string: concat!("abupdate ", env!("CARGO_PKG_VERSION")).to_string(),
            public_key_metadata: Vec::new(),
            descriptors: Vec::new(),
            min_libavb_minor: 0,
        }
    }

    /// Sets the image's rollback index (default 0).
    pub fn rollback_index(mut self, index: u64) -> Self {
        self.rollback_index = index;
        self
    }

    /// The top-level image's location (0..32); leave 0 in chained images.
    pub fn rollback_index_location(mut self, location: u32) -> Self {
        self.rollback_index_location = location;
        self
    }

    /// `VbmetaImage::FLAG_*` bits; leave 0 in chained images.
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    /// At most 47 bytes (avbtool writes `avbtool 1.3.0`).
    pub fn release_string(mut self, release: impl Into<String>) -> Self {
        self.release_string = release.into();
        self
    }

    /// Sets the public key metadata blob (default empty).
    pub fn public_key_metadata(mut self, metadata: Vec<u8>) -> Self {
        self.public_key_metadata = metadata;
        self
    }

    /// Appends a descriptor.
    pub fn descriptor(mut self, descriptor: Descriptor) -> Self {
        self.descriptors.push(descriptor);
        self
    }

    /// Raises the required libavb minor version above what the contents need (see `build`).
    pub fn min_libavb_minor(mut self, minor: u32) -> Self {
        self.min_libavb_minor = minor;
        self
    }

    /// Writes and signs the image. `signer` must be given exactly when the algorithm signs, and
    /// its key must have the algorithm's size. The required libavb version is 1.0, raised as
    /// avbtool raises it: 1.1 for hash or hashtree descriptors with flags or a persistent
    /// (empty) digest, 1.2 for a non-zero rollback index location, 1.3 for a chain descriptor
    /// with `FLAG_DO_NOT_USE_AB`. Errors are code 28.
    pub fn build(&self, signer: Option<&dyn VbmetaSigner>) -> Result<Vec<u8>> {
        let algorithm = self.algorithm;
        let key = match (algorithm.key_bits(), signer) {
            (None, None) => None,
            (Some(bits), Some(signer)) => {
                let key = signer.public_key();
                if key.num_bits() != bits {
                    crate::bail!(
                        AvbSignature,
                        "{algorithm} needs a {bits}-bit key, the signer has {}",
                        key.num_bits()
                    );
                }
                Some(key)
            }
            (None, Some(_)) => crate::bail!(AvbSignature, "algorithm NONE takes no signer"),
            (Some(_), None) => crate::bail!(AvbSignature, "{algorithm} needs a signer"),
        };
        if self.release_string.len() >= RELEASE_STRING_SIZE
            || self.release_string.as_bytes().contains(&0)
        {
            crate::bail!(
                AvbSignature,
                "release string {:?} does not fit {} bytes",
                self.release_string,
                RELEASE_STRING_SIZE - 1
            );
        }
        if self.rollback_index_location >= MAX_LOCATIONS {
            crate::bail!(
                AvbSignature,
                "rollback index location {} is not below {MAX_LOCATIONS}",
                self.rollback_index_location
            );
        }

        let mut descriptors = Vec::new();
        for descriptor in &self.descriptors {
            descriptors.extend(descriptor.encode()?);
        }
        let key_blob = key.map_or(&[][..], |k| k.to_avb_blob());
        let mut aux = descriptors.clone();
        aux.extend_from_slice(key_blob);
        aux.extend_from_slice(&self.public_key_metadata);
        aux.resize(aux.len().next_multiple_of(64), 0);
        let (hash_len, signature_len) = (algorithm.hash_len(), algorithm.signature_len());
        let auth_size = (hash_len + signature_len).next_multiple_of(64);

        let key_offset = descriptors.len() as u64;
        let mut header = Vec::with_capacity(HEADER_SIZE);
        header.extend_from_slice(&MAGIC);
        put_u32(&mut header, 1);
        put_u32(&mut header, self.required_minor());
        put_u64(&mut header, auth_size as u64);
        put_u64(&mut header, aux.len() as u64);
        put_u32(&mut header, algorithm.type_value());
        put_u64(&mut header, 0); // hash first in the authentication block
        put_u64(&mut header, hash_len as u64);
        put_u64(&mut header, hash_len as u64); // then the signature
        put_u64(&mut header, signature_len as u64);
        put_u64(&mut header, key_offset);
        put_u64(&mut header, key_blob.len() as u64);
        put_u64(&mut header, key_offset + key_blob.len() as u64);
        put_u64(&mut header, self.public_key_metadata.len() as u64);
        put_u64(&mut header, 0); // descriptors first in the auxiliary block
        put_u64(&mut header, descriptors.len() as u64);
        put_u64(&mut header, self.rollback_index);
        put_u32(&mut header, self.flags);
        put_u32(&mut header, self.rollback_index_location);
        header.extend_from_slice(self.release_string.as_bytes());
        header.resize(HEADER_SIZE, 0); // rest of the release string, then 80 reserved bytes

        let mut auth = Vec::with_capacity(auth_size);
        if let (Some(digest), Some(signer)) = (algorithm.digest(), signer) {
            let mut signed = header.clone();
            signed.extend_from_slice(&aux);
            auth.extend_from_slice(ring::digest::digest(digest, &signed).as_ref());
            let signature = signer.sign(algorithm, &signed)?;
            if signature.len() != signature_len {
                crate::bail!(
                    AvbSignature,
                    "signer returned {} bytes, {algorithm} takes {signature_len}",
                    signature.len()
                );
            }
            auth.extend(signature);
        }
        auth.resize(auth_size, 0);

        let mut image = header;
        image.extend(auth);
        image.extend(aux);
        Ok(image)
    }

    fn required_minor(&self) -> u32 {
        let mut minor = self.min_libavb_minor;
        for descriptor in &self.descriptors {
            let needs = match descriptor {
                Descriptor::Hash(HashDescriptor { flags, digest, .. })
                | Descriptor::Hashtree(HashtreeDescriptor {
                    flags,
                    root_digest: digest,
                    ..
                }) if *flags != 0 || digest.is_empty() => 1,
                Descriptor::ChainPartition(ChainPartitionDescriptor { flags, .. })
                    if flags & ChainPartitionDescriptor::FLAG_DO_NOT_USE_AB != 0 =>
                {
                    3
                }
                _ => 0,
            };
            minor = minor.max(needs);
        }
        if self.rollback_index_location > 0 {
            minor = minor.max(2);
        }
        minor
    }
}
