//! Reading a COW the way libsnapshot_cow's `CowReader` does (`parser_v2.cpp`,
//! `parser_v3.cpp`, `cow_reader.cpp`): ops in stream order with their data located, the merge
//! order (sequence data first, then the rest), the merge-order check (`VerifyMergeOps`), and
//! applying the COW over a base image (the snapshot's view of the new partition).

use std::collections::{HashMap, HashSet};

use super::compress::decompress;
use super::format::{
    Compression, Header, OpType, OpV2, OpV3, FOOTER_SIZE, OP_V2_SIZE, OP_V3_SIZE,
    RESUME_POINT_SIZE, SOURCE_MASK,
};
use super::writer::CowSink;
use super::CowError;

/// Random-access bytes: the COW file, or a base image.
pub trait ReadAt {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; a range past the end is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
    /// Whether [`ReadAt::with_range`] lends the source's bytes without copying them (a
    /// memory-mapped file): a sequential reader then needs no read-ahead.
    fn lends(&self) -> bool {
        false
    }
    /// Calls `f` with the `len` bytes at `offset`, read into `buf` unless the source can lend
    /// them without a copy.
    fn with_range(
        &self,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(&[u8]) -> Result<(), CowError>,
    ) -> Result<(), CowError> {
        buf.resize(len, 0);
        self.read_at(offset, buf)?;
        f(buf)
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (**self).read_at(offset, buf)
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// One op, translated to a version-independent form (as AOSP translates v2 ops to v3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The op type.
    pub kind: OpType,
    /// The block of the new image it writes.
    pub new_block: u64,
    /// Copy: old block; XOR: byte offset in the old image; replace/sequence: data offset in the
    /// COW; label: the label.
    pub source: u64,
    /// Bytes of data the op carries.
    pub data_length: u32,
    /// log2 of the op's unit over the block size (v3 multi-block compression).
    pub factor_bits: u8,
    /// Where the op's data lies in the COW.
    pub data_offset: u64,
}

/// A v3 resume point: a label and the number of ops durable with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The label.
    pub label: u64,
    /// Number of ops durable with it.
    pub op_index: u64,
}

/// A parsed COW.
#[derive(Clone, Debug)]
pub struct CowReader {
    /// The header.
    pub header: Header,
    /// Every op in stream order; v2 metadata ops (label, cluster, sequence) included.
    pub ops: Vec<Op>,
    /// The merge order's head: new blocks of the ordered ops.
    pub sequence: Vec<u32>,
    /// The v3 resume points.
    pub resume_points: Vec<ResumePoint>,
    /// v2: the footer's op count.
    pub footer_ops: Option<u64>,
    /// The last label op in the stream (v2), if any.
    pub last_label: Option<u64>,
    /// The compression of the data (v3: the header's; v2: the ops' one algorithm).
    pub compression: Compression,
}

/// A unit larger than this is refused before anything is allocated for it.
const MAX_UNIT: u64 = 1 << 24;

fn read_vec(src: &(impl ReadAt + ?Sized), offset: u64, len: u64) -> Result<Vec<u8>, CowError> {
    let end = offset
        .checked_add(len)
        .ok_or_else(|| CowError::malformed("offset overflow"))?;
    if end > src.size() {
        return Err(CowError::malformed(format!(
            "range {offset}..{end} is past the end of the COW ({} bytes)",
            src.size()
        )));
    }
    let mut v = vec![0u8; len as usize];
    src.read_at(offset, &mut v)?;
    Ok(v)
}

/// A v2 op stream as `CowParserV2::ParseOps` walks it: clusters of op records, each
/// followed by their data, up to the footer or the label asked for.
struct V2Stream {
    /// The ops with where their data starts.
    raw: Vec<(OpV2, u64)>,
    footer: Option<OpV2>,
    last_label: Option<u64>,
    /// Every label op met, in stream order.
    labels: Vec<u64>,
}

