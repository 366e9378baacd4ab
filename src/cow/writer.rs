//! A streaming COW writer, v2 and v3, laying bytes out exactly where libsnapshot_cow's
//! `CowWriterV2`/`CowWriterV3` put them (Android 15). It never opens a file: every byte goes
//! to a [`CowSink`] at an offset. Memory stays bounded: data is handed to the sink as soon as
//! it is compressed; only op records wait, one v2 cluster or a batch of v3 ops at a time.
//! With several threads, the units of one call (or of one batch of runs from
//! `write_image_cow`) are compressed in parallel, each into its thread's reused arena, then
//! stored in order: the bytes never depend on the thread count.

use super::compress::{default_level, Compressor};
use super::format::{
    Compression, Header, OpType, OpV2, OpV3, FOOTER_SIZE, HEADER_V2_SIZE, HEADER_V3_SIZE,
    MAX_FACTOR_BITS, NUM_RESUME_POINTS, OP_V2_SIZE, OP_V3_SIZE, SCRATCH_SIZE, SOURCE_MASK,
};
use super::CowError;

/// Where the writer's bytes go: positional writes (most are sequential, op records are
/// written back into their reserved area).
pub trait CowSink {
    /// Writes all of `data` at `offset`, growing the sink as needed.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Makes what was written durable; called after each label, as AOSP syncs there.
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<T: CowSink + ?Sized> CowSink for Box<T> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        (**self).write_at(offset, data)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        (**self).sync()
    }
}

impl CowSink for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(|| std::io::Error::other("offset overflow"))?;
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(data);
        Ok(())
    }
}

/// The writer's settings; the defaults are `CowOptions`'s.
#[derive(Clone, Debug)]
pub struct CowOptions {
    /// 2 or 3 (1 writes as 2, as AOSP does).
    pub version: u16,
    /// Block size in bytes.
    pub block_size: u32,
    /// The data compression.
    pub compression: Compression,
    /// The algorithm's level; `None` for AOSP's default.
    pub level: Option<i32>,
    /// v3: the largest unit compressed at once, a power-of-two multiple of the block size up to
    /// 64 blocks (256 KiB with 4 KiB blocks).
    pub compression_factor: u32,
    /// v2: ops per cluster, 0 for none; 1 is invalid.
    pub cluster_ops: u32,
    /// Reserve the 2 MiB scratch area snapuserd's read-ahead needs.
    pub scratch_space: bool,
    /// The header's `num_merge_ops` (merge ops already done).
    pub num_merge_ops: u64,
    /// v3: size of the op area; 0 takes `max_blocks`.
    pub op_count_max: u64,
    /// Blocks of the target partition: new blocks past it are refused.
    pub max_blocks: Option<u64>,
    /// Compression threads; the output does not depend on it.
    pub threads: usize,
}

impl Default for CowOptions {
    fn default() -> Self {
        CowOptions {
            version: 3,
            block_size: 4096,
            compression: Compression::None,
            level: None,
            compression_factor: 4096,
            cluster_ops: 1024,
            scratch_space: true,
            num_merge_ops: 0,
            op_count_max: 0,
            max_blocks: None,
            threads: 1,
        }
    }
}

/// What a finished COW holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CowSummary {
    /// COPY ops written.
    pub copy_ops: u64,
    /// REPLACE ops written.
    pub replace_ops: u64,
    /// ZERO ops written.
    pub zero_ops: u64,
    /// XOR ops written.
    pub xor_ops: u64,
    /// Labels (resume points) written.
    pub labels: u64,
    /// Sequence entries written.
    pub sequence_entries: u64,
    /// Bytes of (compressed) data stored.
    pub data_bytes: u64,
    /// The end of the last byte written: the COW's size.
    pub file_size: u64,
}

/// v3 ops wait in memory up to this many before going to the sink.
const V3_OP_BATCH: usize = 4096;

enum Layout {
    V2(V2State),
    V3(V3State),
}

#[derive(Clone)]
struct V2State {
    next_op_pos: u64,
    next_data_pos: u64,
    cluster_size: u64,
    current_cluster_size: u64,
    current_data_size: u64,
    num_ops: u64,
    /// Op records not yet written, contiguous from `pending_at`.
    pending: Vec<u8>,
    pending_at: u64,
}

impl V2State {
    /// `InitPos`: the first op after the header and the scratch area, its data after the
    /// first cluster's op area (or after the op, unclustered).
    fn at_start(header: &Header) -> V2State {
        let cluster_size = u64::from(header.cluster_ops) * OP_V2_SIZE as u64;
        let first = u64::from(header.header_size) + u64::from(header.buffer_size);
        V2State {
            next_op_pos: first,
            next_data_pos: first
                + if cluster_size > 0 {
                    cluster_size
                } else {
                    OP_V2_SIZE as u64
                },
            cluster_size,
            current_cluster_size: 0,
            current_data_size: 0,
            num_ops: 0,
            pending: Vec::new(),
            pending_at: first,
        }
    }

    /// `AddOperation`: counts `op` and moves the next op and data positions past it.
    fn add(&mut self, op: &OpV2, cluster_ops: u32) -> Result<(), CowError> {
        self.num_ops += 1;
        if op.op_type == OpType::Cluster as u8 {
            self.current_cluster_size = 0;
            self.current_data_size = 0;
        } else if cluster_ops > 0 {
            self.current_cluster_size += OP_V2_SIZE as u64;
            self.current_data_size += u64::from(op.data_length);
        }
        self.next_data_pos = u64::from(op.data_length)
            .checked_add(op.next_data_offset(cluster_ops))
            .and_then(|n| self.next_data_pos.checked_add(n))
            .ok_or_else(overflow)?;
        self.next_op_pos = op
            .next_op_offset(cluster_ops)
            .checked_add(OP_V2_SIZE as u64)
            .and_then(|n| self.next_op_pos.checked_add(n))
            .ok_or_else(overflow)?;
        Ok(())
    }

