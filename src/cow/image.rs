//! A COW from whole images (`abupdate cow write`): the new image, optionally against the old
//! one it will be applied over. Per block of the new image: nothing when it equals the old
//! block at the same index (the snapshot reads it through), ZERO when all zero, COPY when it
//! equals some old block (found through a hash of every old block), REPLACE otherwise.
//! Copies go first, in a merge order where no copy reads a block an earlier copy overwrote;
//! a copy on a cycle of such dependencies becomes a REPLACE. Two passes over the new image,
//! in chunks: memory is a few bytes per block plus one batch of chunks, whose data units the
//! writer compresses together on its threads.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::mpsc::{channel, sync_channel};

use super::format::OpType;
use super::reader::ReadAt;
use super::writer::{CowOptions, CowSink, CowSummary, CowWriter, DataRun, Run};
use super::CowError;

/// Blocks read at a time when planning; runs of new blocks never cross a multiple of it (the
/// output depends on where runs end).
const CHUNK_BLOCKS: u64 = 512;

/// Chunks read and compressed together when writing: enough units to keep every
/// compression thread busy, little enough memory (8 MiB of 4 KiB blocks).
const BATCH_CHUNKS: u64 = 4;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Same,
    Zero,
    Copy,
    Replace,
}

fn block_hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Whether `b` is all zero bytes.
pub(crate) fn is_zero(b: &[u8]) -> bool {
    // Word-wide ORs the compiler vectorizes; a byte loop with an early exit is not.
    let mut words = b.chunks_exact(64);
    let whole = words.by_ref().all(|w| {
        w.chunks_exact(8).fold(0u64, |acc, c| {
            acc | u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        }) == 0
    });
    whole && words.remainder().iter().all(|&x| x == 0)
}

/// Calls `f(first_block, bytes)` for every `step` blocks of `img`'s first `blocks` blocks, in
/// order. A source that lends its bytes (a mapped file) is read in place. Otherwise a second
/// thread reads the next chunk while `f` works on this one: reading copies out of the page
/// cache, CPU time that would otherwise hold up the compression. Two chunk buffers in all: the
/// reader fills one while `f` has the other.
fn chunks(
    img: &(impl ReadAt + Sync + ?Sized),
    bs: u64,
    blocks: u64,
    step: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), CowError>,
) -> Result<(), CowError> {
    if img.lends() {
        let mut buf = Vec::new();
        let mut at = 0;
        while at < blocks {
            let n = step.min(blocks - at);
            img.with_range(at * bs, (n * bs) as usize, &mut buf, &mut |d| f(at, d))?;
            at += n;
        }
        return Ok(());
    }
    let (full, filled) = sync_channel::<Result<(u64, Vec<u8>), CowError>>(0);
    let (give_back, spare) = channel::<Vec<u8>>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut at = 0;
            while at < blocks {
                let n = step.min(blocks - at);
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.resize((n * bs) as usize, 0);
                let read = img.read_at(at * bs, &mut buf).map_err(CowError::from);
                let failed = read.is_err();
                // A closed channel: the consumer stopped (its own error).
                if full.send(read.map(|()| (at, buf))).is_err() || failed {
                    return;
                }
                at += n;
            }
        });
        // Dropping `filled` on an error stops the reader.
        for chunk in filled {
            let (first, buf) = chunk?;
            f(first, &buf)?;
            let _ = give_back.send(buf);
        }
        Ok(())
    })
}

/// Writes the COW that turns `old` (or, without it, anything) into `new`.
pub fn write_image_cow<S: CowSink>(
    new: &(impl ReadAt + Sync + ?Sized),
    old: Option<&(impl ReadAt + Sync + ?Sized)>,
    mut opts: CowOptions,
    sink: S,
) -> Result<(S, CowSummary), CowError> {
    let bs = u64::from(opts.block_size);
    if bs == 0 || new.size() % bs != 0 {
        return Err(CowError::invalid(format!(
            "the new image ({} bytes) is not a whole number of {bs}-byte blocks",
            new.size()
        )));
    }
    let blocks = new.size() / bs;
    opts.max_blocks.get_or_insert(blocks);
    let mut kinds = vec![Kind::Replace; blocks as usize];
    let mut order: Vec<(u32, u32)> = Vec::new();
    if let Some(old) = old {
        order = plan_against(new, old, bs, blocks, &mut kinds)?;
    }
    let mut w = CowWriter::new(opts, sink)?;
    let seq: Vec<u32> = order.iter().map(|&(dst, _)| dst).collect();
    w.add_sequence(&seq)?;
    for &(dst, src) in &order {
        w.add_copy(u64::from(dst), u64::from(src), 1)?;
    }
    let block = bs as usize;
    const BATCH: u64 = CHUNK_BLOCKS * BATCH_CHUNKS;
    chunks(new, bs, blocks, BATCH, |first, data| {
        let n = data.len() / block;
        let kind_of = |j: usize| match old {
            Some(_) => kinds[first as usize + j],
            None if is_zero(&data[j * block..(j + 1) * block]) => Kind::Zero,
            None => Kind::Replace,
        };
        let mut runs = Vec::new();
        let mut i = 0usize;
        while i < n {
            let kind = kind_of(i);
            // Runs end at chunk boundaries too: the v3 units of a run depend on its length.
            let chunk_end = (i / CHUNK_BLOCKS as usize + 1) * CHUNK_BLOCKS as usize;
            let mut j = i + 1;
            while j < n.min(chunk_end) && kind_of(j) == kind {
                j += 1;
            }
            let new_block = first + i as u64;
            match kind {
                Kind::Zero => runs.push(Run::Zero {
                    new_block,
                    blocks: (j - i) as u64,
                }),
                Kind::Replace => runs.push(Run::Data(DataRun {
                    kind: OpType::Replace,
                    new_block,
                    data: &data[i * block..j * block],
                    xor_source: 0,
                })),
                Kind::Same | Kind::Copy => {}
            }
            i = j;
        }
        w.add_runs(&runs)
    })?;
    w.finalize()
}