impl V2Stream {
    /// Walks the stream of `header` (its `buffer_size` already 0 for v1). `tolerant` (the
    /// labels of a COW whose writer was killed): an unreadable or unknown op record ends the
    /// walk instead of failing it, as the tail after the last synced label may be torn.
    fn walk(
        src: &(impl ReadAt + ?Sized),
        header: &Header,
        label: Option<u64>,
        tolerant: bool,
    ) -> Result<V2Stream, CowError> {
        let size = src.size();
        let mut pos = u64::from(header.header_size) + u64::from(header.buffer_size);
        let cluster_ops = header.cluster_ops;
        let step = if cluster_ops > 0 { cluster_ops } else { 1 };
        let mut data_pos = pos + u64::from(step) * OP_V2_SIZE as u64;
        let mut out = V2Stream {
            raw: Vec::new(),
            footer: None,
            last_label: None,
            labels: Vec::new(),
        };
        loop {
            let to_add = u64::from(step).min(size.saturating_sub(pos) / OP_V2_SIZE as u64);
            if to_add == 0 {
                return Ok(out);
            }
            let bytes = match read_vec(src, pos, to_add * OP_V2_SIZE as u64) {
                Ok(b) => b,
                Err(_) if tolerant => return Ok(out),
                Err(e) => return Err(e),
            };
            for rec in bytes.chunks_exact(OP_V2_SIZE) {
                let op = OpV2::parse(rec);
                if tolerant
                    && op.op_type != OpType::Footer as u8
                    && OpType::from_u8(op.op_type).is_none()
                {
                    return Ok(out);
                }
                let at = data_pos;
                let next = pos
                    .checked_add(OP_V2_SIZE as u64)
                    .and_then(|p| p.checked_add(op.next_op_offset(cluster_ops)));
                let next_data = u64::from(op.data_length)
                    .checked_add(op.next_data_offset(cluster_ops))
                    .and_then(|n| data_pos.checked_add(n));
                let (Some(next), Some(next_data)) = (next, next_data) else {
                    if tolerant {
                        return Ok(out);
                    }
                    return Err(CowError::malformed("op offset overflow"));
                };
                pos = next;
                data_pos = next_data;
                if op.op_type == OpType::Footer as u8 {
                    read_vec(src, pos, (FOOTER_SIZE - OP_V2_SIZE) as u64)?;
                    out.footer = Some(op);
                    return Ok(out);
                }
                out.raw.push((op, at));
                if op.op_type == OpType::Cluster as u8 {
                    break;
                }
                if op.op_type == OpType::Label as u8 {
                    out.last_label = Some(op.source);
                    out.labels.push(op.source);
                    if label == Some(op.source) {
                        return Ok(out);
                    }
                }
            }
        }
    }
}

/// The v3 resume buffer as the header counts it.
fn read_resume_points(
    src: &(impl ReadAt + ?Sized),
    header: &Header,
) -> Result<Vec<ResumePoint>, CowError> {
    let stored = header.resume_point_count.min(header.resume_point_max);
    let offset = header
        .resume_offset()
        .ok_or_else(|| CowError::malformed("offsets overflow"))?;
    let rp = read_vec(src, offset, u64::from(stored) * RESUME_POINT_SIZE as u64)?;
    Ok(rp
        .chunks_exact(RESUME_POINT_SIZE)
        .map(|c| ResumePoint {
            label: u64::from_le_bytes(c[..8].try_into().unwrap_or_default()),
            op_index: u64::from_le_bytes(c[8..].try_into().unwrap_or_default()),
        })
        .collect())
}

impl CowReader {
    /// Parses the COW. With `label`, reads up to that label (v2: the label op; v3: its resume
    /// point), as a writer resuming does; without, the whole COW (v2 needs its footer).
    pub fn parse(src: &(impl ReadAt + ?Sized), label: Option<u64>) -> Result<CowReader, CowError> {
        let head = read_vec(src, 0, src.size().min(super::format::HEADER_V3_SIZE as u64))?;
        let header = Header::parse(&head)?;
        if header.block_size == 0 || u64::from(header.block_size) > MAX_UNIT {
            return Err(CowError::malformed(format!(
                "block size {}",
                header.block_size
            )));
        }
        match header.major {
            1 | 2 => Self::parse_v2(src, header, label),
            3 => Self::parse_v3(src, header, label),
            v => Err(CowError::malformed(format!("unknown COW version {v}"))),
        }
    }