    /// The footer counting the ops so far, as stored.
    fn footer(&self) -> Vec<u8> {
        let op = OpV2 {
            op_type: OpType::Footer as u8,
            compression: 0,
            data_length: 64,
            new_block: self.num_ops * OP_V2_SIZE as u64,
            source: self.num_ops,
        };
        let mut bytes = op.to_bytes().to_vec();
        bytes.resize(FOOTER_SIZE, 0);
        bytes
    }
}

struct V3State {
    next_data_pos: u64,
    pending: Vec<OpV3>,
    resume_points: Vec<(u64, u64)>,
}

/// The writer. Call the `add_*` methods in the order the ops should be stored, then
/// [`CowWriter::finalize`].
pub struct CowWriter<S: CowSink> {
    sink: S,
    header: Header,
    opts: CowOptions,
    /// One per compression thread (none without compression).
    workers: Vec<Worker>,
    layout: Layout,
    summary: CowSummary,
    ops_started: bool,
}

impl<S: CowSink> CowWriter<S> {
    /// Checks the options and writes the header and the scratch area.
    pub fn new(opts: CowOptions, mut sink: S) -> Result<Self, CowError> {
        let bs = opts.block_size;
        if bs == 0 || bs % 512 != 0 || bs > u32::from(u16::MAX) {
            return Err(CowError::invalid(format!("invalid block size {bs}")));
        }
        let v3 = match opts.version {
            1 | 2 => false,
            3 => true,
            v => return Err(CowError::invalid(format!("unknown COW version {v}"))),
        };
        let mut header = Header {
            major: 2,
            minor: 0,
            header_size: HEADER_V2_SIZE as u16,
            footer_size: FOOTER_SIZE as u16,
            op_size: OP_V2_SIZE as u16,
            block_size: bs,
            cluster_ops: opts.cluster_ops,
            num_merge_ops: opts.num_merge_ops,
            buffer_size: if opts.scratch_space { SCRATCH_SIZE } else { 0 },
            ..Header::default()
        };
        let unit;
        if v3 {
            let f = opts.compression_factor;
            let ok = f >= bs
                && f % bs == 0
                && (f / bs).is_power_of_two()
                && (f / bs).ilog2() <= u32::from(MAX_FACTOR_BITS);
            if !ok {
                return Err(CowError::invalid(format!("invalid compression factor {f}")));
            }
            let op_count_max = match (opts.op_count_max, opts.max_blocks) {
                (0, Some(m)) => m,
                (0, None) => {
                    return Err(CowError::invalid(
                        "v3 needs op_count_max or max_blocks to size its op area",
                    ))
                }
                (n, _) => n,
            };
            header.major = 3;
            header.header_size = HEADER_V3_SIZE as u16;
            header.footer_size = 0;
            header.op_size = OP_V3_SIZE as u16;
            header.cluster_ops = 0;
            header.resume_point_max = NUM_RESUME_POINTS;
            header.op_count_max = op_count_max;
            header.compression_algorithm = opts.compression as u32;
            header.max_compression_size = f;
            unit = f;
        } else {
            if opts.cluster_ops == 1 {
                return Err(CowError::invalid(
                    "clusters must contain at least two operations",
                ));
            }
            unit = bs;
        }
        let workers = make_workers(&opts, unit)?;

        sink.write_at(0, &header.to_bytes())?;
        let scratch_end = u64::from(header.header_size) + u64::from(header.buffer_size);
        let zeros = vec![0u8; 1 << 16];
        let mut at = u64::from(header.header_size);
        while at < scratch_end {
            let n = (scratch_end - at).min(zeros.len() as u64) as usize;
            sink.write_at(at, &zeros[..n])?;
            at += n as u64;
        }
        sink.sync()?;

        let layout = if v3 {
            Layout::V3(V3State {
                next_data_pos: header.data_offset().ok_or_else(overflow)?,
                pending: Vec::new(),
                resume_points: Vec::new(),
            })
        } else {
            Layout::V2(V2State::at_start(&header))
        };
        Ok(CowWriter {
            sink,
            header,
            opts,
            workers,
            layout,
            summary: CowSummary::default(),
            ops_started: false,
        })
    }

    /// Reopens a COW to append after its label `label`, dropping every op stored after it,
    /// as `CowWriterV3::Initialize(label)` and `CowWriterV2::Initialize(label)` do: a writer
    /// killed after `label` goes on from there. `cow` is the COW as stored; `opts` must name
    /// its block size and compression (and, v3, its compression factor). A v2 COW keeps its
    /// header's cluster size and scratch area, as `OpenForAppend` takes them from there.
    pub fn resume(
        opts: CowOptions,
        sink: S,
        cow: &(impl super::ReadAt + ?Sized),
        label: u64,
    ) -> Result<Self, CowError> {
        let parsed = super::CowReader::parse(cow, Some(label))?;
        let header = parsed.header.clone();
        let v3 = header.major == 3;
        if v3 != (opts.version == 3) {
            return Err(CowError::invalid(format!(
                "a v{} COW cannot be resumed as v{}",
                header.major, opts.version
            )));
        }
        // A v2 COW records its compression in its data ops only: one with none yet (copies
        // and labels) fits any.
        let compression_ok = if v3 {
            header.compression_algorithm == opts.compression as u32
                && header.max_compression_size == opts.compression_factor
        } else {
            matches!(parsed.compression, Compression::None)
                || parsed.compression == opts.compression
        };
        if header.block_size != opts.block_size || !compression_ok {
            return Err(CowError::invalid(
                "the COW's block size, compression or factor differ from the options",
            ));
        }
        let mut summary = CowSummary {
            sequence_entries: parsed.sequence.len() as u64,
            ..CowSummary::default()
        };
        for op in &parsed.ops {
            match op.kind {
                OpType::Copy => summary.copy_ops += 1,
                OpType::Zero => summary.zero_ops += 1,
                OpType::Xor => summary.xor_ops += 1,
                OpType::Replace => summary.replace_ops += 1,
                OpType::Label => summary.labels += 1,
                _ => {}
            }
            if op.kind != OpType::Sequence {
                summary.data_bytes += u64::from(op.data_length);
            }
        }
        let unit = if v3 {
            opts.compression_factor
        } else {
            opts.block_size
        };
        let workers = make_workers(&opts, unit)?;
        let mut w = CowWriter {
            sink,
            ops_started: false,
            header,
            opts,
            workers,
            layout: Layout::V2(V2State::at_start(&parsed.header)),
            summary,
        };
        if v3 {
            w.resume_v3(&parsed, label)?;
        } else {
            w.resume_v2(&parsed)?;
        }
        Ok(w)
    }

