//! Platform adapter: the target slot's partitions written as Virtual A/B snapshots, one COW
//! per partition over the partition's base (the running slot's blocks), as update_engine's
//! `VABCPartitionWriter` writes them. Where the COWs are is a [`CowFiles`]: files in a
//! directory ([`CowDir`]: `abupdate cow update`) or devices ([`CowDevices`]: the updater's
//! `<name>_<slot>-cow` partitions in `super`).
//!
//! A snapshot is created with the payload's ordered ops ([`crate::engine::cow_plan`]): the
//! merge sequence and every copy, then a label 0. The engine's writes then become ops: blocks
//! a copy already makes are skipped, blocks of a COW_XOR become XOR ops against the base,
//! zero blocks ZERO ops, the rest REPLACE data. The engine labels each snapshot at every
//! checkpoint (the checkpoint's next operation) and with the end label once its verity data
//! are written; a resumed run rewinds each COW to the label of its checkpoint, dropping what a
//! killed run wrote after it. Reads (the engine's hash, verity and AVB checks) see the
//! snapshot's view, base plus COW, read back from the COW file itself.
//!
//! COW versions 2 and 3: a v2 COW is reopened at a label from its op stream, a v3 COW from
//! its resume points.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cow::{BlockMap, CowOptions, CowReader, CowSink, CowWriter, ReadAt};
use crate::engine::cow_plan::{plan_partition, CowPlan, PlannedOp};
use crate::engine::{SlotPartitions, SourceRead, TargetWrite};
use crate::err;
use crate::error::Result;
use crate::payload::Manifest;

/// A COW file, read at offsets and written by the COW writer.
#[derive(Debug)]
pub struct CowFile {
    file: File,
}

impl CowFile {
    /// Opens `path` for reading and writing, creating it (mode 0600) if `create`.
    pub fn open(path: &Path, create: bool) -> io::Result<CowFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o600)
            .open(path)?;
        Ok(CowFile { file })
    }
}

impl ReadAt for CowFile {
    fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

impl CowSink for CowFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// A COW's bytes as the snapshot writer reads and writes them.
pub trait CowStorage: ReadAt + CowSink + Send + Sync {}

impl<T: ReadAt + CowSink + Send + Sync> CowStorage for T {}

/// Where the snapshots' COWs are, each named for its snapshot (`<name>_<slot>`, as libsnapshot
/// names them): files in a directory ([`CowDir`]), devices ([`CowDevices`]: the updater's
/// `-cow` partitions in `super`), or a layer over one (the power-cut tests record every write
/// and sync).
pub trait CowFiles: Send + Sync {
    /// The COW of `snapshot` opened for reading and writing; `None` if there is none.
    fn open(&self, snapshot: &str) -> io::Result<Option<Box<dyn CowStorage>>>;
    /// The COW of `snapshot` started over: a file is truncated (created if missing); a device
    /// keeps its bytes, as the new header says what counts.
    fn create(&self, snapshot: &str) -> io::Result<Box<dyn CowStorage>>;
}

/// COW files in a directory: `DIR/<name>_<slot>.cow`.
#[derive(Clone, Debug)]
pub struct CowDir(pub PathBuf);

impl CowDir {
    /// The file name of the COW of `snapshot`.
    pub fn file_name(snapshot: &str) -> String {
        format!("{snapshot}.cow")
    }

    /// The path of the COW of `snapshot`.
    pub fn path(&self, snapshot: &str) -> PathBuf {
        self.0.join(Self::file_name(snapshot))
    }
}

impl CowFiles for CowDir {
    fn open(&self, snapshot: &str) -> io::Result<Option<Box<dyn CowStorage>>> {
        match CowFile::open(&self.path(snapshot), false) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn create(&self, snapshot: &str) -> io::Result<Box<dyn CowStorage>> {
        let f = CowFile::open(&self.path(snapshot), true)?;
        f.file.set_len(0)?;
        Ok(Box::new(f))
    }
}

/// Opens the device holding the COW of a snapshot (by the snapshot's name, `<name>_<slot>`).
pub type CowOpener = dyn Fn(&str) -> Result<Box<dyn TargetWrite>> + Send + Sync;

/// COWs on devices, one per snapshot (Virtual A/B: the `<name>_<slot>-cow` partitions in
/// `super`). A device is never grown: a COW larger than it fails to write.
pub struct CowDevices(pub Box<CowOpener>);

/// A COW on a device (a `-cow` partition), read and written as the COW reader and writer do.
pub struct DeviceCow(pub Box<dyn TargetWrite>);

impl ReadAt for DeviceCow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }
}

