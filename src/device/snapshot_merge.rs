//! Platform adapter: merging a snapshot's COW into its base partition in place (what snapuserd
//! does on Android once the new slot is marked successful), our own merge for hosts.
//!
//! Ops merge in the COW's merge order (sequence data first, checked by
//! [`CowReader::verify_merge_order`]), a batch at a time. A batch's new blocks are computed from
//! the base before any of them is written, kept in a journal file and synced, and only then
//! written over the base; the state file (replaced atomically) says how many ops are merged
//! and whether a journal is pending. A merge killed anywhere resumes: a pending journal is
//! written again (its blocks do not depend on the base any more), then the next batch.
//! Where the state and the journal live is a [`MergeStore`]: files next to each other
//! ([`StateFiles`]), or a recording one in the power-cut tests.

use std::io;
use std::path::{Path, PathBuf};

use crate::cow::{CowReader, OpType, ReadAt};
use crate::engine::TargetWrite;
use crate::err;
use crate::error::{Error, Result};
use crate::state_file;

/// New blocks per merge batch (and journal): 2 MiB of 4 KiB blocks, as snapuserd's scratch.
const BATCH_BLOCKS: u64 = 512;

/// How far a merge got: ops merged, and the ops of a pending journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeState {
    /// Ops of the merge order merged into the base.
    pub merged: u64,
    /// Ops whose blocks are in the journal, not yet known to be in the base.
    pub journaled: u64,
}

impl MergeState {
    fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.merged.to_le_bytes());
        b.extend_from_slice(&self.journaled.to_le_bytes());
        b
    }
    fn parse(b: &[u8]) -> Option<MergeState> {
        let merged = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let journaled = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        Some(MergeState { merged, journaled })
    }

    /// The state saved in `store`; none saved: nothing merged.
    pub fn load(store: &dyn MergeStore) -> Result<MergeState> {
        match store.read(Record::State)? {
            None => Ok(MergeState::default()),
            Some(b) => MergeState::parse(&b)
                .ok_or_else(|| err!(InstallFailed, "the merge state is malformed")),
        }
    }
}

/// The two records a merge keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The [`MergeState`].
    State,
    /// The pending batch's new blocks.
    Journal,
}

/// Where a merge keeps its records. `replace` must be atomic and durable when it returns: a
/// crash leaves the old record or the new one.
pub trait MergeStore {
    /// The record; `None` if there is none.
    fn read(&self, which: Record) -> Result<Option<Vec<u8>>>;
    /// Replaces the record atomically and durably.
    fn replace(&self, which: Record, bytes: &[u8]) -> Result<()>;
    /// Removes the record (none is fine).
    fn remove(&self, which: Record) -> Result<()>;
}

/// The records as files: the state at a path, the journal at the same path plus `.journal`.
#[derive(Clone, Debug)]
pub struct StateFiles {
    state: PathBuf,
    journal: PathBuf,
}

impl StateFiles {
    /// The records of the merge whose state is at `state`.
    pub fn new(state: &Path) -> StateFiles {
        let mut journal = state.as_os_str().to_owned();
        journal.push(".journal");
        StateFiles {
            state: state.to_owned(),
            journal: PathBuf::from(journal),
        }
    }

    fn path(&self, which: Record) -> &Path {
        match which {
            Record::State => &self.state,
            Record::Journal => &self.journal,
        }
    }
}

impl MergeStore for StateFiles {
    fn read(&self, which: Record) -> Result<Option<Vec<u8>>> {
        state_file::read(self.path(which))
    }
    fn replace(&self, which: Record, bytes: &[u8]) -> Result<()> {
        state_file::replace(self.path(which), bytes)
    }
    fn remove(&self, which: Record) -> Result<()> {
        state_file::remove(self.path(which))
    }
}

fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::io(what, e)
}

/// Merges `cow` into `base` in place, resuming from the state at `state`; when the merge is
/// done the state says so, and merging again does nothing (remove the state with the COW:
/// [`clear`]). `progress` hears (ops merged, ops in all).
pub fn merge(
    cow: &(impl ReadAt + ?Sized),
    base: &dyn TargetWrite,
    state: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    merge_with(cow, base, &StateFiles::new(state), progress)
}