    /// `CowWriterV3::OpenForAppend`: the header counts the ops up to the label's resume point;
    /// later resume points are dropped.
    fn resume_v3(&mut self, parsed: &super::CowReader, label: u64) -> Result<(), CowError> {
        let kept: Vec<(u64, u64)> = parsed
            .resume_points
            .iter()
            .filter(|p| p.label <= label)
            .map(|p| (p.label, p.op_index))
            .collect();
        self.summary.labels = kept.len() as u64;
        self.header.op_count = parsed.ops.len() as u64;
        self.header.resume_point_count = kept.len() as u32;
        let data_start = self.header.data_offset().ok_or_else(overflow)?;
        let next_data_pos = parsed
            .ops
            .last()
            .map_or(Some(data_start), |op| {
                op.data_offset.checked_add(u64::from(op.data_length))
            })
            .ok_or_else(overflow)?;
        self.ops_started = self.header.op_count > 0 || self.header.sequence_data_count > 0;
        self.layout = Layout::V3(V3State {
            next_data_pos,
            pending: Vec::new(),
            resume_points: kept,
        });
        Ok(())
    }

    /// `CowWriterV2::OpenForAppend`: the ops up to the label (cluster ops included) are
    /// counted again from the start (`AddOperation`), which puts the next op and its data
    /// right after them, then the cluster closes if it has no room left
    /// (`EmitClusterIfNeeded`). What the killed writer left after the label is overwritten
    /// as the stream goes on; the footer comes at [`Self::finalize`].
    fn resume_v2(&mut self, parsed: &super::CowReader) -> Result<(), CowError> {
        let cluster_ops = self.header.cluster_ops;
        let st = self.v2()?;
        for op in &parsed.ops {
            let raw = OpV2 {
                op_type: op.kind as u8,
                compression: 0,
                data_length: u16::try_from(op.data_length).map_err(|_| overflow())?,
                new_block: op.new_block,
                source: op.source,
            };
            st.add(&raw, cluster_ops)?;
        }
        st.pending_at = st.next_op_pos;
        self.ops_started = !parsed.ops.is_empty();
        self.v2_emit_cluster_if_needed()
    }

    /// Writes the ops waiting in memory and (v3) the header counting them, (v2) a footer after
    /// them, without a label or a sync: a reader of the sink then sees every op added so far.
    /// The v2 footer is where the next op goes, which overwrites it, as `CowWriterV2`'s
    /// `Finalize` lets writing go on after it.
    pub fn flush(&mut self) -> Result<(), CowError> {
        if self.is_v3() {
            self.v3_flush()?;
            self.sink.write_at(0, &self.header.to_bytes())?;
        } else {
            self.v2_flush()?;
            let saved = self.v2()?.clone();
            self.v2_write_footer()?;
            self.layout = Layout::V2(saved);
        }
        Ok(())
    }

    /// The sink, for reading what was written.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// [`Self::flush`], then makes the sink durable.
    pub fn sync(&mut self) -> Result<(), CowError> {
        self.flush()?;
        self.sink.sync()?;
        Ok(())
    }