impl CowSink for DeviceCow {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(data, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
}

impl CowDevices {
    fn device(&self, snapshot: &str) -> io::Result<Box<dyn CowStorage>> {
        let device = (self.0)(snapshot).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(DeviceCow(device)))
    }
}

impl CowFiles for CowDevices {
    fn open(&self, snapshot: &str) -> io::Result<Option<Box<dyn CowStorage>>> {
        self.device(snapshot).map(Some)
    }
    fn create(&self, snapshot: &str) -> io::Result<Box<dyn CowStorage>> {
        self.device(snapshot)
    }
}

/// What one partition's snapshot is made of.
struct Spec {
    /// The new partition's size.
    size: u64,
    plan: CowPlan,
    /// New blocks the plan's copies make.
    copied: HashSet<u64>,
    /// New block → (old block, byte offset) of the plan's XORs.
    xor: HashMap<u64, (u64, u32)>,
    op_count_max: u64,
}

/// The op area a partition's COW gets: the manifest's `estimate_op_count_max`, at least every
/// new block once, the copies, and room for blocks written twice.
pub fn op_count_max(p: &crate::payload::Partition, block_size: u32) -> u64 {
    let blocks = p.new_info.size.div_ceil(u64::from(block_size).max(1));
    let floor = blocks + blocks / 8 + 64;
    p.cow.estimate_op_count_max.unwrap_or(0).max(floor)
}

/// The most a partition's COW written here can take when the manifest has no
/// `estimate_cow_size`: the 2 MiB scratch area, a header page, the sequence, the op area,
/// and every new block stored uncompressed. A v2 COW (`version` 1 or 2) also stores its
/// labels (at most `labels`), cluster ends and footer as 20-byte ops, and keeps a gz or
/// brotli block that did not shrink, a few bytes larger than the block.
pub fn worst_case_cow_size(
    p: &crate::payload::Partition,
    block_size: u32,
    version: u16,
    labels: u64,
) -> u64 {
    let bs = u64::from(block_size).max(1);
    let blocks = p.new_info.size.div_ceil(bs);
    let mut data = blocks.saturating_mul(bs);
    // A sequence entry (4 bytes) per block a copy or XOR makes, at most every block.
    let sequence = blocks.saturating_mul(4);
    let op_count = op_count_max(p, block_size);
    let ops = if version == 3 {
        op_count.saturating_mul(crate::cow::format::OP_V3_SIZE as u64)
    } else {
        // 64 bytes a block cover a stream's framing around stored (incompressible) data.
        data = data.saturating_add(blocks.saturating_mul(64));
        let sequence_ops = sequence / (2 * bs) + 1;
        let all = op_count.saturating_add(labels).saturating_add(sequence_ops);
        // One cluster op per cluster (at least two ops a cluster), and the footer.
        all.saturating_add(all / 2)
            .saturating_mul(crate::cow::format::OP_V2_SIZE as u64)
            .saturating_add(crate::cow::format::FOOTER_SIZE as u64)
    };
    (2u64 << 20)
        .saturating_add(4096)
        .saturating_add(sequence)
        .saturating_add(ops)
        .saturating_add(data)
        .div_ceil(4096)
        .saturating_mul(4096)
}

/// The target slot as snapshots: writes of the partitions `manifest` updates go to COWs in a
/// [`CowFiles`], over the running slot's partitions of `inner` as bases.
pub struct SnapshotPartitions<'a> {
    inner: &'a dyn SlotPartitions,
    files: Arc<dyn CowFiles>,
    options: CowOptions,
    specs: HashMap<String, Arc<Spec>>,
    open: Mutex<HashMap<String, Arc<Snapshot>>>,
}