/// [`merge`] keeping its records in `store`.
pub fn merge_with(
    cow: &(impl ReadAt + ?Sized),
    base: &dyn TargetWrite,
    store: &dyn MergeStore,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let bad = |e: crate::cow::CowError| err!(InstallFailed, "merging the COW: {e}");
    let reader = CowReader::parse(cow, None).map_err(bad)?;
    reader.verify_merge_order().map_err(bad)?;
    let order = reader.merge_order().map_err(bad)?;
    let total = order.len() as u64;
    let bs = reader.block_size();
    let mut st = MergeState::load(store)?;
    if st.journaled > 0 {
        replay(store, base, bs)?;
        st = MergeState {
            merged: st.merged.saturating_add(st.journaled),
            journaled: 0,
        };
        store.replace(Record::State, &st.to_bytes())?;
    }
    let mut unit = Vec::new();
    let mut old = vec![0u8; bs as usize];
    while st.merged < total {
        // One batch: (new block, its bytes), computed before any is written.
        let mut blocks: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut ops = 0u64;
        for &i in order.iter().skip(st.merged as usize) {
            if blocks.len() as u64 >= BATCH_BLOCKS {
                break;
            }
            let op = reader.ops[i];
            ops += 1;
            match op.kind {
                OpType::Zero => blocks.push((op.new_block, vec![0u8; bs as usize])),
                OpType::Copy => {
                    let mut b = vec![0u8; bs as usize];
                    base.read_at(&mut b, op.source.saturating_mul(bs))
                        .map_err(io_err("reading a copy's source"))?;
                    blocks.push((op.new_block, b));
                }
                OpType::Replace => {
                    unit.resize(reader.unit_size(&op) as usize, 0);
                    reader.read_data(cow, &op, &mut unit).map_err(bad)?;
                    for (k, chunk) in unit.chunks(bs as usize).enumerate() {
                        blocks.push((op.new_block.saturating_add(k as u64), chunk.to_vec()));
                    }
                }
                OpType::Xor => {
                    unit.resize(bs as usize, 0);
                    reader.read_data(cow, &op, &mut unit).map_err(bad)?;
                    base.read_at(&mut old, op.source)
                        .map_err(io_err("reading an XOR's source"))?;
                    let b = unit.iter().zip(&old).map(|(a, o)| a ^ o).collect();
                    blocks.push((op.new_block, b));
                }
                _ => {}
            }
        }
        for (b, _) in &blocks {
            let end = b.checked_add(1).and_then(|e| e.checked_mul(bs));
            if end.map_or(true, |e| e > base.size()) {
                return Err(err!(
                    InstallFailed,
                    "the COW writes block {b}, past the base's {} bytes",
                    base.size()
                ));
            }
        }
        write_journal(store, &blocks)?;
        st.journaled = ops;
        store.replace(Record::State, &st.to_bytes())?;
        write_blocks(base, &blocks, bs)?;
        st = MergeState {
            merged: st.merged + ops,
            journaled: 0,
        };
        store.replace(Record::State, &st.to_bytes())?;
        progress(st.merged, total);
    }
    // The state stays, saying every op is merged: merging again (a restart after a crash
    // here, or before the owner removed the COW) must not merge over the merged base, whose
    // old blocks the copies would read. The owner removes it with the COW ([`clear`]).
    // Without a pending journal in the state the journal is never read.
    store.remove(Record::Journal)?;
    Ok(())
}

/// Removes a merge's records: once its COW is gone (or before a new COW is merged over the
/// same base), never between.
pub fn clear(store: &dyn MergeStore) -> Result<()> {
    store.remove(Record::Journal)?;
    store.remove(Record::State)
}

fn write_journal(store: &dyn MergeStore, blocks: &[(u64, Vec<u8>)]) -> Result<()> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    for (b, data) in blocks {
        bytes.extend_from_slice(&b.to_le_bytes());
        bytes.extend_from_slice(data);
    }
    store.replace(Record::Journal, &bytes)
}

fn replay(store: &dyn MergeStore, base: &dyn TargetWrite, bs: u64) -> Result<()> {
    let bytes = store
        .read(Record::Journal)?
        .ok_or_else(|| err!(InstallFailed, "the merge journal is missing"))?;
    let bad = || err!(InstallFailed, "the merge journal is torn");
    let count = u64::from_le_bytes(
        bytes
            .get(..8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let rec = 8 + bs as usize;
    let mut blocks = Vec::new();
    for i in 0..count as usize {
        let at = 8 + i.checked_mul(rec).ok_or_else(bad)?;
        let r = bytes.get(at..at + rec).ok_or_else(bad)?;
        let b = u64::from_le_bytes(r[..8].try_into().map_err(|_| bad())?);
        blocks.push((b, r[8..].to_vec()));
    }
    write_blocks(base, &blocks, bs)
}

fn write_blocks(base: &dyn TargetWrite, blocks: &[(u64, Vec<u8>)], bs: u64) -> Result<()> {
    for (b, data) in blocks {
        base.write_at(data, b * bs)
            .map_err(io_err("merging into the base"))?;
    }
    base.sync().map_err(io_err("syncing the merged base"))
}
