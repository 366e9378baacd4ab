//! On-disk structures of libsnapshot_cow (`include/libsnapshot/cow_format.h`, Android 15):
//! the header (v2, and v3 with its resume buffer, op buffer size and compression fields), the
//! 20-byte v2 op, the 16-byte v3 op and the v2 footer. All little-endian, packed.

use super::CowError;

/// `kCowMagicNumber`: "!!WOcwoC" as little-endian bytes.
pub const MAGIC: u64 = 0x436f_7763_4f57_2121;
/// `sizeof(CowHeaderPrefix)`: magic, major, minor, header size.
pub const PREFIX_SIZE: usize = 14;
/// `sizeof(CowHeader)`: the v2 header.
pub const HEADER_V2_SIZE: usize = 38;
/// `sizeof(CowHeaderV3)`.
pub const HEADER_V3_SIZE: usize = 78;
/// `sizeof(CowOperationV2)`, also the size of the footer op.
pub const OP_V2_SIZE: usize = 20;
/// `sizeof(CowOperationV3)`.
pub const OP_V3_SIZE: usize = 16;
/// `sizeof(CowFooter)`: the footer op and 64 unused bytes.
pub const FOOTER_SIZE: usize = OP_V2_SIZE + 64;
/// `sizeof(ResumePoint)`: label and op index.
pub const RESUME_POINT_SIZE: usize = 16;
/// `kNumResumePoints`: the v3 writer keeps the last four labels.
pub const NUM_RESUME_POINTS: u32 = 4;
/// `BUFFER_REGION_DEFAULT_SIZE`: the scratch space snapuserd's read-ahead uses while merging.
pub const SCRATCH_SIZE: u32 = 2 << 20;
/// v3 ops address 48 bits of source.
pub const SOURCE_MASK: u64 = (1 << 48) - 1;
const TYPE_SHIFT: u32 = 60;
const FACTOR_SHIFT: u32 = 57;
/// The largest compression factor the 3 bits of a v3 op can name with 4 KiB blocks (bit value
/// 6 is 256 KiB; the format comment stops there).
pub const MAX_FACTOR_BITS: u8 = 6;

/// `CowOperationType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpType {
    /// `kCowCopyOp`: copy an old block.
    Copy = 1,
    /// `kCowReplaceOp`: write the (compressed) data.
    Replace = 2,
    /// `kCowZeroOp`: write zeros.
    Zero = 3,
    /// `kCowLabelOp`: a resume point (v2).
    Label = 4,
    /// `kCowClusterOp`: ends a cluster of ops (v2).
    Cluster = 5,
    /// `kCowXorOp`: the data XOR an old block.
    Xor = 6,
    /// `kCowSequenceOp`: the merge order of the copy and XOR ops (v2).
    Sequence = 7,
    /// `kCowFooterOp`: the v2 footer.
    Footer = 255,
}

impl OpType {
    /// The type stored as `v`, if it is one.
    pub fn from_u8(v: u8) -> Option<OpType> {
        Some(match v {
            1 => OpType::Copy,
            2 => OpType::Replace,
            3 => OpType::Zero,
            4 => OpType::Label,
            5 => OpType::Cluster,
            6 => OpType::Xor,
            7 => OpType::Sequence,
            255 => OpType::Footer,
            _ => return None,
        })
    }

    /// Ops internal to the format, not data of the new image (`IsMetadataOp`).
    pub fn is_metadata(self) -> bool {
        matches!(
            self,
            OpType::Label | OpType::Cluster | OpType::Footer | OpType::Sequence
        )
    }

    /// Ops that read old blocks, whose merge order matters (`IsOrderedOp`).
    pub fn is_ordered(self) -> bool {
        matches!(self, OpType::Copy | OpType::Xor)
    }
}