    /// The header as it stands.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn check_new_block(&self, last: u64) -> Result<(), CowError> {
        if let Some(max) = self.opts.max_blocks {
            if last >= max {
                return Err(CowError::invalid(format!(
                    "new block {last} exceeds the maximum block count {max}"
                )));
            }
        }
        if matches!(self.layout, Layout::V3(_)) && last > u64::from(u32::MAX) {
            return Err(CowError::invalid(format!(
                "new block {last} does not fit v3"
            )));
        }
        Ok(())
    }

    /// The merge order of the ordered (copy and XOR) ops, by new block. v3 allows it only
    /// before any op; v2 stores it as sequence ops (which need clusters: AOSP's v2 reader
    /// misplaces the next op after unclustered sequence data).
    pub fn add_sequence(&mut self, blocks: &[u32]) -> Result<(), CowError> {
        if blocks.is_empty() {
            return Ok(());
        }
        match &mut self.layout {
            Layout::V3(st) => {
                if self.ops_started || self.header.sequence_data_count != 0 {
                    return Err(CowError::invalid(
                        "v3 sequence data must come once, before every op",
                    ));
                }
                self.header.sequence_data_count = blocks.len() as u64;
                st.next_data_pos = self.header.data_offset().ok_or_else(overflow)?;
                let at = self.header.sequence_offset().ok_or_else(overflow)?;
                let mut bytes = Vec::with_capacity(blocks.len() * 4);
                for b in blocks {
                    bytes.extend_from_slice(&b.to_le_bytes());
                }
                self.sink.write_at(at, &bytes)?;
            }
            Layout::V2(_) => {
                if self.header.cluster_ops == 0 {
                    return Err(CowError::invalid(
                        "v2 sequence data needs clustered ops (cluster_ops > 0)",
                    ));
                }
                let per_op = (self.header.block_size as usize * 2) / 4;
                for chunk in blocks.chunks(per_op) {
                    let mut bytes = Vec::with_capacity(chunk.len() * 4);
                    for b in chunk {
                        bytes.extend_from_slice(&b.to_le_bytes());
                    }
                    let source = self.v2()?.next_data_pos;
                    let op = OpV2 {
                        op_type: OpType::Sequence as u8,
                        compression: 0,
                        data_length: bytes.len() as u16,
                        new_block: 0,
                        source,
                    };
                    self.v2_write(op, &bytes)?;
                }
            }
        }
        self.summary.sequence_entries += blocks.len() as u64;
        Ok(())
    }

    /// `num_blocks` copies, `new_block + i` from old block `old_block + i`.
    pub fn add_copy(
        &mut self,
        new_block: u64,
        old_block: u64,
        num_blocks: u64,
    ) -> Result<(), CowError> {
        if num_blocks == 0 {
            return Ok(());
        }
        let last = new_block.checked_add(num_blocks - 1).ok_or_else(overflow)?;
        self.check_new_block(last)?;
        let last_old = old_block.checked_add(num_blocks - 1).ok_or_else(overflow)?;
        if last_old > SOURCE_MASK {
            return Err(CowError::invalid(format!(
                "old block {last_old} out of range"
            )));
        }
        self.ops_started = true;
        for i in 0..num_blocks {
            match self.is_v3() {
                true => {
                    let op = OpV3::new(OpType::Copy, (new_block + i) as u32, old_block + i, 0, 0);
                    self.v3_push(op)?;
                }
                false => {
                    let op = OpV2 {
                        op_type: OpType::Copy as u8,
                        compression: 0,
                        data_length: 0,
                        new_block: new_block + i,
                        source: old_block + i,
                    };
                    self.v2_write(op, &[])?;
                }
            }
        }
        self.summary.copy_ops += num_blocks;
        Ok(())
    }

    /// Zero blocks `new_block .. new_block + num_blocks`.
    pub fn add_zero_blocks(&mut self, new_block: u64, num_blocks: u64) -> Result<(), CowError> {
        if num_blocks == 0 {
            return Ok(());
        }
        let last = new_block.checked_add(num_blocks - 1).ok_or_else(overflow)?;
        self.check_new_block(last)?;
        self.ops_started = true;
        for i in 0..num_blocks {
            match self.is_v3() {
                true => {
                    let op = OpV3::new(OpType::Zero, (new_block + i) as u32, 0, 0, 0);
                    self.v3_push(op)?;
                }
                false => {
                    let op = OpV2 {
                        op_type: OpType::Zero as u8,
                        new_block: new_block + i,
                        ..OpV2::default()
                    };
                    self.v2_write(op, &[])?;
                }
            }
        }
        self.summary.zero_ops += num_blocks;
        Ok(())
    }

    /// New blocks from `new_block` on, with `data` (a whole number of blocks).
    pub fn add_raw_blocks(&mut self, new_block: u64, data: &[u8]) -> Result<(), CowError> {
        self.add_data_blocks(OpType::Replace, new_block, data, 0)
    }

    /// XOR blocks: new block `new_block + i` is `data` block `i` XOR the old image's bytes at
    /// `(old_block + i) * block_size + offset`.
    pub fn add_xor_blocks(
        &mut self,
        new_block: u32,
        data: &[u8],
        old_block: u32,
        offset: u16,
    ) -> Result<(), CowError> {
        if u32::from(offset) >= self.header.block_size {
            return Err(CowError::invalid(format!(
                "XOR offset {offset} is not below the block size"
            )));
        }
        let source = u64::from(old_block) * u64::from(self.header.block_size) + u64::from(offset);
        self.add_data_blocks(OpType::Xor, u64::from(new_block), data, source)
    }

    fn add_data_blocks(
        &mut self,
        kind: OpType,
        new_block: u64,
        data: &[u8],
        xor_source: u64,
    ) -> Result<(), CowError> {
        let run = DataRun {
            kind,
            new_block,
            data,
            xor_source,
        };
        self.add_runs(&[Run::Data(run)])
    }

    /// Adds `runs` in order, exactly as the one-run-at-a-time calls would
    /// (`add_zero_blocks`, `add_raw_blocks`, `add_xor_blocks`), but compresses the data units
    /// of all of them together, on the writer's threads.
    pub(crate) fn add_runs(&mut self, runs: &[Run<'_>]) -> Result<(), CowError> {
        let bs = self.header.block_size as usize;
        let mut slices: Vec<&[u8]> = Vec::new();
        for run in runs {
            let Run::Data(r) = run else { continue };
            if r.data.len() % bs != 0 {
                return Err(CowError::invalid(format!(
                    "data size {} is not a multiple of {bs}",
                    r.data.len()
                )));
            }
            let blocks = (r.data.len() / bs) as u64;
            if blocks == 0 {
                continue;
            }
            let last = r.new_block.checked_add(blocks - 1).ok_or_else(overflow)?;
            self.check_new_block(last)?;
            let last_src = r
                .xor_source
                .checked_add((blocks - 1) * bs as u64)
                .ok_or_else(overflow)?;
            if last_src > SOURCE_MASK {
                return Err(CowError::invalid("XOR source out of range"));
            }
            let mut at = 0;
            for unit in self.units(r.kind, r.data.len()) {
                slices.push(&r.data[at..at + unit]);
                at += unit;
            }
        }
        let mut workers = std::mem::take(&mut self.workers);
        let result = compress_all(&mut workers, &slices, self.keep_raw_rule())
            .and_then(|stored| self.emit_runs(runs, &slices, &stored, &workers));
        self.workers = workers;
        result
    }

    /// Writes the data and the ops of `runs`, whose units are `slices`, stored as `stored`.
    fn emit_runs(
        &mut self,
        runs: &[Run<'_>],
        slices: &[&[u8]],
        stored: &[Stored],
        workers: &[Worker],
    ) -> Result<(), CowError> {
        let bs = self.header.block_size as u64;
        let mut units = slices.iter().zip(stored);
        for run in runs {
            let r = match run {
                Run::Zero { new_block, blocks } => {
                    self.add_zero_blocks(*new_block, *blocks)?;
                    continue;
                }
                Run::Data(r) => r,
            };
            let blocks = r.data.len() as u64 / bs;
            let mut done = 0u64;
            while done < blocks {
                let (unit, how) = units
                    .next()
                    .ok_or_else(|| CowError::invalid("compressed units missing"))?;
                let payload = match *how {
                    Stored::Raw => *unit,
                    Stored::At { worker, start, len } => workers
                        .get(worker)
                        .and_then(|w| w.arena.get(start..start + len))
                        .ok_or_else(|| CowError::invalid("compressed unit missing"))?,
                };
                self.ops_started = true;
                self.emit_unit(
                    r.kind,
                    r.new_block + done,
                    r.xor_source + done * bs,
                    unit.len(),
                    payload,
                )?;
                done += unit.len() as u64 / bs;
            }
        }
        Ok(())
    }

    /// One data op of `unit_len` new bytes at `first`, stored as `payload`.
    fn emit_unit(
        &mut self,
        kind: OpType,
        first: u64,
        src: u64,
        unit_len: usize,
        payload: &[u8],
    ) -> Result<(), CowError> {
        let bs = self.header.block_size as usize;
        let len = payload.len();
        match &mut self.layout {
            Layout::V3(st) => {
                let pos = st.next_data_pos;
                let bits = (unit_len / bs).ilog2() as u8;
                let source = if kind == OpType::Xor { src } else { pos };
                if pos > SOURCE_MASK {
                    return Err(CowError::invalid("COW data offset out of range"));
                }
                self.sink.write_at(pos, payload)?;
                let st = self.v3()?;
                st.next_data_pos = pos.checked_add(len as u64).ok_or_else(overflow)?;
                self.v3_push(OpV3::new(kind, first as u32, source, bits, len as u32))?;
            }
            Layout::V2(st) => {
                let data_length = u16::try_from(len).map_err(|_| {
                    CowError::compression(format!("compressed block of {len} bytes"))
                })?;
                let source = if kind == OpType::Xor {
                    src
                } else {
                    st.next_data_pos
                };
                let op = OpV2 {
                    op_type: kind as u8,
                    compression: self.opts.compression as u8,
                    data_length,
                    new_block: first,
                    source,
                };
                self.v2_write(op, payload)?;
            }
        }
        self.summary.data_bytes += len as u64;
        match kind {
            OpType::Xor => self.summary.xor_ops += 1,
            _ => self.summary.replace_ops += 1,
        }
        Ok(())
    }

    /// Unit sizes for a run of `len` bytes: v3 takes the largest factor that the remaining
    /// blocks fill (`GetCompressionFactor`), XOR always one block; v2 one block each.
    fn units(&self, kind: OpType, len: usize) -> impl Iterator<Item = usize> {
        let bs = self.header.block_size as usize;
        let max = match self.layout {
            Layout::V3(_) if kind != OpType::Xor => self.header.max_compression_size as usize,
            _ => bs,
        };
        let mut left = len;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let mut f = max;
            while f > bs && f > left {
                f >>= 1;
            }
            left -= f;
            Some(f)
        })
    }

    /// Which compressed units are stored raw instead: `None` stores everything raw; v3 any
    /// unit that did not shrink; v2's lz4 and zstd compressors return the input when it did
    /// not shrink, gz and brotli keep their output.
    fn keep_raw_rule(&self) -> KeepRaw {
        let alg = self.opts.compression;
        if alg == Compression::None {
            KeepRaw::Always
        } else if self.is_v3() || matches!(alg, Compression::Lz4 | Compression::Zstd) {
            KeepRaw::IfNotSmaller
        } else {
            KeepRaw::Never
        }
    }

    /// A resume point: everything before it is durable once this returns.
    pub fn add_label(&mut self, label: u64) -> Result<(), CowError> {
        match self.is_v3() {
            true => {
                self.v3_flush()?;
                let op_count = self.header.op_count;
                let st = self.v3()?;
                st.resume_points.retain(|&(l, _)| l < label);
                st.resume_points.push((label, op_count));
                while st.resume_points.len() > NUM_RESUME_POINTS as usize {
                    st.resume_points.remove(0);
                }
                let mut bytes = Vec::new();
                for (l, i) in &st.resume_points {
                    bytes.extend_from_slice(&l.to_le_bytes());
                    bytes.extend_from_slice(&i.to_le_bytes());
                }
                // AOSP counts every label ever added here, past the buffer's four entries;
                // the number actually stored is what a reader can use.
                self.header.resume_point_count = st.resume_points.len() as u32;
                let at = self.header.resume_offset().ok_or_else(overflow)?;
                self.sink.write_at(at, &bytes)?;
                self.sink.write_at(0, &self.header.to_bytes())?;
            }
            false => {
                let op = OpV2 {
                    op_type: OpType::Label as u8,
                    source: label,
                    ..OpV2::default()
                };
                self.v2_write(op, &[])?;
                self.v2_flush()?;
            }
        }
        self.summary.labels += 1;
        self.sink.sync()?;
        Ok(())
    }

    /// Writes what is pending, the v2 footer or the final v3 header; returns the sink.
    pub fn finalize(mut self) -> Result<(S, CowSummary), CowError> {
        match self.is_v3() {
            true => {
                self.v3_flush()?;
                self.sink.write_at(0, &self.header.to_bytes())?;
                let end = self.v3()?.next_data_pos;
                let ops_end = self
                    .header
                    .op_offset(self.header.op_count)
                    .ok_or_else(overflow)?;
                self.summary.file_size = if self.summary.data_bytes > 0 {
                    end
                } else {
                    ops_end
                };
            }
            false => {
                self.summary.file_size = self.v2_write_footer()?;
            }
        }
        self.sink.sync()?;
        Ok((self.sink, self.summary))
    }

    /// `CowWriterV2::Finalize`: the ops pending, then the footer; returns where the footer
    /// ends.
    fn v2_write_footer(&mut self) -> Result<u64, CowError> {
        self.v2_flush()?;
        let st = self.v2()?;
        let unused = st.cluster_size.saturating_sub(st.current_cluster_size);
        if st.cluster_size > 0 && st.current_data_size > 0 {
            // The rest of the op area stays blank; the footer must end the file, so the
            // cluster closes and the footer starts the next one.
            let at = st.next_op_pos;
            self.sink.write_at(at, &vec![0u8; unused as usize])?;
            self.v2_emit_cluster()?;
            self.v2_flush()?;
        }
        let st = self.v2()?;
        let (at, bytes) = (st.next_op_pos, st.footer());
        self.sink.write_at(at, &bytes)?;
        Ok(at + FOOTER_SIZE as u64)
    }

    fn v2(&mut self) -> Result<&mut V2State, CowError> {
        match &mut self.layout {
            Layout::V2(st) => Ok(st),
            Layout::V3(_) => Err(CowError::invalid("v2 state of a v3 writer")),
        }
    }

    fn v3(&mut self) -> Result<&mut V3State, CowError> {
        match &mut self.layout {
            Layout::V3(st) => Ok(st),
            Layout::V2(_) => Err(CowError::invalid("v3 state of a v2 writer")),
        }
    }

    fn is_v3(&self) -> bool {
        matches!(self.layout, Layout::V3(_))
    }

    fn v3_push(&mut self, op: OpV3) -> Result<(), CowError> {
        let max = self.header.op_count_max;
        let done = self.header.op_count;
        let st = self.v3()?;
        let total = done + st.pending.len() as u64 + 1;
        if total > max {
            return Err(CowError::invalid(format!(
                "{total} ops exceed the COW's op_count_max {max}"
            )));
        }
        let st = self.v3()?;
        st.pending.push(op);
        if st.pending.len() >= V3_OP_BATCH {
            self.v3_flush()?;
        }
        Ok(())
    }

    fn v3_flush(&mut self) -> Result<(), CowError> {
        let at = self
            .header
            .op_offset(self.header.op_count)
            .ok_or_else(overflow)?;
        let st = self.v3()?;
        if st.pending.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(st.pending.len() * OP_V3_SIZE);
        for op in &st.pending {
            bytes.extend_from_slice(&op.to_bytes());
        }
        let n = st.pending.len() as u64;
        st.pending.clear();
        self.sink.write_at(at, &bytes)?;
        self.header.op_count += n;
        Ok(())
    }

    /// `WriteOperation` + `AddOperation` + `EmitClusterIfNeeded` of `CowWriterV2`.
    fn v2_write(&mut self, op: OpV2, data: &[u8]) -> Result<(), CowError> {
        let cluster_ops = self.header.cluster_ops;
        let st = self.v2()?;
        if st.pending_at + st.pending.len() as u64 != st.next_op_pos {
            self.v2_flush()?;
        }
        let st = self.v2()?;
        if st.pending.is_empty() {
            st.pending_at = st.next_op_pos;
        }
        st.pending.extend_from_slice(&op.to_bytes());
        let data_at = st.next_data_pos;
        st.add(&op, cluster_ops)?;
        let flush = st.pending.len() >= 1 << 16;
        if !data.is_empty() {
            self.sink.write_at(data_at, data)?;
        }
        if flush {
            self.v2_flush()?;
        }
        self.v2_emit_cluster_if_needed()
    }

    /// `EmitClusterIfNeeded`: closes the cluster when it has no room for another op and the
    /// cluster op.
    fn v2_emit_cluster_if_needed(&mut self) -> Result<(), CowError> {
        let st = self.v2()?;
        if st.cluster_size > 0 && st.cluster_size < st.current_cluster_size + 2 * OP_V2_SIZE as u64
        {
            self.v2_emit_cluster()?;
        }
        Ok(())
    }

    fn v2_emit_cluster(&mut self) -> Result<(), CowError> {
        let st = self.v2()?;
        let source =
            st.current_data_size + st.cluster_size - st.current_cluster_size - OP_V2_SIZE as u64;
        let op = OpV2 {
            op_type: OpType::Cluster as u8,
            source,
            ..OpV2::default()
        };
        self.v2_write(op, &[])
    }

    fn v2_flush(&mut self) -> Result<(), CowError> {
        let st = self.v2()?;
        if st.pending.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut st.pending);
        let at = st.pending_at;
        self.sink.write_at(at, &bytes)?;
        let st = self.v2()?;
        st.pending = bytes;
        st.pending.clear();
        Ok(())
    }
}

