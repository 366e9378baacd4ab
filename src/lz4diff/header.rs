//! The LZ4DIFF container: `LZ4DIFF` (7 bytes), a big-endian u32 version at byte 7, a
//! big-endian u32 header length at byte 11, one unused byte, the `Lz4diffHeader` protobuf
//! from byte 16, then the inner patch.

use protobuf::{EnumOrUnknown, Message, MessageField};

use super::proto::lz4diff as pb;
use crate::error::Result;
use crate::{bail, err};

/// The patch's first seven bytes.
pub const MAGIC: &[u8; 7] = b"LZ4DIFF";
/// The only version update_engine writes and reads.
pub const VERSION: u32 = 1;
/// Magic, version, header length and the unused byte.
const PREFIX: usize = 16;
/// Largest header accepted: a cluster's entry is ~10-50 bytes (plus any postfix patch), so
/// this covers a file of a few hundred thousand clusters.
const MAX_HEADER: usize = 16 << 20;

/// How a side's clusters are compressed (`CompressionAlgorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `UNCOMPRESSED`: only uncompressed clusters can be rebuilt.
    Uncompressed,
    /// `LZ4`: liblz4's fast compressor.
    Lz4,
    /// `LZ4HC` at a level (liblz4 treats below 1 as 9 and above 12 as 12).
    Lz4hc(i32),
}

/// One cluster (`CompressedBlockInfo`): `uncompressed_length` bytes of the file from
/// `uncompressed_offset`, stored in `compressed_length` bytes, compressed if that is less.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// Where the cluster's data starts in the decompressed file.
    pub uncompressed_offset: u64,
    /// How many decompressed bytes it holds.
    pub uncompressed_length: u64,
    /// Its size in the image.
    pub compressed_length: u64,
    /// SHA-256 of the recompressed cluster, checked before `postfix_bspatch` applies.
    pub sha256: Option<[u8; 32]>,
    /// A bsdiff patch from the recompressed cluster to the image's (empty: none).
    pub postfix_bspatch: Vec<u8>,
}

impl Block {
    /// Whether the cluster is stored compressed (else it is stored as is).
    pub fn is_compressed(&self) -> bool {
        self.compressed_length < self.uncompressed_length
    }
}

/// One side's layout (`CompressionInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionInfo {
    /// The compressor.
    pub algorithm: Algorithm,
    /// The clusters in file order, each starting where the previous one ended.
    pub blocks: Vec<Block>,
    /// EROFS's `0PADDING` feature: a compressed cluster's data ends at the cluster's end,
    /// zeros before it (else it starts at the cluster's start, zeros after it).
    pub zero_padding: bool,
}

/// The inner patch's kind (`InnerPatchType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// A BSDF2 (or BSDIFF40) patch.
    Bsdiff,
    /// A PUFFDIFF patch.
    Puffdiff,
}

/// A parsed LZ4DIFF patch.
#[derive(Clone, Debug)]
pub struct Patch<'a> {
    /// The source's clusters.
    pub src: CompressionInfo,
    /// The destination's clusters and compressor.
    pub dst: CompressionInfo,
    /// How `data` patches the decompressed source into the decompressed destination.
    pub inner: Inner,
    /// The inner patch.
    pub data: &'a [u8],
}

impl<'a> Patch<'a> {
    /// Parses the container and header. Fails with MalformedPayload on anything malformed,
    /// including clusters that do not follow each other or lengths whose sum overflows.
    pub fn parse(blob: &'a [u8]) -> Result<Self> {
        let Some(prefix) = blob.get(..PREFIX) else {
            bail!(MalformedPayload, "lz4diff patch of {} bytes", blob.len());
        };
        if !prefix.starts_with(MAGIC) {
            bail!(
                MalformedPayload,
                "not an lz4diff patch (magic {:02x?})",
                &prefix[..MAGIC.len()]
            );
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
        };
        let version = be32(7);
        if version != VERSION {
            bail!(MalformedPayload, "lz4diff version {version}");
        }
        let len = be32(11) as usize;
        let rest = &blob[PREFIX..];
        if len > rest.len() || len > MAX_HEADER {
            bail!(
                MalformedPayload,
                "lz4diff header of {len} bytes (patch {} bytes, limit {MAX_HEADER})",
                blob.len()
            );
        }
        let (header, data) = rest.split_at(len);
        let header = pb::Lz4diffHeader::parse_from_bytes(header)
            .map_err(|e| err!(MalformedPayload, "lz4diff header: {e}"))?;
        let inner = match header.inner_type.enum_value() {
            Ok(pb::InnerPatchType::BSDIFF) => Inner::Bsdiff,
            Ok(pb::InnerPatchType::PUFFDIFF) => Inner::Puffdiff,
            Err(t) => bail!(MalformedPayload, "lz4diff inner patch type {t}"),
        };
        Ok(Patch {
            src: from_proto(header.src_info.as_ref())?,
            dst: from_proto(header.dst_info.as_ref())?,
            inner,
            data,
        })
    }