/// Classifies every block against `old` and returns the copies `(new, old)` in merge order.
fn plan_against(
    new: &(impl ReadAt + Sync + ?Sized),
    old: &(impl ReadAt + Sync + ?Sized),
    bs: u64,
    blocks: u64,
    kinds: &mut [Kind],
) -> Result<Vec<(u32, u32)>, CowError> {
    if blocks > u64::from(u32::MAX) {
        return Err(CowError::invalid("image too large for COW block numbers"));
    }
    let old_blocks = old.size() / bs;
    let mut by_hash: HashMap<u64, u32> = HashMap::with_capacity(old_blocks as usize);
    chunks(old, bs, old_blocks, CHUNK_BLOCKS, |first, data| {
        for (i, b) in data.chunks_exact(bs as usize).enumerate() {
            by_hash
                .entry(block_hash(b))
                .or_insert((first + i as u64) as u32);
        }
        Ok(())
    })?;
    let mut copy_src: HashMap<u32, u32> = HashMap::new();
    let mut old_block = vec![0u8; bs as usize];
    let mut same = vec![0u8; CHUNK_BLOCKS as usize * bs as usize];
    chunks(new, bs, blocks, CHUNK_BLOCKS, |first, data| {
        // The old blocks at the same indexes, where the old image has them.
        let n_same = old_blocks.saturating_sub(first).min(data.len() as u64 / bs);
        let same = &mut same[..(n_same * bs) as usize];
        old.read_at(first * bs, same)?;
        for (i, b) in data.chunks_exact(bs as usize).enumerate() {
            let idx = first + i as u64;
            let at = i * bs as usize;
            kinds[idx as usize] = if (i as u64) < n_same && same[at..at + bs as usize] == *b {
                Kind::Same
            } else if is_zero(b) {
                Kind::Zero
            } else if let Some(&src) = by_hash.get(&block_hash(b)) {
                old.read_at(u64::from(src) * bs, &mut old_block)?;
                if old_block == *b {
                    copy_src.insert(idx as u32, src);
                    Kind::Copy
                } else {
                    Kind::Replace
                }
            } else {
                Kind::Replace
            };
        }
        Ok(())
    })?;
    Ok(merge_order(&copy_src, kinds))
}

/// Orders copies so each one merges before the copy that overwrites its source (each block
/// has one writer, so every copy waits on at most one other); copies left on cycles are
/// broken by turning one copy per cycle into a REPLACE, which merges after all copies.
fn merge_order(copy_src: &HashMap<u32, u32>, kinds: &mut [Kind]) -> Vec<(u32, u32)> {
    // next[a]: the copy that overwrites the block copy `a` reads, which must merge after `a`.
    let next = |a: u32| -> Option<u32> {
        let src = *copy_src.get(&a)?;
        copy_src.contains_key(&src).then_some(src)
    };
    let mut waiting: HashMap<u32, u32> = HashMap::new();
    let mut dsts: Vec<u32> = copy_src.keys().copied().collect();
    dsts.sort_unstable();
    for &a in &dsts {
        if let Some(b) = next(a) {
            *waiting.entry(b).or_insert(0) += 1;
        }
    }
    let mut order = Vec::with_capacity(dsts.len());
    let mut done: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut ready: Vec<u32> = dsts
        .iter()
        .copied()
        .filter(|a| !waiting.contains_key(a))
        .rev()
        .collect();
    let release = |a: u32, ready: &mut Vec<u32>, waiting: &mut HashMap<u32, u32>| {
        if let Some(b) = next(a) {
            if let Some(w) = waiting.get_mut(&b) {
                *w -= 1;
                if *w == 0 {
                    waiting.remove(&b);
                    ready.push(b);
                }
            }
        }
    };
    let mut cursor = 0;
    loop {
        while let Some(a) = ready.pop() {
            if !done.insert(a) {
                // Demoted while it waited.
                continue;
            }
            order.push(a);
            release(a, &mut ready, &mut waiting);
        }
        // What is left lies on cycles: demote the lowest block of one cycle and go on.
        while cursor < dsts.len() && done.contains(&dsts[cursor]) {
            cursor += 1;
        }
        let Some(&d) = dsts.get(cursor) else {
            break;
        };
        kinds[d as usize] = Kind::Replace;
        done.insert(d);
        release(d, &mut ready, &mut waiting);
    }
    order
        .into_iter()
        .filter_map(|a| copy_src.get(&a).map(|&s| (a, s)))
        .collect()
}