/// One compression worker per thread for units of `unit` bytes (none without compression).
fn make_workers(opts: &CowOptions, unit: u32) -> Result<Vec<Worker>, CowError> {
    if opts.compression == Compression::None {
        return Ok(Vec::new());
    }
    let level = opts
        .level
        .unwrap_or_else(|| default_level(opts.compression));
    (0..opts.threads.max(1))
        .map(|_| {
            Ok(Worker {
                compressor: Compressor::new(opts.compression, level, unit)?,
                arena: Vec::new(),
            })
        })
        .collect()
}

/// A run of ops for [`CowWriter::add_runs`].
pub(crate) enum Run<'a> {
    /// `blocks` zero blocks from `new_block` on.
    Zero { new_block: u64, blocks: u64 },
    /// Replace or XOR blocks.
    Data(DataRun<'a>),
}

/// Replace or XOR blocks from `new_block` on; XOR sources start at byte `xor_source` of the
/// old image.
pub(crate) struct DataRun<'a> {
    pub kind: OpType,
    pub new_block: u64,
    pub data: &'a [u8],
    pub xor_source: u64,
}

/// A compression thread's compressor and the compressed units of the current batch.
struct Worker {
    compressor: Compressor,
    arena: Vec<u8>,
}

/// Where a unit's stored bytes are: the unit itself, or a span of a worker's arena.
#[derive(Clone, Copy)]
enum Stored {
    Raw,
    At {
        worker: usize,
        start: usize,
        len: usize,
    },
}