impl<'a> SnapshotPartitions<'a> {
    /// Snapshots of every partition `manifest` updates, their COWs `DIR/<name><suffix>.cow`,
    /// written with `options` (version 2 or 3; block size, compression, v3's factor).
    pub fn new(
        inner: &'a dyn SlotPartitions,
        dir: impl Into<PathBuf>,
        options: CowOptions,
        manifest: &Manifest,
    ) -> Result<Self> {
        Self::with_files(inner, Arc::new(CowDir(dir.into())), options, manifest)
    }

    /// [`Self::new`] with the COWs in `files`, each named for its snapshot (`<name><suffix>`).
    pub fn with_files(
        inner: &'a dyn SlotPartitions,
        files: Arc<dyn CowFiles>,
        options: CowOptions,
        manifest: &Manifest,
    ) -> Result<Self> {
        if !(1..=3).contains(&options.version) {
            return Err(err!(
                InstallFailed,
                "snapshot updates write COW version 2 or 3, not {}",
                options.version
            ));
        }
        let mut specs = HashMap::new();
        for p in &manifest.partitions {
            let plan = plan_partition(&p.cow.merge_operations, options.block_size)?;
            let mut copied = HashSet::new();
            let mut xor = HashMap::new();
            for op in &plan.ops {
                match *op {
                    PlannedOp::Copy {
                        new_block,
                        old_block: _,
                    } => {
                        copied.insert(new_block);
                    }
                    PlannedOp::Xor {
                        new_block,
                        old_block,
                        offset,
                    } => {
                        xor.insert(new_block, (old_block, offset));
                    }
                }
            }
            let op_count_max = op_count_max(p, options.block_size);
            specs.insert(
                p.name.clone(),
                Arc::new(Spec {
                    size: p.new_info.size,
                    plan,
                    copied,
                    xor,
                    op_count_max,
                }),
            );
        }
        Ok(SnapshotPartitions {
            inner,
            files,
            options,
            specs,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The name of the snapshot of partition `name`, which names its COW: `<name>_<slot>`.
    fn snapshot_name(&self, name: &str) -> String {
        format!("{name}_{}", self.inner.target_slot_name())
    }

    fn snapshot(&self, name: &str) -> Result<Arc<Snapshot>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = open.get(name) {
            return Ok(s.clone());
        }
        let Some(spec) = self.specs.get(name) else {
            return Err(err!(
                PartitionMissing,
                "{name} is not in the snapshot update"
            ));
        };
        let base = self.inner.open_source(name)?;
        let cow = self.snapshot_name(name);
        let mut options = self.options.clone();
        options.max_blocks = Some(spec.size.div_ceil(u64::from(options.block_size)));
        options.op_count_max = spec.op_count_max;
        let snapshot = Arc::new(Snapshot {
            spec: spec.clone(),
            base,
            files: self.files.clone(),
            cow,
            options,
            state: Mutex::new(State {
                writer: None,
                view: None,
            }),
        });
        // The COW is opened at the first access, not here: the engine's size checks open
        // targets before the target slot is marked unbootable, and nothing may be written then.
        open.insert(name.to_owned(), snapshot.clone());
        Ok(snapshot)
    }
}

impl SlotPartitions for SnapshotPartitions<'_> {
    fn open_source(&self, name: &str) -> Result<Box<dyn SourceRead>> {
        self.inner.open_source(name)
    }
    /// A snapshot's view; a partition without a snapshot (a physical one such as `vbmeta`,
    /// written in place as update_engine writes it) is the inner target's.
    fn open_target(&self, name: &str) -> Result<Box<dyn TargetWrite>> {
        if !self.specs.contains_key(name) {
            return self.inner.open_target(name);
        }
        Ok(Box::new(Handle(self.snapshot(name)?)))
    }
    fn target_slot_name(&self) -> String {
        self.inner.target_slot_name()
    }
}

/// One partition's snapshot, shared by every handle the engine opens on it.
struct Snapshot {
    spec: Arc<Spec>,
    base: Box<dyn SourceRead>,
    files: Arc<dyn CowFiles>,
    /// The snapshot's name, its COW's in `files`.
    cow: String,
    options: CowOptions,
    state: Mutex<State>,
}

struct State {
    writer: Option<CowWriter<Box<dyn CowStorage>>>,
    /// The COW as parsed for reading, until the next write.
    view: Option<BlockMap>,
}

fn cow_error(e: crate::cow::CowError) -> io::Error {
    match e {
        crate::cow::CowError::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl Snapshot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the COW at the largest label not above `at` (`None`: its last label), or writes
    /// a new one when there is none (or `at` is 0).
    fn reopen(&self, at: Option<u64>) -> io::Result<()> {
        let mut st = self.lock();
        self.reopen_locked(&mut st, at)
    }

    /// The COW's writer, opened at its last label on the first access.
    fn writer<'s>(&self, st: &'s mut State) -> io::Result<&'s mut CowWriter<Box<dyn CowStorage>>> {
        if st.writer.is_none() {
            self.reopen_locked(st, None)?;
        }
        st.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the snapshot is closed"))
    }

