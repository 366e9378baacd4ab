//! `LpMetadataHeader`: version, checksums and the four table descriptors of one slot.

use super::bytes::{sha256, sha256_zeroed, u16_le, u32_le};
use super::error::{malformed, LpError};

const HEADER_MAGIC: u32 = 0x414c_5030;
pub(crate) const MAJOR_VERSION: u16 = 10;
pub(crate) const MINOR_VERSION_MAX: u16 = 2;
/// The minor version that allows the UPDATED and DISABLED attributes.
pub(crate) const VERSION_FOR_UPDATED_ATTR: u16 = 1;
/// The minor version with the 256-byte header (flags).
pub(crate) const VERSION_FOR_EXPANDED_HEADER: u16 = 2;
/// `sizeof(LpMetadataHeaderV1_0)` and `sizeof(LpMetadataHeader)` (v10.2).
pub(crate) const HEADER_V1_0_SIZE: usize = 128;
pub(crate) const HEADER_V1_2_SIZE: usize = 256;
const HEADER_CHECKSUM_AT: usize = 12;
const TABLES_CHECKSUM_AT: usize = 48;
const DESCRIPTORS_AT: usize = 80;
const FLAGS_AT: usize = 128;

/// One table descriptor: offset relative to the end of the header, entry count and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct TableDesc {
    pub offset: u32,
    pub num_entries: u32,
    pub entry_size: u32,
}

/// The header fields after the magic, version and header checksum were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub minor_version: u16,
    pub header_size: usize,
    pub tables_size: u32,
    pub tables_checksum: [u8; 32],
    /// Partitions, extents, groups, block devices, in the header's order.
    pub tables: [TableDesc; 4],
    pub flags: u32,
}

/// The header size a minor version implies.
pub(crate) fn header_size_for(minor_version: u16) -> usize {
    if minor_version >= VERSION_FOR_EXPANDED_HEADER {
        HEADER_V1_2_SIZE
    } else {
        HEADER_V1_0_SIZE
    }
}

/// Parses and checks the header at the start of `bytes` (a metadata slot).
pub(crate) fn parse(bytes: &[u8]) -> Result<RawHeader, LpError> {
    if bytes.len() < HEADER_V1_0_SIZE {
        malformed!("metadata is {} bytes, shorter than a header", bytes.len());
    }
    let magic = u32_le(bytes, 0);
    if magic != HEADER_MAGIC {
        malformed!("metadata header has a bad magic {magic:#x}");
    }
    let (major, minor) = (u16_le(bytes, 4), u16_le(bytes, 6));
    if major != MAJOR_VERSION || minor > MINOR_VERSION_MAX {
        malformed!("metadata version {major}.{minor} is not supported");
    }
    let header_size = u32_le(bytes, 8);
    let expected = header_size_for(minor);
    if header_size as usize != expected {
        malformed!("metadata header size is {header_size}, version 10.{minor} has {expected}");
    }
    let Some(header) = bytes.get(..expected) else {
        malformed!(
            "metadata is {} bytes, shorter than its {expected}-byte header",
            bytes.len()
        );
    };
    if sha256_zeroed(header, HEADER_CHECKSUM_AT)[..]
        != header[HEADER_CHECKSUM_AT..HEADER_CHECKSUM_AT + 32]
    {
        malformed!("metadata header checksum does not match");
    }
    let mut tables = [TableDesc::default(); 4];
    for (i, t) in tables.iter_mut().enumerate() {
        let at = DESCRIPTORS_AT + 12 * i;
        *t = TableDesc {
            offset: u32_le(header, at),
            num_entries: u32_le(header, at + 4),
            entry_size: u32_le(header, at + 8),
        };
    }
    let mut tables_checksum = [0u8; 32];
    tables_checksum.copy_from_slice(&header[TABLES_CHECKSUM_AT..TABLES_CHECKSUM_AT + 32]);
    let flags = if expected == HEADER_V1_2_SIZE {
        if header[FLAGS_AT + 4..].iter().any(|&b| b != 0) {
            malformed!("metadata header's reserved bytes are not zero");
        }
        u32_le(header, FLAGS_AT)
    } else {
        0
    };
    Ok(RawHeader {
        minor_version: minor,
        header_size: expected,
        tables_size: u32_le(header, 44),
        tables_checksum,
        tables,
        flags,
    })
}

/// The header bytes for `tables` (already serialised), as liblp's `SerializeMetadata`
/// writes them: descriptors laid out back to back, both checksums filled in.
pub(crate) fn serialize(
    minor_version: u16,
    flags: u32,
    tables: &[TableDesc; 4],
    blob: &[u8],
) -> Vec<u8> {
    let size = header_size_for(minor_version);
    let mut out = vec![0u8; size];
    out[0..4].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
    out[4..6].copy_from_slice(&MAJOR_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&minor_version.to_le_bytes());
    out[8..12].copy_from_slice(&(size as u32).to_le_bytes());
    out[44..48].copy_from_slice(&(blob.len() as u32).to_le_bytes());
    out[TABLES_CHECKSUM_AT..TABLES_CHECKSUM_AT + 32].copy_from_slice(&sha256(blob));
    for (i, t) in tables.iter().enumerate() {
        let at = DESCRIPTORS_AT + 12 * i;
        out[at..at + 4].copy_from_slice(&t.offset.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&t.num_entries.to_le_bytes());
        out[at + 8..at + 12].copy_from_slice(&t.entry_size.to_le_bytes());
    }
    if size == HEADER_V1_2_SIZE {
        out[FLAGS_AT..FLAGS_AT + 4].copy_from_slice(&flags.to_le_bytes());
    }
    let sum = sha256_zeroed(&out, HEADER_CHECKSUM_AT);
    out[HEADER_CHECKSUM_AT..HEADER_CHECKSUM_AT + 32].copy_from_slice(&sum);
    out
}
