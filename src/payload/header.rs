//! The fixed header at the start of every payload: `"CrAU"`, major version, manifest size and
//! metadata signature size, all big-endian.

use crate::bail;
use crate::error::Result;

/// Size of the header in bytes; the manifest follows it.
pub const HEADER_SIZE: usize = 24;

/// The only major version Android has used since 2016 (brillo/A/B payloads).
pub const SUPPORTED_MAJOR_VERSION: u64 = 2;

const MAGIC: &[u8; 4] = b"CrAU";

/// The manifest is read into memory before anything else happens; this bounds what a hostile
/// header can make us allocate. Real manifests are well under 1 MiB even for large updates.
pub const MAX_MANIFEST_SIZE: u64 = 64 << 20;

/// Metadata signatures are a few RSA signatures at most.
pub const MAX_METADATA_SIGNATURE_SIZE: u32 = 64 << 10;

/// The payload's fixed header: `CrAU`, the major version and the two sizes that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHeader {
    /// Payload format major version (2).
    pub major_version: u64,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// Size of the metadata signature in bytes.
    pub metadata_signature_size: u32,
}

impl PayloadHeader {
    /// Parses and bounds-checks the header. `payload_size`, when known, must hold the metadata.
    pub fn parse(bytes: &[u8], payload_size: Option<u64>) -> Result<Self> {
        let Some(bytes) = bytes.get(..HEADER_SIZE) else {
            bail!(
                SizeMismatch,
                "payload shorter than its {HEADER_SIZE}-byte header"
            );
        };
        if &bytes[..4] != MAGIC {
            bail!(
                MalformedPayload,
                "bad payload magic {:02x?} (expected \"CrAU\")",
                &bytes[..4]
            );
        }
        let major_version = be_u64(&bytes[4..12]);
        let manifest_size = be_u64(&bytes[12..20]);
        let metadata_signature_size =
            u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        if major_version != SUPPORTED_MAJOR_VERSION {
            bail!(
                Unsupported,
                "payload major version {major_version} is not supported (only 2)"
            );
        }
        if manifest_size == 0 || manifest_size > MAX_MANIFEST_SIZE {
            bail!(
                MalformedPayload,
                "manifest size {manifest_size} out of range (1..={MAX_MANIFEST_SIZE})"
            );
        }
        if metadata_signature_size > MAX_METADATA_SIGNATURE_SIZE {
            bail!(
                MalformedPayload,
                "metadata signature size {metadata_signature_size} too large"
            );
        }
        let header = PayloadHeader {
            major_version,
            manifest_size,
            metadata_signature_size,
        };
        if let Some(size) = payload_size {
            if header.data_offset() > size {
                // A payload cut short, like a stream that ends early: the size is wrong.
                bail!(
                    SizeMismatch,
                    "metadata ({} bytes) extends beyond the payload ({size} bytes)",
                    header.data_offset()
                );
            }
        }
        Ok(header)
    }

    /// `metadata_size` as AOSP defines it: header plus manifest, *without* the metadata signature.
    pub fn metadata_size(&self) -> u64 {
        HEADER_SIZE as u64 + self.manifest_size
    }

    /// Offset of the first data blob in the payload file.
    pub fn data_offset(&self) -> u64 {
        self.metadata_size() + u64::from(self.metadata_signature_size)
    }

    /// The header's 24 bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[..4].copy_from_slice(MAGIC);
        out[4..12].copy_from_slice(&self.major_version.to_be_bytes());
        out[12..20].copy_from_slice(&self.manifest_size.to_be_bytes());
        out[20..24].copy_from_slice(&self.metadata_signature_size.to_be_bytes());
        out
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn header(major: u64, manifest: u64, sig: u32) -> [u8; HEADER_SIZE] {
        PayloadHeader {
            major_version: major,
            manifest_size: manifest,
            metadata_signature_size: sig,
        }
        .encode()
    }

    #[test]
    fn round_trip() {
        let h = PayloadHeader::parse(&header(2, 100, 10), Some(1000)).unwrap();
        assert_eq!(h.metadata_size(), 124);
        assert_eq!(h.data_offset(), 134);
        assert_eq!(h.encode(), header(2, 100, 10));
    }

    #[test]
    fn rejects_bad_input() {
        let code = |b: &[u8], size| PayloadHeader::parse(b, size).unwrap_err().code;
        assert_eq!(
            code(&header(2, 100, 0)[..23], None),
            ErrorCode::SizeMismatch
        );
        let mut bad_magic = header(2, 100, 0);
        bad_magic[0] = b'X';
        assert_eq!(code(&bad_magic, None), ErrorCode::MalformedPayload);
        assert_eq!(code(&header(1, 100, 0), None), ErrorCode::Unsupported);
        assert_eq!(code(&header(3, 100, 0), None), ErrorCode::Unsupported);
        assert_eq!(code(&header(2, 0, 0), None), ErrorCode::MalformedPayload);
        assert_eq!(
            code(&header(2, u64::MAX, 0), None),
            ErrorCode::MalformedPayload
        );
        assert_eq!(
            code(&header(2, 100, u32::MAX), None),
            ErrorCode::MalformedPayload
        );
        assert_eq!(code(&header(2, 100, 0), Some(100)), ErrorCode::SizeMismatch);
    }
}