    fn reopen_locked(&self, st: &mut State, at: Option<u64>) -> io::Result<()> {
        st.writer = None;
        st.view = None;
        // The labels come from the resume buffer alone, and each one not above `at` is tried
        // from the latest down: a crash may leave the ops after the last synced label torn,
        // and a whole-COW parse failing there must not make a COW with durable labels start
        // over (the engine's checkpoint names one of them).
        let mut resumed = None;
        if at != Some(0) {
            if let Some(file) = self.files.open(&self.cow)? {
                let mut labels: Vec<u64> = CowReader::labels(&file)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|l| at.map_or(true, |at| *l <= at))
                    .collect();
                labels.sort_unstable_by(|a, b| b.cmp(a));
                labels.dedup();
                for label in labels {
                    let Some(sink) = self.files.open(&self.cow)? else {
                        break;
                    };
                    // A COW of other settings (another payload's) is not this update's: start
                    // over.
                    if let Ok(w) = CowWriter::resume(self.options.clone(), sink, &file, label) {
                        resumed = Some(w);
                        break;
                    }
                }
            }
        }
        st.writer = Some(match resumed {
            Some(w) => w,
            None => self.create().map_err(cow_error)?,
        });
        Ok(())
    }

    /// A new COW: the merge sequence, the copies, label 0.
    fn create(&self) -> std::result::Result<CowWriter<Box<dyn CowStorage>>, crate::cow::CowError> {
        let file = self.files.create(&self.cow)?;
        let mut w = CowWriter::new(self.options.clone(), file)?;
        w.add_sequence(&self.spec.plan.sequence)?;
        for op in &self.spec.plan.ops {
            if let PlannedOp::Copy {
                new_block,
                old_block,
            } = *op
            {
                w.add_copy(new_block, old_block, 1)?;
            }
        }
        w.add_label(0)?;
        Ok(w)
    }

    fn bs(&self) -> u64 {
        u64::from(self.options.block_size)
    }

    /// Writes whole blocks from `first`.
    fn write_blocks(&self, st: &mut State, first: u64, data: &[u8]) -> io::Result<()> {
        let bs = self.bs() as usize;
        st.view = None;
        let w = self.writer(st)?;
        // Runs of blocks of one kind go to the writer together (REPLACE units span blocks).
        #[derive(PartialEq, Clone, Copy)]
        enum Kind {
            Skip,
            Xor,
            Zero,
            Data,
        }
        let blocks = data.len() / bs;
        let kind = |i: usize| {
            let b = first + i as u64;
            if self.spec.copied.contains(&b) {
                Kind::Skip
            } else if self.spec.xor.contains_key(&b) {
                Kind::Xor
            } else if crate::cow::image::is_zero(&data[i * bs..(i + 1) * bs]) {
                Kind::Zero
            } else {
                Kind::Data
            }
        };
        let mut i = 0;
        let mut old = vec![0u8; bs];
        while i < blocks {
            let k = kind(i);
            let mut j = i + 1;
            while j < blocks && k != Kind::Xor && kind(j) == k {
                j += 1;
            }
            let b = first + i as u64;
            match k {
                Kind::Skip => {}
                Kind::Zero => w.add_zero_blocks(b, (j - i) as u64).map_err(cow_error)?,
                Kind::Data => w
                    .add_raw_blocks(b, &data[i * bs..j * bs])
                    .map_err(cow_error)?,
                Kind::Xor => {
                    let (old_block, offset) = self.spec.xor[&b];
                    let at = old_block
                        .checked_mul(self.bs())
                        .and_then(|a| a.checked_add(u64::from(offset)))
                        .ok_or_else(|| io::Error::other("XOR source out of range"))?;
                    crate::cow::view::read_base(&*self.base, at, &mut old).map_err(cow_error)?;
                    for (o, n) in old.iter_mut().zip(&data[i * bs..(i + 1) * bs]) {
                        *o ^= n;
                    }
                    let (nb, ob) = (u32::try_from(b), u32::try_from(old_block));
                    let (Ok(nb), Ok(ob), Ok(off)) = (nb, ob, u16::try_from(offset)) else {
                        return Err(io::Error::other("XOR block out of range"));
                    };
                    w.add_xor_blocks(nb, &old, ob, off).map_err(cow_error)?;
                }
            }
            i = j;
        }
        Ok(())
    }

    /// Parses the COW for reading if a write came since the last parse.
    fn ensure_view(&self, st: &mut State) -> io::Result<()> {
        if st.view.is_none() {
            let w = self.writer(st)?;
            w.flush().map_err(cow_error)?;
            let reader = CowReader::parse(w.sink(), None).map_err(cow_error)?;
            st.view = Some(BlockMap::new(reader));
        }
        Ok(())
    }

    fn read_range(&self, st: &mut State, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.ensure_view(st)?;
        let (Some(view), Some(w)) = (st.view.as_ref(), st.writer.as_ref()) else {
            return Err(io::Error::other("the snapshot is closed"));
        };
        view.read_range(w.sink(), &*self.base, buf, offset)
            .map_err(cow_error)
    }
}

