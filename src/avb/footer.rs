//! `AvbFooter`, the 64 bytes at the end of a partition that locate its vbmeta, and the lookup
//! libavb performs to find a partition's vbmeta (`load_and_verify_vbmeta`).

use super::image::VbmetaImage;
use super::reader::BeReader;
use crate::error::Result;

/// Size of `AvbFooter`.
pub const FOOTER_SIZE: usize = 64;
/// `AVB_FOOTER_MAGIC`.
pub const FOOTER_MAGIC: [u8; 4] = *b"AVBf";
/// The most vbmeta bytes libavb reads from a partition (`VBMETA_MAX_SIZE`).
pub const VBMETA_MAX_SIZE: usize = 64 * 1024;

/// The footer avbtool appends to a partition holding an image plus its vbmeta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvbFooter {
    /// Footer format major version (1).
    pub version_major: u32,
    /// Footer format minor version.
    pub version_minor: u32,
    /// Size of the image before avbtool added hash tree, FEC and vbmeta.
    pub original_image_size: u64,
    /// Offset of the vbmeta image in the partition, in bytes.
    pub vbmeta_offset: u64,
    /// Size of the vbmeta image, in bytes.
    pub vbmeta_size: u64,
}

impl AvbFooter {
    /// A version 1.0 footer, as avbtool writes.
    pub fn new(original_image_size: u64, vbmeta_offset: u64, vbmeta_size: u64) -> Self {
        AvbFooter {
            version_major: 1,
            version_minor: 0,
            original_image_size,
            vbmeta_offset,
            vbmeta_size,
        }
    }

    /// Parses the last 64 bytes of a partition. Errors (28) unless `bytes` is 64 bytes with the
    /// `AVBf` magic and a major version libavb supports (1).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != FOOTER_SIZE {
            crate::bail!(
                AvbSignature,
                "AVB footer: {} bytes, not {FOOTER_SIZE}",
                bytes.len()
            );
        }
        let mut r = BeReader::new(bytes, "AVB footer");
        if r.array::<4>()? != FOOTER_MAGIC {
            crate::bail!(AvbSignature, "AVB footer: no AVBf magic");
        }
        let footer = AvbFooter {
            version_major: r.u32()?,
            version_minor: r.u32()?,
            original_image_size: r.u64()?,
            vbmeta_offset: r.u64()?,
            vbmeta_size: r.u64()?,
        };
        if footer.version_major > 1 {
            crate::bail!(
                AvbSignature,
                "AVB footer: unsupported version {}.{}",
                footer.version_major,
                footer.version_minor
            );
        }
        Ok(footer)
    }

    /// The 64-byte footer, as it ends the partition.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut out = [0u8; FOOTER_SIZE];
        out[..4].copy_from_slice(&FOOTER_MAGIC);
        out[4..8].copy_from_slice(&self.version_major.to_be_bytes());
        out[8..12].copy_from_slice(&self.version_minor.to_be_bytes());
        out[12..20].copy_from_slice(&self.original_image_size.to_be_bytes());
        out[20..28].copy_from_slice(&self.vbmeta_offset.to_be_bytes());
        out[28..36].copy_from_slice(&self.vbmeta_size.to_be_bytes());
        out
    }
}

