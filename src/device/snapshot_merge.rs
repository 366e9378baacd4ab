//! Platform adapter: merging a snapshot's COW into its base partition in place (what snapuserd
//! does on Android once the new slot is marked successful), our own merge for hosts.
//!
//! Ops merge in the COW's merge order (sequence data first, checked by
//! [`CowReader::verify_merge_order`]), a batch at a time. A batch's new blocks are computed from
//! the base before any of them is written, kept in a journal file and synced, and only then
//! written over the base; the state file (replaced atomically) says how many ops are merged
//! and whether a journal is pending. A merge killed anywhere resumes: a pending journal is
//! written again (its blocks do not depend on the base any more), then the next batch.

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

    /// The state saved at `path`; none saved: nothing merged.
    pub fn load(path: &Path) -> Result<MergeState> {
        match state_file::read(path)? {
            None => Ok(MergeState::default()),
            Some(b) => MergeState::parse(&b)
                .ok_or_else(|| err!(InstallFailed, "{} is not a merge state", path.display())),
        }
    }
}

fn journal_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

fn io_err(what: &str) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::io(what, e)
}

/// Merges `cow` into `base` in place, resuming from the state at `state` (which says so when
/// the merge is done: a merge run again then writes nothing). `progress` hears (ops merged, ops in all).
pub fn merge(
    cow: &(impl ReadAt + ?Sized),
    base: &dyn TargetWrite,
    state: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let bad = |e: crate::cow::CowError| err!(InstallFailed, "merging the COW: {e}");
    let reader = CowReader::parse(cow, None).map_err(bad)?;
    reader.verify_merge_order().map_err(bad)?;
    let order = reader.merge_order().map_err(bad)?;
    let total = order.len() as u64;
    let bs = reader.block_size();
    let journal = journal_path(state);
    let mut st = MergeState::load(state)?;
    if st.journaled > 0 {
        replay(&journal, base, bs)?;
        st = MergeState {
            merged: st.merged.saturating_add(st.journaled),
            journaled: 0,
        };
        state_file::replace(state, &st.to_bytes())?;
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
        write_journal(&journal, &blocks)?;
        st.journaled = ops;
        state_file::replace(state, &st.to_bytes())?;
        write_blocks(base, &blocks, bs)?;
        st = MergeState {
            merged: st.merged + ops,
            journaled: 0,
        };
        state_file::replace(state, &st.to_bytes())?;
        progress(st.merged, total);
    }
    // "All merged" stays recorded until the caller removes it ([`remove_state`]): merging
    // again after a crash right here must not apply the COW a second time.
    state_file::replace(state, &st.to_bytes())?;
    state_file::remove(&journal)
}

/// Removes a merge's state (and journal) once the caller recorded the merge as done.
pub fn remove_state(state: &Path) -> Result<()> {
    state_file::remove(&journal_path(state))?;
    state_file::remove(state)
}

fn write_journal(path: &Path, blocks: &[(u64, Vec<u8>)]) -> Result<()> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    for (b, data) in blocks {
        bytes.extend_from_slice(&b.to_le_bytes());
        bytes.extend_from_slice(data);
    }
    state_file::replace(path, &bytes)
}

fn replay(path: &Path, base: &dyn TargetWrite, bs: u64) -> Result<()> {
    let bytes = state_file::read(path)?
        .ok_or_else(|| err!(InstallFailed, "merge journal {} is missing", path.display()))?;
    let bad = || err!(InstallFailed, "merge journal {} is torn", path.display());
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