/// A base partition as the COW reader reads it (a snapshot being written, a snapshot view
/// served for postinstall).
impl ReadAt for dyn SourceRead {
    fn size(&self) -> u64 {
        SourceRead::size(self)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        SourceRead::read_at(self, buf, offset)
    }
}

/// The engine's handle on a snapshot.
struct Handle(Arc<Snapshot>);

impl TargetWrite for Handle {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let s = &self.0;
        let bs = s.bs();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= s.spec.size)
            .ok_or_else(|| io::Error::other("write past the end of the snapshot"))?;
        let mut st = s.lock();
        if offset % bs == 0 && buf.len() as u64 % bs == 0 {
            return s.write_blocks(&mut st, offset / bs, buf);
        }
        // Partial blocks: read the view's blocks around the write, patch, write them whole.
        let first = offset / bs * bs;
        let last = end.div_ceil(bs) * bs;
        let mut whole = vec![0u8; (last - first) as usize];
        s.read_range(&mut st, &mut whole, first)?;
        let at = (offset - first) as usize;
        whole[at..at + buf.len()].copy_from_slice(buf);
        s.write_blocks(&mut st, first / bs, &whole)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = &self.0;
        if offset
            .checked_add(buf.len() as u64)
            .map_or(true, |e| e > s.spec.size)
        {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let mut st = s.lock();
        s.read_range(&mut st, buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.0.lock();
        let w = self.0.writer(&mut st)?;
        w.sync().map_err(cow_error)
    }

    fn size(&self) -> u64 {
        self.0.spec.size
    }

    fn label(&self, label: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        let w = self.0.writer(&mut st)?;
        w.add_label(label).map_err(cow_error)
    }

    fn rewind(&self, next_operation: u32) -> io::Result<()> {
        self.0.reopen(Some(u64::from(next_operation)))
    }

    fn is_snapshot(&self) -> bool {
        true
    }
}