    fn parse_v2(
        src: &(impl ReadAt + ?Sized),
        mut header: Header,
        label: Option<u64>,
    ) -> Result<CowReader, CowError> {
        if header.footer_size as usize != FOOTER_SIZE {
            return Err(CowError::malformed(format!(
                "footer size {}",
                header.footer_size
            )));
        }
        if header.op_size as usize != OP_V2_SIZE {
            return Err(CowError::malformed(format!("op size {}", header.op_size)));
        }
        if header.cluster_ops == 1 {
            return Err(CowError::malformed("clusters of one op"));
        }
        if header.minor != 0 {
            return Err(CowError::malformed(format!(
                "version {}.{}",
                header.major, header.minor
            )));
        }
        if !(header.major >= 2 && header.buffer_size > 0) {
            header.buffer_size = 0;
        }
        let V2Stream {
            raw,
            footer,
            last_label,
            ..
        } = V2Stream::walk(src, &header, label, false)?;
        if let Some(want) = label {
            if last_label != Some(want) {
                return Err(CowError::malformed(format!(
                    "label {want} not found (last label {last_label:?})"
                )));
            }
        } else if footer.is_none() {
            return Err(CowError::malformed("no COW footer"));
        }
        if let Some(f) = &footer {
            if raw.len() as u64 != f.source || raw.len() as u64 * OP_V2_SIZE as u64 != f.new_block {
                return Err(CowError::malformed(format!(
                    "footer counts {} ops, found {}",
                    f.source,
                    raw.len()
                )));
            }
        }
        let mut compression = Compression::None;
        let mut ops = Vec::with_capacity(raw.len());
        let mut sequence = Vec::new();
        for (op, at) in raw {
            let kind = OpType::from_u8(op.op_type)
                .ok_or_else(|| CowError::malformed(format!("unknown op type {}", op.op_type)))?;
            if op.new_block > u64::from(u32::MAX) {
                return Err(CowError::malformed(format!("new block {}", op.new_block)));
            }
            if kind != OpType::Label && op.source > SOURCE_MASK {
                return Err(CowError::malformed(format!("source {}", op.source)));
            }
            if op.compression != 0 {
                let c = Compression::from_u32(u32::from(op.compression)).ok_or_else(|| {
                    CowError::malformed(format!("unknown compression {}", op.compression))
                })?;
                if compression == Compression::None {
                    compression = c;
                } else if compression != c {
                    return Err(CowError::malformed("mixed compression types"));
                }
            }
            let data_offset = match kind {
                OpType::Xor => at,
                OpType::Replace | OpType::Sequence => op.source,
                _ => 0,
            };
            if kind == OpType::Sequence {
                if op.data_length % 4 != 0 {
                    return Err(CowError::malformed("sequence data not whole u32s"));
                }
                let bytes = read_vec(src, data_offset, u64::from(op.data_length))?;
                sequence.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            ops.push(Op {
                kind,
                new_block: op.new_block,
                source: op.source,
                data_length: u32::from(op.data_length),
                factor_bits: 0,
                data_offset,
            });
        }
        header.compression_algorithm = compression as u32;
        Ok(CowReader {
            header,
            ops,
            sequence,
            resume_points: Vec::new(),
            footer_ops: footer.map(|f| f.source),
            last_label,
            compression,
        })
    }

    fn parse_v3(
        src: &(impl ReadAt + ?Sized),
        header: Header,
        label: Option<u64>,
    ) -> Result<CowReader, CowError> {
        let bad = |m: String| Err(CowError::malformed(m));
        if header.footer_size != 0 {
            return bad(format!("v3 footer size {}", header.footer_size));
        }
        if header.op_size as usize != OP_V3_SIZE {
            return bad(format!("op size {}", header.op_size));
        }
        if header.cluster_ops != 0 {
            return bad("cluster ops in v3".into());
        }
        if header.minor != 0 {
            return bad(format!("version 3.{}", header.minor));
        }
        let compression = Compression::from_u32(header.compression_algorithm).ok_or_else(|| {
            CowError::malformed(format!(
                "unknown compression {}",
                header.compression_algorithm
            ))
        })?;
        let overflow = || CowError::malformed("offsets overflow");
        let resume_points = read_resume_points(src, &header)?;
        let op_count = match label {
            None => header.op_count,
            Some(l) => match resume_points.iter().find(|p| p.label == l) {
                Some(p) => p.op_index,
                None => return bad(format!("label {l} not in the resume buffer")),
            },
        };
        let seq_bytes = read_vec(
            src,
            header.sequence_offset().ok_or_else(overflow)?,
            header
                .sequence_data_count
                .checked_mul(4)
                .ok_or_else(overflow)?,
        )?;
        let sequence = seq_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let op_bytes = read_vec(
            src,
            header.op_offset(0).ok_or_else(overflow)?,
            op_count
                .checked_mul(OP_V3_SIZE as u64)
                .ok_or_else(overflow)?,
        )?;
        let mut data_pos = header.data_offset().ok_or_else(overflow)?;
        let mut ops = Vec::with_capacity(op_bytes.len() / OP_V3_SIZE);
        for rec in op_bytes.chunks_exact(OP_V3_SIZE) {
            let op = OpV3::parse(rec);
            let kind = match OpType::from_u8(op.type_bits()) {
                Some(k @ (OpType::Copy | OpType::Replace | OpType::Zero | OpType::Xor)) => k,
                _ => return bad(format!("op type {} in v3", op.type_bits())),
            };
            if kind == OpType::Replace && op.source() != data_pos {
                return bad(format!(
                    "replace op of block {} has its data at {}, expected {data_pos}",
                    op.new_block,
                    op.source()
                ));
            }
            ops.push(Op {
                kind,
                new_block: u64::from(op.new_block),
                source: op.source(),
                data_length: op.data_length,
                factor_bits: op.factor_bits(),
                data_offset: data_pos,
            });
            data_pos = data_pos
                .checked_add(u64::from(op.data_length))
                .ok_or_else(overflow)?;
        }
        Ok(CowReader {
            header,
            ops,
            sequence,
            resume_points,
            footer_ops: None,
            last_label: label,
            compression,
        })
    }

    /// The labels a writer can resume from ([`super::CowWriter::resume`] reads only the ops
    /// up to one): after a crash the ops past the last synced label may be torn. v3: its
    /// resume points, from its header and resume buffer alone; v2: the label ops of its
    /// stream, walked up to the footer or the first op record that cannot be one (a torn
    /// tail ends the walk, it does not fail it).
    pub fn labels(src: &(impl ReadAt + ?Sized)) -> Result<Vec<u64>, CowError> {
        let head = read_vec(src, 0, src.size().min(super::format::HEADER_V3_SIZE as u64))?;
        let mut header = Header::parse(&head)?;
        if header.major != 3 {
            if header.major < 2 {
                header.buffer_size = 0;
            }
            return Ok(V2Stream::walk(src, &header, None, true)?.labels);
        }
        Ok(read_resume_points(src, &header)?
            .into_iter()
            .map(|p| p.label)
            .collect())
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        u64::from(self.header.block_size)
    }

    /// Bytes of the new image an op's data covers (`CowOpCompressionSize`).
    pub fn unit_size(&self, op: &Op) -> u64 {
        self.block_size() << op.factor_bits
    }

    /// The op's data, decompressed: `out` must be [`Self::unit_size`] long.
    pub fn read_data(
        &self,
        src: &(impl ReadAt + ?Sized),
        op: &Op,
        out: &mut [u8],
    ) -> Result<(), CowError> {
        let unit = self.unit_size(op);
        if out.len() as u64 != unit || unit > MAX_UNIT {
            return Err(CowError::malformed(format!(
                "op unit of {unit} bytes, buffer of {}",
                out.len()
            )));
        }
        let stored = read_vec(src, op.data_offset, u64::from(op.data_length))?;
        let raw = match self.compression {
            Compression::None => true,
            // v2's gz and brotli always hold a stream; lz4 and zstd fall back to raw data
            // that did not shrink, and so does every v3 unit.
            Compression::Gz | Compression::Brotli => {
                self.header.major == 3 && u64::from(op.data_length) == unit
            }
            Compression::Lz4 | Compression::Zstd => u64::from(op.data_length) == unit,
        };
        if raw {
            decompress(Compression::None, &stored, out)
        } else {
            decompress(self.compression, &stored, out)
        }
    }

    /// Op indexes in merge order: the sequence's ops, then every other data op by new block
    /// (`PrepMergeOps` for a userspace merge). Without sequence data, every ordered op (v2) or
    /// every op (v3) keeps its stream position at the head.
    pub fn merge_order(&self) -> Result<Vec<usize>, CowError> {
        let seq: HashSet<u32> = self.sequence.iter().copied().collect();
        let mut head: Vec<u64> = self.sequence.iter().map(|&b| u64::from(b)).collect();
        let mut others = Vec::new();
        let mut by_block: HashMap<u64, usize> = HashMap::new();
        let v3 = self.header.major == 3;
        for (i, op) in self.ops.iter().enumerate() {
            if op.kind.is_metadata() {
                continue;
            }
            if seq.is_empty() && (v3 || op.kind.is_ordered()) {
                head.push(op.new_block);
            } else if !u32::try_from(op.new_block).is_ok_and(|b| seq.contains(&b)) {
                others.push(op.new_block);
            }
            by_block.entry(op.new_block).or_insert(i);
        }
        others.sort_unstable();
        head.extend(others);
        head.iter()
            .map(|b| {
                by_block.get(b).copied().ok_or_else(|| {
                    CowError::malformed(format!("sequence names block {b}, which no op writes"))
                })
            })
            .collect()
    }

    /// `VerifyMergeOps`: merging in place in [`Self::merge_order`] never reads a block an
    /// earlier merged op overwrote, and ordered ops all come before the others.
    pub fn verify_merge_order(&self) -> Result<(), CowError> {
        let bs = self.block_size();
        let mut written: HashSet<u64> = HashSet::new();
        let mut unordered_seen = false;
        for i in self.merge_order()? {
            let op = &self.ops[i];
            if !op.kind.is_ordered() {
                unordered_seen = true;
            } else if unordered_seen {
                return Err(CowError::malformed(format!(
                    "ordered op of block {} merges after unordered ops",
                    op.new_block
                )));
            }
            let src = match op.kind {
                OpType::Copy => Some(op.source.saturating_mul(bs)),
                OpType::Xor => Some(op.source),
                _ => None,
            };
            if let Some(off) = src {
                let block = off / bs;
                if written.contains(&block) || (off % bs != 0 && written.contains(&(block + 1))) {
                    return Err(CowError::malformed(format!(
                        "op of block {} reads old block {block} after it was merged over",
                        op.new_block
                    )));
                }
            }
            written.insert(op.new_block);
        }
        Ok(())
    }

    /// The end of the last new block any data op writes, in bytes.
    pub fn image_end(&self) -> u64 {
        self.ops
            .iter()
            .filter(|op| !op.kind.is_metadata())
            .map(|op| {
                let blocks = if op.kind == OpType::Replace {
                    1u64 << op.factor_bits
                } else {
                    1
                };
                op.new_block
                    .saturating_add(blocks)
                    .saturating_mul(self.block_size())
            })
            .max()
            .unwrap_or(0)
    }

    /// The snapshot's view: writes every data op's new blocks into `out` (which holds the base
    /// image already), in stream order, reading copy and XOR sources from the untouched `base`.
    /// Blocks past `limit` bytes are refused.
    pub fn apply(
        &self,
        cow: &(impl ReadAt + ?Sized),
        base: &(impl ReadAt + ?Sized),
        out: &mut impl CowSink,
        limit: u64,
    ) -> Result<(), CowError> {
        let bs = self.block_size();
        let mut old = vec![0u8; bs as usize];
        let zero = vec![0u8; bs as usize];
        let mut buf = Vec::new();
        for op in &self.ops {
            if op.kind.is_metadata() {
                continue;
            }
            let at = op
                .new_block
                .checked_mul(bs)
                .ok_or_else(|| CowError::malformed("new block overflow"))?;
            let len = if op.kind == OpType::Replace {
                self.unit_size(op)
            } else {
                bs
            };
            if at.checked_add(len).map_or(true, |end| end > limit) {
                return Err(CowError::malformed(format!(
                    "op writes block {} past the image end {limit}",
                    op.new_block
                )));
            }
            match op.kind {
                OpType::Zero => out.write_at(at, &zero)?,
                OpType::Copy => {
                    let from = op
                        .source
                        .checked_mul(bs)
                        .ok_or_else(|| CowError::malformed("copy source overflow"))?;
                    read_base(base, from, &mut old)?;
                    out.write_at(at, &old)?;
                }
                OpType::Replace => {
                    buf.resize(len as usize, 0);
                    self.read_data(cow, op, &mut buf)?;
                    out.write_at(at, &buf)?;
                }
                OpType::Xor => {
                    buf.resize(bs as usize, 0);
                    self.read_data(cow, op, &mut buf)?;
                    read_base(base, op.source, &mut old)?;
                    for (b, o) in buf.iter_mut().zip(&old) {
                        *b ^= o;
                    }
                    out.write_at(at, &buf)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn read_base(base: &(impl ReadAt + ?Sized), from: u64, out: &mut [u8]) -> Result<(), CowError> {
    let end = from.checked_add(out.len() as u64);
    if end.map_or(true, |e| e > base.size()) {
        return Err(CowError::malformed(format!(
            "source range at {from} is past the end of the base image ({} bytes)",
            base.size()
        )));
    }
    base.read_at(from, out)?;
    Ok(())
}