#[derive(Clone, Copy)]
enum KeepRaw {
    Always,
    IfNotSmaller,
    Never,
}

/// Compresses `units`, spread over `workers` (the calling thread is the first; units are
/// handed out one at a time, so a slow unit does not hold up the rest). What is stored
/// depends only on each unit, never on which worker took it.
fn compress_all(
    workers: &mut [Worker],
    units: &[&[u8]],
    keep_raw: KeepRaw,
) -> Result<Vec<Stored>, CowError> {
    if matches!(keep_raw, KeepRaw::Always) || units.is_empty() {
        return Ok(vec![Stored::Raw; units.len()]);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |index: usize, w: &mut Worker| -> Result<Vec<(usize, Stored)>, CowError> {
        w.arena.clear();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(unit) = units.get(i) else {
                return Ok(done);
            };
            let z = w.compressor.compress_slice(unit)?;
            if matches!(keep_raw, KeepRaw::IfNotSmaller) && z.len() >= unit.len() {
                done.push((i, Stored::Raw));
                continue;
            }
            let start = w.arena.len();
            w.arena.extend_from_slice(z);
            let len = z.len();
            done.push((
                i,
                Stored::At {
                    worker: index,
                    start,
                    len,
                },
            ));
        }
    };
    let threads = workers.len().min(units.len());
    let (first, rest) = match workers[..threads].split_first_mut() {
        Some(split) => split,
        None => return Err(CowError::compression("no compressor")),
    };
    let results: Vec<Result<Vec<(usize, Stored)>, CowError>> = std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = rest
            .iter_mut()
            .enumerate()
            .map(|(i, w)| scope.spawn(move || work(i + 1, w)))
            .collect();
        let mut results = vec![work(0, first)];
        for h in handles {
            results.push(
                h.join()
                    .unwrap_or_else(|_| Err(CowError::compression("compression thread panicked"))),
            );
        }
        results
    });
    let mut stored = vec![Stored::Raw; units.len()];
    for r in results {
        for (i, how) in r? {
            stored[i] = how;
        }
    }
    Ok(stored)
}

