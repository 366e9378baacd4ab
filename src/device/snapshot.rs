//! Platform adapter: the target slot's partitions written as Virtual A/B snapshots, one COW
//! file per partition over the partition's base (the running slot's blocks), as update_engine's
//! `VABCPartitionWriter` writes them.
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
//! COW version 3 only: a v2 COW cannot be reopened at a label here.

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
use crate::error::{Error, Result};
use crate::payload::Manifest;

/// A COW file: read at offsets and written by the COW writer.
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

/// Where the snapshots' COW files are: a directory ([`CowDir`]), or a layer over one (the
/// power-cut tests record every write and sync).
pub trait CowFiles: Send + Sync {
    /// The path of COW `file`.
    fn path(&self, file: &str) -> PathBuf;
    /// COW `file` opened for reading and writing; `None` if there is none.
    fn open(&self, file: &str) -> io::Result<Option<Box<dyn CowStorage>>>;
    /// COW `file` created empty (an existing one truncated).
    fn create(&self, file: &str) -> io::Result<Box<dyn CowStorage>>;
}

/// COW files in a directory.
#[derive(Clone, Debug)]
pub struct CowDir(pub PathBuf);

impl CowFiles for CowDir {
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
    fn open(&self, file: &str) -> io::Result<Option<Box<dyn CowStorage>>> {
        match CowFile::open(&self.path(file), false) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn create(&self, file: &str) -> io::Result<Box<dyn CowStorage>> {
        let f = CowFile::open(&self.path(file), true)?;
        f.file.set_len(0)?;
        Ok(Box::new(f))
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

/// The target slot as snapshots: writes of the partitions `manifest` updates go to COW files
/// in a directory, over the running slot's partitions of `inner` as bases.
pub struct SnapshotPartitions<'a> {
    inner: &'a dyn SlotPartitions,
    files: Arc<dyn CowFiles>,
    options: CowOptions,
    specs: HashMap<String, Arc<Spec>>,
    open: Mutex<HashMap<String, Arc<Snapshot>>>,
}

impl<'a> SnapshotPartitions<'a> {
    /// Snapshots of every partition `manifest` updates, their COWs `DIR/<name><suffix>.cow`,
    /// written with `options` (version 3; block size, compression and factor).
    pub fn new(
        inner: &'a dyn SlotPartitions,
        dir: impl Into<PathBuf>,
        options: CowOptions,
        manifest: &Manifest,
    ) -> Result<Self> {
        Self::with_files(inner, Arc::new(CowDir(dir.into())), options, manifest)
    }

    /// [`Self::new`] with the COWs `<name><suffix>.cow` in `files`.
    pub fn with_files(
        inner: &'a dyn SlotPartitions,
        files: Arc<dyn CowFiles>,
        options: CowOptions,
        manifest: &Manifest,
    ) -> Result<Self> {
        if options.version != 3 {
            return Err(err!(
                InstallFailed,
                "snapshot updates write COW version 3, not {}",
                options.version
            ));
        }
        let bs = u64::from(options.block_size);
        let mut specs = HashMap::new();
        for p in &manifest.partitions {
            let plan = plan_partition(&p.cow.merge_operations, options.block_size)?;
            let blocks = p.new_info.size.div_ceil(bs);
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
            // Every new block once, the copies, and room for blocks written twice.
            let floor = blocks + blocks / 8 + 64;
            let op_count_max = p.cow.estimate_op_count_max.unwrap_or(0).max(floor);
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

    /// The COW file of partition `name`.
    pub fn cow_path(&self, name: &str) -> PathBuf {
        self.files.path(&self.cow_file(name))
    }

    fn cow_file(&self, name: &str) -> String {
        format!("{name}_{}.cow", self.inner.target_slot_name())
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
        let file = self.cow_file(name);
        let mut options = self.options.clone();
        options.max_blocks = Some(spec.size.div_ceil(u64::from(options.block_size)));
        options.op_count_max = spec.op_count_max;
        let snapshot = Arc::new(Snapshot {
            spec: spec.clone(),
            base,
            files: self.files.clone(),
            file,
            options,
            state: Mutex::new(State {
                writer: None,
                view: None,
            }),
        });
        snapshot
            .reopen(None)
            .map_err(|e| Error::io(format!("opening the snapshot of {name}"), e))?;
        open.insert(name.to_owned(), snapshot.clone());
        Ok(snapshot)
    }
}

impl SlotPartitions for SnapshotPartitions<'_> {
    fn open_source(&self, name: &str) -> Result<Box<dyn SourceRead>> {
        self.inner.open_source(name)
    }
    fn open_target(&self, name: &str) -> Result<Box<dyn TargetWrite>> {
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
    file: String,
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
        st.writer = None;
        st.view = None;
        // The labels come from the resume buffer alone, and each one not above `at` is tried
        // from the latest down: a crash may leave the ops after the last synced label torn,
        // and a whole-COW parse failing there must not make a COW with durable labels start
        // over (the engine's checkpoint names one of them).
        let mut resumed = None;
        if at != Some(0) {
            if let Some(file) = self.files.open(&self.file)? {
                let mut labels: Vec<u64> = CowReader::labels(&file)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|l| at.map_or(true, |at| *l <= at))
                    .collect();
                labels.sort_unstable_by(|a, b| b.cmp(a));
                labels.dedup();
                for label in labels {
                    let Some(sink) = self.files.open(&self.file)? else {
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
        let file = self.files.create(&self.file)?;
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
        let w = st
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the snapshot is closed"))?;
        st.view = None;
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
                    crate::cow::view::read_base(&Base(&*self.base), at, &mut old)
                        .map_err(cow_error)?;
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
            let w = st
                .writer
                .as_mut()
                .ok_or_else(|| io::Error::other("the snapshot is closed"))?;
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
        view.read_range(w.sink(), &Base(&*self.base), buf, offset)
            .map_err(cow_error)
    }
}

/// The base partition as the COW reader reads it.
struct Base<'a>(&'a dyn SourceRead);

impl ReadAt for Base<'_> {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(buf, offset)
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
        let w = st
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the snapshot is closed"))?;
        w.sync().map_err(cow_error)
    }

    fn size(&self) -> u64 {
        self.0.spec.size
    }

    fn label(&self, label: u64) -> io::Result<()> {
        let mut st = self.0.lock();
        let w = st
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the snapshot is closed"))?;
        w.add_label(label).map_err(cow_error)
    }

    fn rewind(&self, next_operation: u32) -> io::Result<()> {
        self.0.reopen(Some(u64::from(next_operation)))
    }

    fn is_snapshot(&self) -> bool {
        true
    }
}
