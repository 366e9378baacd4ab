//! The vbmeta image (`AvbVBMetaImageHeader`, then the authentication and auxiliary blocks), parsed
//! into typed fields. Parsing checks structure only; [`VbmetaImage::verify`] checks the signature.

use std::ops::Range;

use super::algorithm::Algorithm;
use super::descriptor::{parse_descriptors, ChainPartitionDescriptor, Descriptor, MAX_LOCATIONS};
use super::key::AvbPublicKey;
use super::reader::{sub_range, BeReader};
use crate::error::Result;

/// Size of `AvbVBMetaImageHeader`.
pub const HEADER_SIZE: usize = 256;
/// Size of the NUL-terminated `release_string` field.
pub const RELEASE_STRING_SIZE: usize = 48;
/// `AVB_MAGIC`.
pub const MAGIC: [u8; 4] = *b"AVB0";

/// A structurally valid vbmeta image. Every offset and size in its header lies inside its block,
/// both block sizes are multiples of 64, the algorithm is known, a signed image's hash, signature
/// and key have the sizes its algorithm demands (an unsigned one has none), and every descriptor
/// parsed. Nothing here is trusted until [`VbmetaImage::verify`] (or `verify_chain`) says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VbmetaImage {
    required_libavb_version: (u32, u32),
    algorithm: Algorithm,
    rollback_index: u64,
    rollback_index_location: u32,
    flags: u32,
    release_string: String,
    public_key: Option<AvbPublicKey>,
    public_key_metadata: Vec<u8>,
    descriptors: Vec<Descriptor>,
    /// Exactly `header || auth || aux`, without whatever followed the image in the input.
    raw: Vec<u8>,
    /// Where the auxiliary block starts in `raw` (`HEADER_SIZE + auth block size`).
    aux_start: usize,
    hash: Range<usize>,
    signature: Range<usize>,
}

impl VbmetaImage {
    /// `AVB_VBMETA_IMAGE_FLAGS_HASHTREE_DISABLED`.
    pub const FLAG_HASHTREE_DISABLED: u32 = 1 << 0;
    /// `AVB_VBMETA_IMAGE_FLAGS_VERIFICATION_DISABLED`: the bootloader then parses no descriptors.
    pub const FLAG_VERIFICATION_DISABLED: u32 = 1 << 1;