fn overflow() -> CowError {
    CowError::invalid("COW offsets overflow")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cow::CowReader;

    fn opts() -> CowOptions {
        CowOptions {
            compression: Compression::Lz4,
            compression_factor: 16384,
            max_blocks: Some(64),
            ..CowOptions::default()
        }
    }

    fn blocks(seed: u8, n: usize) -> Vec<u8> {
        (0..n * 4096)
            .map(|i| (i / 7) as u8 ^ seed.wrapping_mul(31))
            .collect()
    }

    /// A writer killed after label 2 (with ops after it on disk) and reopened there ends with
    /// exactly the COW an uninterrupted writer makes.
    #[test]
    fn resuming_at_a_label_drops_what_came_after_it() {
        let first = |w: &mut CowWriter<Vec<u8>>| {
            w.add_sequence(&[3, 4]).unwrap();
            w.add_copy(3, 4, 1).unwrap();
            w.add_copy(4, 5, 1).unwrap();
            w.add_label(1).unwrap();
            w.add_raw_blocks(8, &blocks(1, 6)).unwrap();
            w.add_label(2).unwrap();
        };
        let rest = |w: &mut CowWriter<Vec<u8>>| {
            w.add_zero_blocks(20, 3).unwrap();
            w.add_raw_blocks(30, &blocks(2, 5)).unwrap();
            w.add_label(3).unwrap();
        };
        let mut straight = CowWriter::new(opts(), Vec::new()).unwrap();
        first(&mut straight);
        rest(&mut straight);
        let (straight, _) = straight.finalize().unwrap();

        let mut killed = CowWriter::new(opts(), Vec::new()).unwrap();
        first(&mut killed);
        write_past_the_label(&mut killed);
        let disk = killed.sink().clone();
        let mut resumed = CowWriter::resume(opts(), disk.clone(), &disk, 2).unwrap();
        rest(&mut resumed);
        let (resumed, summary) = resumed.finalize().unwrap();

        let (a, b) = (
            CowReader::parse(&straight, None).unwrap(),
            CowReader::parse(&resumed, None).unwrap(),
        );
        assert_eq!(a.ops, b.ops);
        assert_eq!(a.sequence, b.sequence);
        assert_eq!(a.resume_points, b.resume_points);
        let image = |r: &CowReader, cow: &Vec<u8>| {
            let base = vec![0x11u8; 64 * 4096];
            let mut out = base.clone();
            r.apply(cow, &base, &mut out, base.len() as u64).unwrap();
            out
        };
        assert!(image(&a, &straight) == image(&b, &resumed));
        assert_eq!(
            (summary.copy_ops, summary.zero_ops, summary.labels),
            (2, 3, 3)
        );
        // Only a label the COW holds can be resumed, and only with the COW's own settings.
        assert!(CowWriter::resume(opts(), disk.clone(), &disk, 5).is_err());
        let other = CowOptions {
            compression: Compression::Gz,
            ..opts()
        };
        assert!(CowWriter::resume(other, disk.clone(), &disk, 2).is_err());
    }

    /// What a writer killed after label 2 had written after it and flushed: ops, data, a
    /// later label and more ops, which a resume at label 2 must drop.
    fn write_past_the_label(w: &mut CowWriter<Vec<u8>>) {
        w.add_raw_blocks(40, &blocks(9, 9)).unwrap();
        w.add_label(7).unwrap();
        w.add_zero_blocks(50, 2).unwrap();
        w.flush().unwrap();
    }

    fn v2_opts() -> CowOptions {
        CowOptions {
            version: 2,
            compression: Compression::Gz,
            // Small clusters: the labels below fall at every place in one.
            cluster_ops: 4,
            max_blocks: Some(64),
            ..CowOptions::default()
        }
    }

    fn v2_first(w: &mut CowWriter<Vec<u8>>) {
        w.add_sequence(&[3, 4]).unwrap();
        w.add_copy(3, 4, 1).unwrap();
        w.add_copy(4, 5, 1).unwrap();
        w.add_label(1).unwrap();
        w.add_raw_blocks(8, &blocks(1, 6)).unwrap();
        w.add_label(2).unwrap();
    }

    fn v2_rest(w: &mut CowWriter<Vec<u8>>) {
        w.add_zero_blocks(20, 3).unwrap();
        w.add_raw_blocks(30, &blocks(2, 5)).unwrap();
        w.add_label(3).unwrap();
        w.add_raw_blocks(36, &blocks(3, 1)).unwrap();
    }

    fn v2_straight() -> Vec<u8> {
        let mut w = CowWriter::new(v2_opts(), Vec::new()).unwrap();
        v2_first(&mut w);
        v2_rest(&mut w);
        let (cow, summary) = w.finalize().unwrap();
        assert_eq!(summary.file_size, cow.len() as u64);
        cow
    }

    /// A v2 writer killed after label 2, with ops, data, a label and a footer after it on
    /// disk, reopened there (`CowWriterV2::OpenForAppend`) ends with exactly the bytes an
    /// uninterrupted writer makes.
    #[test]
    fn v2_resuming_at_a_label_drops_what_came_after_it() {
        let straight = v2_straight();
        let mut killed = CowWriter::new(v2_opts(), Vec::new()).unwrap();
        v2_first(&mut killed);
        write_past_the_label(&mut killed);
        let disk = killed.sink().clone();
        // Without a label, the whole stream as flushed (a footer after the last op).
        let all = CowReader::parse(&disk, None).unwrap();
        assert_eq!(all.last_label, Some(7));
        assert_eq!(CowReader::labels(&disk).unwrap(), vec![1, 2, 7]);

        let mut resumed = CowWriter::resume(v2_opts(), disk.clone(), &disk, 2).unwrap();
        v2_rest(&mut resumed);
        let (resumed, summary) = resumed.finalize().unwrap();
        assert_eq!(
            (summary.copy_ops, summary.zero_ops, summary.labels),
            (2, 3, 3)
        );
        assert_eq!(summary.replace_ops, 12);
        let end = summary.file_size as usize;
        assert_eq!(end, straight.len());
        assert!(resumed[..end] == straight[..], "resumed bytes differ");
        let r = CowReader::parse(&resumed, None).unwrap();
        assert!(!r.ops.iter().any(|op| op.new_block >= 40));

        // Only a label the COW holds, only with its own version and compression.
        assert!(CowWriter::resume(v2_opts(), disk.clone(), &disk, 5).is_err());
        let gz3 = CowOptions {
            version: 3,
            ..v2_opts()
        };
        assert!(CowWriter::resume(gz3, disk.clone(), &disk, 2).is_err());
        let lz4 = CowOptions {
            compression: Compression::Lz4,
            ..v2_opts()
        };
        assert!(CowWriter::resume(lz4, disk.clone(), &disk, 2).is_err());
    }

    /// A v2 COW whose writer was killed before any footer, with a torn tail after label 2
    /// (garbage where ops would go): its labels end at the tail, it is read up to a label
    /// (not as a whole, which needs the footer) and resumes from label 2 to the bytes of an
    /// uninterrupted writer.
    #[test]
    fn v2_torn_tail_after_a_label_resumes() {
        let straight = v2_straight();
        let mut killed = CowWriter::new(v2_opts(), Vec::new()).unwrap();
        v2_first(&mut killed);
        // What a killed writer leaves: garbage in the cluster's op slots after the label and
        // where the next data would go (what came before the synced label is intact).
        let st = killed.v2().unwrap();
        let (ops_at, slots, data_at) = (
            st.next_op_pos,
            st.cluster_size - st.current_cluster_size,
            st.next_data_pos,
        );
        let mut disk = killed.sink().clone();
        let torn: Vec<u8> = (0..200u32).map(|i| (i * 97 % 251) as u8 | 0x80).collect();
        disk.write_at(ops_at, &torn[..slots as usize]).unwrap();
        disk.write_at(data_at, &torn).unwrap();
        assert!(CowReader::parse(&disk, None).is_err(), "no footer");
        assert_eq!(
            CowReader::parse(&disk, Some(2)).unwrap().last_label,
            Some(2)
        );
        assert_eq!(CowReader::labels(&disk).unwrap(), vec![1, 2]);
        let mut resumed = CowWriter::resume(v2_opts(), disk.clone(), &disk, 2).unwrap();
        v2_rest(&mut resumed);
        let (resumed, summary) = resumed.finalize().unwrap();
        let end = summary.file_size as usize;
        assert!(resumed[..end] == straight[..], "resumed bytes differ");
        // Resumed at label 1 instead, label 2's data ops are gone.
        let mut early = CowWriter::resume(v2_opts(), disk.clone(), &disk, 1).unwrap();
        v2_rest(&mut early);
        let (early, _) = early.finalize().unwrap();
        let r = CowReader::parse(&early, None).unwrap();
        assert!(!r.ops.iter().any(|op| (8..14).contains(&op.new_block)));
    }

    /// A flush (a footer after the ops so far) changes nothing of what follows it.
    #[test]
    fn v2_flush_mid_stream_leaves_the_stream_as_it_was() {
        let straight = v2_straight();
        let mut w = CowWriter::new(v2_opts(), Vec::new()).unwrap();
        v2_first(&mut w);
        w.add_zero_blocks(20, 1).unwrap();
        w.flush().unwrap();
        let r = CowReader::parse(w.sink(), None).unwrap();
        assert_eq!(r.footer_ops, Some(r.ops.len() as u64));
        w.add_zero_blocks(21, 2).unwrap();
        w.add_raw_blocks(30, &blocks(2, 5)).unwrap();
        w.add_label(3).unwrap();
        w.add_raw_blocks(36, &blocks(3, 1)).unwrap();
        let (cow, summary) = w.finalize().unwrap();
        assert!(cow[..summary.file_size as usize] == straight[..]);
    }
}