    /// The container around `data`, as update_engine writes it.
    pub fn encode(
        src: &CompressionInfo,
        dst: &CompressionInfo,
        inner: Inner,
        data: &[u8],
    ) -> Result<Vec<u8>> {
        let header = pb::Lz4diffHeader {
            src_info: MessageField::some(to_proto(src)),
            dst_info: MessageField::some(to_proto(dst)),
            inner_type: EnumOrUnknown::new(match inner {
                Inner::Bsdiff => pb::InnerPatchType::BSDIFF,
                Inner::Puffdiff => pb::InnerPatchType::PUFFDIFF,
            }),
            ..Default::default()
        };
        let header = header
            .write_to_bytes()
            .map_err(|e| err!(MalformedPayload, "lz4diff header: {e}"))?;
        let len = u32::try_from(header.len())
            .map_err(|_| err!(MalformedPayload, "lz4diff header too large"))?;
        let mut out = Vec::with_capacity(PREFIX + header.len() + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        Ok(out)
    }
}

impl CompressionInfo {
    /// The decompressed size: the sum of the clusters' uncompressed lengths.
    pub fn uncompressed_len(&self) -> u64 {
        self.blocks
            .last()
            .map_or(0, |b| b.uncompressed_offset + b.uncompressed_length)
    }

    /// The stored size: the sum of the clusters' compressed lengths (checked at parse).
    pub fn compressed_len(&self) -> u64 {
        self.blocks.iter().map(|b| b.compressed_length).sum()
    }
}

fn from_proto(info: Option<&pb::CompressionInfo>) -> Result<CompressionInfo> {
    let Some(info) = info else {
        return Ok(CompressionInfo {
            algorithm: Algorithm::Uncompressed,
            blocks: Vec::new(),
            zero_padding: false,
        });
    };
    let algo = info.algo.as_ref();
    let algorithm = match algo.map(|a| a.type_.enum_value()) {
        None | Some(Ok(pb::compression_algorithm::Type::UNCOMPRESSED)) => Algorithm::Uncompressed,
        Some(Ok(pb::compression_algorithm::Type::LZ4)) => Algorithm::Lz4,
        Some(Ok(pb::compression_algorithm::Type::LZ4HC)) => {
            Algorithm::Lz4hc(algo.map_or(0, |a| a.level))
        }
        Some(Err(t)) => bail!(MalformedPayload, "lz4diff compression algorithm {t}"),
    };
    let mut blocks = Vec::with_capacity(info.block_info.len());
    let mut offset = 0u64;
    let mut stored = 0u64;
    for b in &info.block_info {
        // update_engine requires the clusters in order, back to back.
        if b.uncompressed_offset != offset {
            bail!(
                MalformedPayload,
                "lz4diff cluster at {} where {offset} was expected",
                b.uncompressed_offset
            );
        }
        offset = offset
            .checked_add(b.uncompressed_length)
            .ok_or_else(|| err!(MalformedPayload, "lz4diff cluster lengths overflow"))?;
        stored = stored
            .checked_add(b.compressed_length)
            .ok_or_else(|| err!(MalformedPayload, "lz4diff cluster lengths overflow"))?;
        let sha256 = match b.sha256_hash.len() {
            0 => None,
            32 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(&b.sha256_hash);
                Some(h)
            }
            n => bail!(MalformedPayload, "lz4diff cluster hash of {n} bytes"),
        };
        blocks.push(Block {
            uncompressed_offset: b.uncompressed_offset,
            uncompressed_length: b.uncompressed_length,
            compressed_length: b.compressed_length,
            sha256,
            postfix_bspatch: b.postfix_bspatch.clone(),
        });
    }
    Ok(CompressionInfo {
        algorithm,
        blocks,
        zero_padding: info.zero_padding_enabled,
    })
}

fn to_proto(info: &CompressionInfo) -> pb::CompressionInfo {
    use pb::compression_algorithm::Type;
    let (type_, level) = match info.algorithm {
        Algorithm::Uncompressed => (Type::UNCOMPRESSED, 0),
        Algorithm::Lz4 => (Type::LZ4, 0),
        Algorithm::Lz4hc(level) => (Type::LZ4HC, level),
    };
    pb::CompressionInfo {
        algo: MessageField::some(pb::CompressionAlgorithm {
            type_: EnumOrUnknown::new(type_),
            level,
            ..Default::default()
        }),
        block_info: info
            .blocks
            .iter()
            .map(|b| pb::CompressedBlockInfo {
                uncompressed_offset: b.uncompressed_offset,
                uncompressed_length: b.uncompressed_length,
                compressed_length: b.compressed_length,
                sha256_hash: b.sha256.map(|h| h.to_vec()).unwrap_or_default(),
                postfix_bspatch: b.postfix_bspatch.clone(),
                ..Default::default()
            })
            .collect(),
        zero_padding_enabled: info.zero_padding,
        ..Default::default()
    }
}