    /// Parses a vbmeta image at the start of `bytes` (trailing bytes, e.g. the zero padding of a
    /// vbmeta partition, are ignored). Any inconsistency is an error with code 28
    /// (`AvbSignature`), not 21: a vbmeta the bootloader cannot parse is as unacceptable to AVB as
    /// one with a bad signature, and the payload carrying it may itself be well-formed.
    ///
    /// Beyond libavb's own header checks (`avb_vbmeta_image_verify`), this also requires the
    /// descriptors to lie inside the auxiliary block (libavb only bounds them by the buffer), an
    /// unsigned image to carry no hash, signature or key, and a header rollback index location
    /// below 32 (libavb refuses others after verifying).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let Some(header) = bytes.get(..HEADER_SIZE) else {
            crate::bail!(
                AvbSignature,
                "vbmeta: {} bytes, shorter than its {HEADER_SIZE}-byte header",
                bytes.len()
            );
        };
        let mut r = BeReader::new(header, "vbmeta header");
        if r.array::<4>()? != MAGIC {
            crate::bail!(AvbSignature, "vbmeta: no AVB0 magic");
        }
        let version = (r.u32()?, r.u32()?);
        if version.0 != 1 {
            crate::bail!(
                AvbSignature,
                "vbmeta: requires libavb {}.{}, only major version 1 exists",
                version.0,
                version.1
            );
        }
        let auth_size = r.u64()?;
        let aux_size = r.u64()?;
        let algorithm_type = r.u32()?;
        let (hash_offset, hash_size) = (r.u64()?, r.u64()?);
        let (signature_offset, signature_size) = (r.u64()?, r.u64()?);
        let (key_offset, key_size) = (r.u64()?, r.u64()?);
        let (metadata_offset, metadata_size) = (r.u64()?, r.u64()?);
        let (descriptors_offset, descriptors_size) = (r.u64()?, r.u64()?);
        let rollback_index = r.u64()?;
        let flags = r.u32()?;
        let rollback_index_location = r.u32()?;
        let release = r.array::<RELEASE_STRING_SIZE>()?;
        // The 80 reserved bytes follow; they are signed like the rest of the header.

        if release[RELEASE_STRING_SIZE - 1] != 0 {
            crate::bail!(AvbSignature, "vbmeta: release string is not NUL-terminated");
        }
        let release_end = release
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(RELEASE_STRING_SIZE);
        let release_string = String::from_utf8_lossy(&release[..release_end]).into_owned();

        if auth_size % 64 != 0 || aux_size % 64 != 0 {
            crate::bail!(
                AvbSignature,
                "vbmeta: block sizes {auth_size} and {aux_size} are not multiples of 64"
            );
        }
        let total = (HEADER_SIZE as u64)
            .checked_add(auth_size)
            .and_then(|t| t.checked_add(aux_size))
            .filter(|&t| t <= bytes.len() as u64)
            .ok_or_else(|| {
                crate::err!(
                    AvbSignature,
                    "vbmeta: header and blocks of {auth_size} + {aux_size} bytes exceed the {} bytes given",
                    bytes.len()
                )
            })?;
        // Fits usize: total <= bytes.len().
        let raw = bytes[..total as usize].to_vec();
        let aux_start = HEADER_SIZE + auth_size as usize;
        let auth = &raw[HEADER_SIZE..aux_start];
        let aux = &raw[aux_start..];

        let hash = sub_range(
            auth,
            hash_offset,
            hash_size,
            "vbmeta hash",
            "authentication block",
        )?;
        let signature = sub_range(
            auth,
            signature_offset,
            signature_size,
            "vbmeta signature",
            "authentication block",
        )?;
        let key = sub_range(
            aux,
            key_offset,
            key_size,
            "vbmeta public key",
            "auxiliary block",
        )?;
        let metadata = match metadata_size {
            0 => &[][..],
            _ => sub_range(
                aux,
                metadata_offset,
                metadata_size,
                "vbmeta public key metadata",
                "auxiliary block",
            )?,
        };
        let descriptors = sub_range(
            aux,
            descriptors_offset,
            descriptors_size,
            "vbmeta descriptors",
            "auxiliary block",
        )?;

        let algorithm = Algorithm::from_type(algorithm_type).ok_or_else(|| {
            crate::err!(
                AvbSignature,
                "vbmeta: unknown algorithm type {algorithm_type}"
            )
        })?;
        let public_key = match algorithm.key_bits() {
            None => {
                if !hash.is_empty() || !signature.is_empty() || !key.is_empty() {
                    crate::bail!(
                        AvbSignature,
                        "vbmeta: algorithm NONE but the image carries a hash, signature or key"
                    );
                }
                None
            }
            Some(bits) => {
                if hash.len() != algorithm.hash_len()
                    || signature.len() != algorithm.signature_len()
                {
                    crate::bail!(
                        AvbSignature,
                        "vbmeta: {algorithm} needs a {}-byte hash and {}-byte signature, header says {} and {}",
                        algorithm.hash_len(),
                        algorithm.signature_len(),
                        hash.len(),
                        signature.len()
                    );
                }
                let key = AvbPublicKey::from_avb_blob(key)
                    .map_err(|e| crate::err!(AvbSignature, "vbmeta public key: {}", e.message))?;
                if key.num_bits() != bits {
                    crate::bail!(
                        AvbSignature,
                        "vbmeta: {algorithm} signed with a {}-bit key",
                        key.num_bits()
                    );
                }
                Some(key)
            }
        };
        if rollback_index_location >= MAX_LOCATIONS {
            crate::bail!(
                AvbSignature,
                "vbmeta: rollback index location {rollback_index_location} is not below {MAX_LOCATIONS}"
            );
        }
        let descriptors = parse_descriptors(descriptors)
            .map_err(|e| crate::err!(AvbSignature, "vbmeta: {}", e.message))?;
        let public_key_metadata = metadata.to_vec();
        // Both were bounds-checked inside the authentication block above, so these cannot overflow.
        let hash =
            HEADER_SIZE + hash_offset as usize..HEADER_SIZE + (hash_offset + hash_size) as usize;
        let signature = HEADER_SIZE + signature_offset as usize
            ..HEADER_SIZE + (signature_offset + signature_size) as usize;

        Ok(VbmetaImage {
            required_libavb_version: version,
            algorithm,
            rollback_index,
            rollback_index_location,
            flags,
            release_string,
            public_key,
            public_key_metadata,
            descriptors,
            raw,
            aux_start,
            hash,
            signature,
        })
    }

    /// `(major, minor)` libavb version the image requires.
    pub fn required_libavb_version(&self) -> (u32, u32) {
        self.required_libavb_version
    }

    /// The signing algorithm (`NONE` for an unsigned image).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The image's rollback index.
    pub fn rollback_index(&self) -> u64 {
        self.rollback_index
    }

    /// The header's location. Only meaningful in a top-level image: a chained image's location
    /// comes from its chain descriptor (and its header field should be 0).
    pub fn rollback_index_location(&self) -> u32 {
        self.rollback_index_location
    }

    /// `FLAG_*` bits; must be 0 in a chained image.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The release string, e.g. `avbtool 1.3.0`.
    pub fn release_string(&self) -> &str {
        &self.release_string
    }

    /// The key embedded in the auxiliary block (`None` exactly when the algorithm is `None`).
    /// Embedded does not mean trusted: compare it with the key you expect.
    pub fn public_key(&self) -> Option<&AvbPublicKey> {
        self.public_key.as_ref()
    }

    /// The public key metadata blob (`--public_key_metadata`), often empty.
    pub fn public_key_metadata(&self) -> &[u8] {
        &self.public_key_metadata
    }

    /// The descriptors, in image order.
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// The chain partition descriptors, in image order.
    pub fn chain_partitions(&self) -> impl Iterator<Item = &ChainPartitionDescriptor> {
        self.descriptors.iter().filter_map(|d| match d {
            Descriptor::ChainPartition(c) => Some(c),
            _ => None,
        })
    }

    /// The chain descriptor for `partition` (name without slot suffix), if any.
    pub fn chain_partition(&self, partition: &str) -> Option<&ChainPartitionDescriptor> {
        self.chain_partitions()
            .find(|c| c.partition_name == partition)
    }

    /// The value of the first property descriptor with this key.
    pub fn property(&self, key: &str) -> Option<&[u8]> {
        self.descriptors.iter().find_map(|d| match d {
            Descriptor::Property(p) if p.key == key => Some(p.value.as_slice()),
            _ => None,
        })
    }

    /// The image's bytes: header, authentication block, auxiliary block.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// `HEADER_SIZE + authentication block + auxiliary block`.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Never true (the header alone is 256 bytes); present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// What the signature covers: the header followed by the auxiliary block.
    pub(crate) fn signed_data(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(HEADER_SIZE + self.raw.len() - self.aux_start);
        data.extend_from_slice(&self.raw[..HEADER_SIZE]);
        data.extend_from_slice(&self.raw[self.aux_start..]);
        data
    }

    pub(crate) fn stored_hash(&self) -> &[u8] {
        &self.raw[self.hash.clone()]
    }

    pub(crate) fn stored_signature(&self) -> &[u8] {
        &self.raw[self.signature.clone()]
    }
}