/// `CowCompressionAlgorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `kCowCompressNone`.
    None = 0,
    /// `kCowCompressGz`: zlib (deflate with a zlib header).
    Gz = 1,
    /// `kCowCompressBrotli`.
    Brotli = 2,
    /// `kCowCompressLz4`.
    Lz4 = 3,
    /// `kCowCompressZstd`.
    Zstd = 4,
}

impl Compression {
    /// The algorithm stored as `v`, if it is one.
    pub fn from_u32(v: u32) -> Option<Compression> {
        Some(match v {
            0 => Compression::None,
            1 => Compression::Gz,
            2 => Compression::Brotli,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    /// The names AOSP's `CompressionAlgorithmFromString` accepts.
    pub fn from_name(name: &str) -> Option<Compression> {
        Some(match name {
            "none" | "" => Compression::None,
            "gz" => Compression::Gz,
            "brotli" => Compression::Brotli,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    /// The name `from_name` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gz => "gz",
            Compression::Brotli => "brotli",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// The COW header; v2 files use the first [`HEADER_V2_SIZE`] bytes, and the v3 fields read as
/// zero from them (as `ReadCowHeader` leaves them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Format major version (2 or 3).
    pub major: u16,
    /// Format minor version.
    pub minor: u16,
    /// Header size in bytes: [`HEADER_V2_SIZE`] or [`HEADER_V3_SIZE`].
    pub header_size: u16,
    /// Footer size in bytes (v2).
    pub footer_size: u16,
    /// Size of one op in bytes.
    pub op_size: u16,
    /// Block size in bytes.
    pub block_size: u32,
    /// v2: ops per cluster (0: no clusters).
    pub cluster_ops: u32,
    /// Merge ops completed so far.
    pub num_merge_ops: u64,
    /// Size of the scratch buffer snapuserd merges through (in v3, between the header and the
    /// sequence data).
    pub buffer_size: u32,
    /// v3: number of 4-byte sequence entries.
    pub sequence_data_count: u64,
    /// v3: resume points in use.
    pub resume_point_count: u32,
    /// v3: room for resume points.
    pub resume_point_max: u32,
    /// v3: ops written.
    pub op_count: u64,
    /// v3: room for ops.
    pub op_count_max: u64,
    /// v3: the `Compression` number.
    pub compression_algorithm: u32,
    /// v3: the largest data one op compresses (the compression factor), in bytes.
    pub max_compression_size: u32,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Header {
    /// Parses the header at the start of `bytes` the way `ReadCowHeader` does: the prefix's
    /// magic and a header size no larger than v3's; the version checks come with the parser.
    pub fn parse(bytes: &[u8]) -> Result<Header, CowError> {
        if bytes.len() < PREFIX_SIZE {
            return Err(CowError::malformed(
                "file shorter than the COW header prefix",
            ));
        }
        let magic = le64(bytes, 0);
        if magic != MAGIC {
            return Err(CowError::malformed(format!("bad COW magic {magic:#018x}")));
        }
        let header_size = le16(bytes, 12);
        if header_size as usize > HEADER_V3_SIZE || (header_size as usize) < HEADER_V2_SIZE {
            return Err(CowError::malformed(format!(
                "COW header size {header_size} is not between {HEADER_V2_SIZE} and {HEADER_V3_SIZE}"
            )));
        }
        if bytes.len() < header_size as usize {
            return Err(CowError::malformed("file shorter than its COW header"));
        }
        let mut b = [0u8; HEADER_V3_SIZE];
        b[..header_size as usize].copy_from_slice(&bytes[..header_size as usize]);
        Ok(Header {
            major: le16(&b, 8),
            minor: le16(&b, 10),
            header_size,
            footer_size: le16(&b, 14),
            op_size: le16(&b, 16),
            block_size: le32(&b, 18),
            cluster_ops: le32(&b, 22),
            num_merge_ops: le64(&b, 26),
            buffer_size: le32(&b, 34),
            sequence_data_count: le64(&b, 38),
            resume_point_count: le32(&b, 46),
            resume_point_max: le32(&b, 50),
            op_count: le64(&b, 54),
            op_count_max: le64(&b, 62),
            compression_algorithm: le32(&b, 70),
            max_compression_size: le32(&b, 74),
        })
    }

    /// The first `header_size` bytes of the packed v3 struct.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_V3_SIZE);
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&self.major.to_le_bytes());
        b.extend_from_slice(&self.minor.to_le_bytes());
        b.extend_from_slice(&self.header_size.to_le_bytes());
        b.extend_from_slice(&self.footer_size.to_le_bytes());
        b.extend_from_slice(&self.op_size.to_le_bytes());
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.extend_from_slice(&self.cluster_ops.to_le_bytes());
        b.extend_from_slice(&self.num_merge_ops.to_le_bytes());
        b.extend_from_slice(&self.buffer_size.to_le_bytes());
        b.extend_from_slice(&self.sequence_data_count.to_le_bytes());
        b.extend_from_slice(&self.resume_point_count.to_le_bytes());
        b.extend_from_slice(&self.resume_point_max.to_le_bytes());
        b.extend_from_slice(&self.op_count.to_le_bytes());
        b.extend_from_slice(&self.op_count_max.to_le_bytes());
        b.extend_from_slice(&self.compression_algorithm.to_le_bytes());
        b.extend_from_slice(&self.max_compression_size.to_le_bytes());
        b.truncate(self.header_size as usize);
        b
    }

    /// v3: where the sequence data starts (`GetSequenceOffset`).
    pub fn sequence_offset(&self) -> Option<u64> {
        u64::from(self.header_size).checked_add(u64::from(self.buffer_size))
    }

    /// v3: where the resume buffer starts (`GetResumeOffset`).
    pub fn resume_offset(&self) -> Option<u64> {
        self.sequence_offset()?
            .checked_add(self.sequence_data_count.checked_mul(4)?)
    }

    /// v3: where op `index` lives (`GetOpOffset`).
    pub fn op_offset(&self, index: u64) -> Option<u64> {
        self.resume_offset()?
            .checked_add(u64::from(self.resume_point_max) * RESUME_POINT_SIZE as u64)?
            .checked_add(index.checked_mul(OP_V3_SIZE as u64)?)
    }

    /// v3: where the data section starts (`GetDataOffset`).
    pub fn data_offset(&self) -> Option<u64> {
        self.op_offset(self.op_count_max)
    }
}

/// A v2 op as stored (`CowOperationV2`); the footer op shares the layout, with `new_block`
/// holding `ops_size` and `source` holding `num_ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpV2 {
    /// The `OpType` number.
    pub op_type: u8,
    /// The `Compression` number.
    pub compression: u8,
    /// Bytes of data the op carries.
    pub data_length: u16,
    /// The block of the new image it writes (the footer: the ops' size).
    pub new_block: u64,
    /// The old block or data offset, by type (the footer: the op count).
    pub source: u64,
}

impl OpV2 {
    /// Reads an op from the first [`OP_V2_SIZE`] bytes of `b`, which must be that long.
    pub fn parse(b: &[u8]) -> OpV2 {
        OpV2 {
            op_type: b[0],
            compression: b[1],
            data_length: le16(b, 2),
            new_block: le64(b, 4),
            source: le64(b, 12),
        }
    }

    /// The packed form.
    pub fn to_bytes(&self) -> [u8; OP_V2_SIZE] {
        let mut b = [0u8; OP_V2_SIZE];
        b[0] = self.op_type;
        b[1] = self.compression;
        b[2..4].copy_from_slice(&self.data_length.to_le_bytes());
        b[4..12].copy_from_slice(&self.new_block.to_le_bytes());
        b[12..20].copy_from_slice(&self.source.to_le_bytes());
        b
    }

    /// `GetNextOpOffset`: how far past this op's end the next op starts.
    pub fn next_op_offset(&self, cluster_ops: u32) -> u64 {
        if self.op_type == OpType::Cluster as u8 {
            self.source
        } else if (self.op_type == OpType::Replace as u8 || self.op_type == OpType::Xor as u8)
            && cluster_ops == 0
        {
            u64::from(self.data_length)
        } else {
            0
        }
    }

    /// `GetNextDataOffset`: how far past this op's data the next data starts.
    pub fn next_data_offset(&self, cluster_ops: u32) -> u64 {
        if self.op_type == OpType::Cluster as u8 {
            u64::from(cluster_ops) * OP_V2_SIZE as u64
        } else if cluster_ops == 0 {
            OP_V2_SIZE as u64
        } else {
            0
        }
    }
}

/// A v3 op as stored (`CowOperationV3`): `source_info` packs the type in bits 60-63, the
/// compression factor's log2 over the block size in bits 57-59 and the source in bits 0-47.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpV3 {
    /// Bytes of data.
    pub data_length: u32,
    /// The block of the new image it writes.
    pub new_block: u32,
    /// Type, compression factor and source, packed.
    pub source_info: u64,
}

impl OpV3 {
    /// Packs an op of `op_type` for `new_block`, with `source` (an old block, or a data offset),
    /// compression factor `factor_bits` and `len` bytes of data.
    pub fn new(op_type: OpType, new_block: u32, source: u64, factor_bits: u8, len: u32) -> OpV3 {
        OpV3 {
            data_length: len,
            new_block,
            source_info: ((op_type as u64 & 0xf) << TYPE_SHIFT)
                | ((u64::from(factor_bits) & 0x7) << FACTOR_SHIFT)
                | (source & SOURCE_MASK),
        }
    }

    /// Reads an op from the first [`OP_V3_SIZE`] bytes of `b`, which must be that long.
    pub fn parse(b: &[u8]) -> OpV3 {
        OpV3 {
            data_length: le32(b, 0),
            new_block: le32(b, 4),
            source_info: le64(b, 8),
        }
    }

    /// The packed form.
    pub fn to_bytes(&self) -> [u8; OP_V3_SIZE] {
        let mut b = [0u8; OP_V3_SIZE];
        b[0..4].copy_from_slice(&self.data_length.to_le_bytes());
        b[4..8].copy_from_slice(&self.new_block.to_le_bytes());
        b[8..16].copy_from_slice(&self.source_info.to_le_bytes());
        b
    }

    /// The `OpType` number (bits 60-63).
    pub fn type_bits(&self) -> u8 {
        (self.source_info >> TYPE_SHIFT) as u8 & 0xf
    }

    /// The compression factor, as log2 of factor / block size (bits 57-59).
    pub fn factor_bits(&self) -> u8 {
        (self.source_info >> FACTOR_SHIFT) as u8 & 0x7
    }

    /// The source (bits 0-47).
    pub fn source(&self) -> u64 {
        self.source_info & SOURCE_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_op_bits() {
        let op = OpV3::new(OpType::Replace, 7, 0x1234_5678_9abc, 4, 100);
        let back = OpV3::parse(&op.to_bytes());
        assert_eq!(back.type_bits(), 2);
        assert_eq!(back.factor_bits(), 4);
        assert_eq!(back.source(), 0x1234_5678_9abc);
        assert_eq!(back.data_length, 100);
        assert_eq!(back.new_block, 7);
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = Header {
            major: 3,
            header_size: HEADER_V3_SIZE as u16,
            op_size: 16,
            block_size: 4096,
            buffer_size: SCRATCH_SIZE,
            sequence_data_count: 3,
            resume_point_max: 4,
            op_count_max: 10,
            max_compression_size: 65536,
            ..Header::default()
        };
        let bytes = h.to_bytes();
        assert_eq!(bytes.len(), HEADER_V3_SIZE);
        assert_eq!(Header::parse(&bytes).unwrap(), h);
        assert_eq!(h.sequence_offset(), Some(78 + (2 << 20)));
        assert_eq!(h.data_offset(), Some(78 + (2 << 20) + 12 + 64 + 160));
    }
}