/// Reads and parses the vbmeta of `partition` (its name without slot suffix) the way libavb
/// finds it: partitions named `vbmeta*` hold it at offset 0; any other partition is looked up
/// through its footer, and without a valid footer at offset 0 (e.g. `boot` on devices with no
/// `vbmeta` partition). At most [`VBMETA_MAX_SIZE`] bytes are read.
///
/// `read_at(offset, len)` must return exactly `len` bytes of the partition at `offset`; its
/// errors (e.g. 31 `DeviceError`) pass through. Everything else that goes wrong is code 28,
/// including a footer whose vbmeta lies outside the partition or exceeds `VBMETA_MAX_SIZE`
/// (libavb would ignore such a footer and look at offset 0, where no vbmeta is in practice).
pub fn load_vbmeta(
    partition: &str,
    partition_size: u64,
    mut read_at: impl FnMut(u64, usize) -> Result<Vec<u8>>,
) -> Result<VbmetaImage> {
    let mut read = |offset: u64, len: usize| -> Result<Vec<u8>> {
        let bytes = read_at(offset, len)?;
        if bytes.len() != len {
            crate::bail!(
                DeviceError,
                "{partition}: read {} bytes at {offset}, asked for {len}",
                bytes.len()
            );
        }
        Ok(bytes)
    };
    let at_start = (0, partition_size.min(VBMETA_MAX_SIZE as u64) as usize);
    let (offset, len) = if partition.starts_with("vbmeta") || partition_size < FOOTER_SIZE as u64 {
        at_start
    } else {
        let tail = read(partition_size - FOOTER_SIZE as u64, FOOTER_SIZE)?;
        match AvbFooter::parse(&tail) {
            Err(_) => at_start,
            Ok(footer) => {
                let inside = footer
                    .vbmeta_offset
                    .checked_add(footer.vbmeta_size)
                    .is_some_and(|end| end <= partition_size);
                if !inside || footer.vbmeta_size > VBMETA_MAX_SIZE as u64 {
                    crate::bail!(
                        AvbSignature,
                        "{partition}: footer places {} vbmeta bytes at {}, outside the {partition_size}-byte partition or above {VBMETA_MAX_SIZE}",
                        footer.vbmeta_size,
                        footer.vbmeta_offset
                    );
                }
                (footer.vbmeta_offset, footer.vbmeta_size as usize)
            }
        }
    };
    let bytes = read(offset, len)?;
    VbmetaImage::parse(&bytes).map_err(|e| crate::err!(AvbSignature, "{partition}: {}", e.message))
}

/// [`load_vbmeta`] over a partition image held in memory.
pub fn find_vbmeta(partition: &str, image: &[u8]) -> Result<VbmetaImage> {
    load_vbmeta(partition, image.len() as u64, |offset, len| {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match image.get(start..start.saturating_add(len)) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => crate::bail!(
                AvbSignature,
                "{partition}: {len} bytes at {offset} are past the image end"
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn footer_round_trips_and_rejects_bad_magic_size_and_version() {
        let footer = AvbFooter::new(4096, 4096, 2048);
        let bytes = footer.encode();
        assert_eq!(AvbFooter::parse(&bytes).unwrap(), footer);
        assert_eq!(&bytes[36..], &[0u8; 28]);
        assert_eq!(
            AvbFooter::parse(&bytes[1..]).unwrap_err().code,
            ErrorCode::AvbSignature
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(AvbFooter::parse(&bad).is_err());
        let mut v2 = bytes;
        v2[7] = 2;
        assert!(AvbFooter::parse(&v2).is_err());
        let mut minor = bytes;
        minor[11] = 9; // newer minor versions are fine
        assert_eq!(AvbFooter::parse(&minor).unwrap().version_minor, 9);
    }

    #[test]
    fn hostile_footer_ranges_are_errors() {
        for (offset, size) in [(u64::MAX, 2), (4000, 200), (0, VBMETA_MAX_SIZE as u64 + 64)] {
            let mut image = vec![0u8; 4096];
            image[4096 - 64..].copy_from_slice(&AvbFooter::new(0, offset, size).encode());
            let e = find_vbmeta("system", &image).unwrap_err();
            assert_eq!(e.code, ErrorCode::AvbSignature);
        }
        // Neither footer nor magic: an error, also for tiny and empty images.
        for len in [0usize, 10, 64, 300, 4096] {
            assert!(find_vbmeta("boot", &vec![0u8; len]).is_err());
            assert!(find_vbmeta("vbmeta", &vec![0u8; len]).is_err());
        }
    }

    #[test]
    fn short_reads_are_device_errors() {
        let e = load_vbmeta("vbmeta", 4096, |_, _| Ok(vec![0; 10])).unwrap_err();
        assert_eq!(e.code, ErrorCode::DeviceError);
    }
}