// The tests build their images with the host-tools VbmetaBuilder.
#[cfg(all(test, feature = "host-tools"))]
mod tests {
    use super::*;
    use crate::avb::{PropertyDescriptor, VbmetaBuilder};
    use crate::ErrorCode;

    /// An unsigned image (256-byte header, no auth block, one 64-byte aux block).
    fn unsigned() -> Vec<u8> {
        VbmetaBuilder::new(Algorithm::None)
            .rollback_index(9)
            .descriptor(Descriptor::Property(PropertyDescriptor {
                key: "k".into(),
                value: b"v".to_vec(),
            }))
            .build(None)
            .unwrap()
    }

    fn with_u64(mut bytes: Vec<u8>, at: usize, value: u64) -> Vec<u8> {
        bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
        bytes
    }

    fn with_u32(mut bytes: Vec<u8>, at: usize, value: u32) -> Vec<u8> {
        bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
        bytes
    }

    fn refused(bytes: &[u8], why: &str) {
        let e = VbmetaImage::parse(bytes).unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbSignature, "{e}");
        assert!(e.message.contains(why), "expected {why:?} in {e}");
    }

    #[test]
    fn parses_and_ignores_trailing_bytes() {
        let bytes = unsigned();
        assert_eq!(bytes.len(), 320);
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0xff; 100]);
        let image = VbmetaImage::parse(&padded).unwrap();
        assert_eq!(image, VbmetaImage::parse(&bytes).unwrap());
        assert_eq!(image.as_bytes(), &bytes[..]);
        assert_eq!(image.rollback_index(), 9);
        assert_eq!(image.property("k"), Some(&b"v"[..]));
        assert_eq!(image.property("x"), None);
    }

    #[test]
    fn header_checks() {
        let good = unsigned();
        let mut magic = good.clone();
        magic[3] = b'1';
        refused(&magic, "magic");
        refused(&with_u32(good.clone(), 4, 2), "major version");
        let mut release = good.clone();
        release[128..176].fill(b'x');
        refused(&release, "NUL-terminated");
        refused(&with_u64(good.clone(), 12, 1), "multiples of 64");
        refused(&with_u64(good.clone(), 20, 128), "exceed");
        refused(&with_u64(good.clone(), 20, u64::MAX - 63), "exceed");
        refused(&with_u32(good.clone(), 28, 7), "unknown algorithm");
        refused(&with_u64(good.clone(), 72, 8), "algorithm NONE");
        refused(&with_u64(good.clone(), 96, 64), "descriptors");
        refused(&with_u64(with_u64(good.clone(), 80, 60), 88, 8), "metadata");
        refused(&with_u32(good.clone(), 124, 32), "rollback index location");
        assert_eq!(
            VbmetaImage::parse(&with_u32(good.clone(), 124, 31))
                .unwrap()
                .rollback_index_location(),
            31
        );
        // Metadata offset is ignored when its size is 0, as libavb ignores it.
        let mut no_metadata = with_u64(good.clone(), 80, u64::MAX);
        no_metadata = with_u64(no_metadata, 88, 0);
        assert!(VbmetaImage::parse(&no_metadata).is_ok());
    }

    #[test]
    fn signed_images_need_the_algorithms_sizes() {
        let pem = include_bytes!("../../tests/data/avb/testkey_rsa2048.pem");
        let signer = crate::avb::RingSigner::from_pem(pem).unwrap();
        let good = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
            .build(Some(&signer))
            .unwrap();
        assert!(VbmetaImage::parse(&good).unwrap().verify().is_ok());
        refused(&with_u64(good.clone(), 40, 31), "32-byte hash");
        refused(&with_u64(good.clone(), 56, 255), "256-byte signature");
        refused(&with_u32(good.clone(), 28, 2), "4096"); // SHA256_RSA4096 with 256-byte signature
        refused(&with_u64(good.clone(), 72, 0), "public key");
    }
}
