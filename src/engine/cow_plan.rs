//! From a payload partition's `merge_operations` (COW_COPY, COW_XOR, COW_REPLACE) to the
//! ordered ops of a Virtual A/B COW: per block copies and XORs in a merge order (the COW's
//! sequence data) under which merging in place never overwrites a block that a later op still
//! reads. update_engine writes the generator's order as it is (`WriteMergeSequence`); this
//! checks it instead and reorders where it must, keeping the payload's order otherwise.
//! Ops on a cycle of such dependencies cannot be ordered: one op per cycle is taken out and its
//! blocks listed as `demoted`, to be written as REPLACE data (which merges after every ordered
//! op), as update_engine does for copies that are not in the merge sequence.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, ErrorCode};
use crate::payload::proto::update_metadata::cow_merge_operation::Type as MergeType;
use crate::payload::proto::update_metadata::CowMergeOperation;

/// One ordered COW op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlannedOp {
    /// New block `new_block` is old block `old_block`.
    Copy {
        /// The block of the new image.
        new_block: u64,
        /// The block of the old image it copies.
        old_block: u64,
    },
    /// New block `new_block` is its COW data XOR the old image's bytes at
    /// `old_block * block_size + offset` (a block and, when `offset` is not 0, the next one).
    Xor {
        /// The block of the new image.
        new_block: u64,
        /// The first block of the old image it reads.
        old_block: u64,
        /// Byte offset into `old_block` (below one block).
        offset: u32,
    },
}

impl PlannedOp {
    /// The block of the new image the op makes.
    pub fn new_block(&self) -> u64 {
        match *self {
            PlannedOp::Copy { new_block, .. } | PlannedOp::Xor { new_block, .. } => new_block,
        }
    }

    /// The old blocks the op reads.
    fn reads(&self) -> impl Iterator<Item = u64> {
        let (first, second) = match *self {
            PlannedOp::Copy { old_block, .. } => (old_block, None),
            PlannedOp::Xor {
                old_block, offset, ..
            } => (
                old_block,
                (offset != 0).then(|| old_block.saturating_add(1)),
            ),
        };
        std::iter::once(first).chain(second)
    }
}

/// The ordered part of a COW.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CowPlan {
    /// Copy and XOR ops, in merge order.
    pub ops: Vec<PlannedOp>,
    /// The new blocks of `ops`, in the same order: the COW's sequence data.
    pub sequence: Vec<u32>,
    /// New blocks of copies and XORs that could not be ordered (dependency cycles): write
    /// them as REPLACE.
    pub demoted: Vec<u64>,
    /// New blocks the payload marks COW_REPLACE.
    pub replaced: Vec<u64>,
}

fn malformed(m: String) -> Error {
    Error::new(ErrorCode::MalformedPayload, m)
}

/// Plans the ordered ops of one partition. Identity copies are dropped (the snapshot reads the
/// base block); a block written by two merge ops, or an XOR offset not below `block_size`, is a
/// malformed payload.
pub fn plan_merge_ops(ops: &[CowMergeOperation], block_size: u32) -> Result<CowPlan, Error> {
    let mut plan = CowPlan::default();
    let mut blocks: Vec<PlannedOp> = Vec::new();
    for (i, m) in ops.iter().enumerate() {
        let (src, dst) = (&m.src_extent, &m.dst_extent);
        let (d0, n) = (dst.start_block(), dst.num_blocks());
        d0.checked_add(n)
            .filter(|end| *end <= u64::from(u32::MAX) + 1)
            .ok_or_else(|| malformed(format!("merge op {i}: destination out of range")))?;
        match m.type_() {
            MergeType::COW_REPLACE => plan.replaced.extend(d0..d0 + n),
            kind => {
                if src.num_blocks() != n {
                    return Err(malformed(format!(
                        "merge op {i}: source and destination differ in length"
                    )));
                }
                let s0 = src.start_block();
                s0.checked_add(n)
                    .ok_or_else(|| malformed(format!("merge op {i}: source out of range")))?;
                let offset = m.src_offset();
                if kind == MergeType::COW_XOR && offset >= block_size {
                    return Err(malformed(format!(
                        "merge op {i}: XOR offset {offset} not below the block size"
                    )));
                }
                for k in 0..n {
                    blocks.push(match kind {
                        MergeType::COW_XOR => PlannedOp::Xor {
                            new_block: d0 + k,
                            old_block: s0 + k,
                            offset,
                        },
                        _ if s0 == d0 => continue,
                        _ => PlannedOp::Copy {
                            new_block: d0 + k,
                            old_block: s0 + k,
                        },
                    });
                }
            }
        }
    }

    // writer[b]: the op that overwrites old block b when it merges.
    let mut writer: HashMap<u64, usize> = HashMap::with_capacity(blocks.len());
    for (i, op) in blocks.iter().enumerate() {
        if writer.insert(op.new_block(), i).is_some() {
            return Err(malformed(format!(
                "block {} is written by two merge ops",
                op.new_block()
            )));
        }
    }
    for b in &plan.replaced {
        if writer.contains_key(b) {
            return Err(malformed(format!("block {b} is both copied and replaced")));
        }
    }
    // An op must merge before every op that overwrites a block it reads (an op reading its own
    // block reads before it writes).
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); blocks.len()];
    let mut waiting = vec![0usize; blocks.len()];
    for (i, op) in blocks.iter().enumerate() {
        for r in op.reads() {
            if let Some(&w) = writer.get(&r) {
                if w != i {
                    after[i].push(w);
                    waiting[w] += 1;
                }
            }
        }
    }
    // Kahn's algorithm, the lowest payload index first; when only cycles are left, the lowest
    // remaining op is demoted.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..blocks.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut done = vec![false; blocks.len()];
    let mut cursor = 0;
    let mut left = blocks.len();
    while left > 0 {
        let (i, demote) = match ready.pop() {
            Some(Reverse(i)) => (i, false),
            None => {
                while done[cursor] {
                    cursor += 1;
                }
                (cursor, true)
            }
        };
        if done[i] {
            continue;
        }
        done[i] = true;
        left -= 1;
        if demote {
            plan.demoted.push(blocks[i].new_block());
        } else {
            plan.ops.push(blocks[i]);
            plan.sequence.push(blocks[i].new_block() as u32);
        }
        for &w in &after[i] {
            waiting[w] -= 1;
            if waiting[w] == 0 && !done[w] {
                ready.push(Reverse(w));
            }
        }
    }
    Ok(plan)
}

/// [`plan_merge_ops`] for a partition of a parsed manifest.
pub fn plan_partition(
    ops: &[crate::payload::manifest::MergeOperation],
    block_size: u32,
) -> Result<CowPlan, Error> {
    use crate::payload::manifest::MergeKind;
    use crate::payload::proto::update_metadata::Extent as PbExtent;
    let extent = |e: &crate::payload::Extent| {
        let mut x = PbExtent::new();
        x.set_start_block(e.start_block);
        x.set_num_blocks(e.num_blocks);
        x
    };
    let proto: Vec<CowMergeOperation> = ops
        .iter()
        .map(|m| {
            let mut c = CowMergeOperation::new();
            c.set_type(match m.kind {
                MergeKind::Copy => MergeType::COW_COPY,
                MergeKind::Xor => MergeType::COW_XOR,
                MergeKind::Replace => MergeType::COW_REPLACE,
            });
            c.src_extent = Some(extent(&m.src)).into();
            c.dst_extent = Some(extent(&m.dst)).into();
            if m.src_offset != 0 {
                c.set_src_offset(m.src_offset);
            }
            c
        })
        .collect();
    plan_merge_ops(&proto, block_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::proto::update_metadata::Extent;

    fn op(kind: MergeType, src: u64, dst: u64, n: u64, offset: u32) -> CowMergeOperation {
        let mut m = CowMergeOperation::new();
        m.set_type(kind);
        let ext = |start, num| {
            let mut e = Extent::new();
            e.set_start_block(start);
            e.set_num_blocks(num);
            e
        };
        m.src_extent = Some(ext(src, n)).into();
        m.dst_extent = Some(ext(dst, n)).into();
        if offset != 0 {
            m.set_src_offset(offset);
        }
        m
    }

    const BS: usize = 16;

    /// Merges `plan` in place over `old` the way snapuserd does (ordered ops in sequence
    /// order, reading the partly merged image), then writes `demoted` and `replaced` from
    /// `new`; XOR data is `new ^ old` taken before the merge, as the COW would hold it.
    fn merge_in_place(old: &[u8], new: &[u8], plan: &CowPlan) -> Vec<u8> {
        let blk = |img: &[u8], b: u64| img[b as usize * BS..(b as usize + 1) * BS].to_vec();
        let mut img = old.to_vec();
        for op in &plan.ops {
            let out = match *op {
                PlannedOp::Copy { old_block, .. } => blk(&img, old_block),
                PlannedOp::Xor {
                    new_block,
                    old_block,
                    offset,
                } => {
                    let at = old_block as usize * BS + offset as usize;
                    let src_now = img[at..at + BS].to_vec();
                    let src_then = &old[at..at + BS];
                    let data: Vec<u8> = blk(new, new_block)
                        .iter()
                        .zip(src_then)
                        .map(|(a, b)| a ^ b)
                        .collect();
                    data.iter().zip(&src_now).map(|(a, b)| a ^ b).collect()
                }
            };
            let b = op.new_block() as usize;
            img[b * BS..(b + 1) * BS].copy_from_slice(&out);
        }
        for &b in plan.demoted.iter().chain(&plan.replaced) {
            let b = b as usize;
            img[b * BS..(b + 1) * BS].copy_from_slice(&new[b * BS..(b + 1) * BS]);
        }
        img
    }

    #[test]
    fn shifts_swaps_cycles_and_xor_merge_in_place() {
        let old: Vec<u8> = (0..64 * BS).map(|i| (i * 7 % 251) as u8).collect();
        let ops = vec![
            // Overlapping shift up by 2 (must merge top down) and down by 1 (bottom up).
            op(MergeType::COW_COPY, 0, 2, 6, 0),
            op(MergeType::COW_COPY, 11, 10, 6, 0),
            // A swap and a 3-cycle, given in an unsafe order.
            op(MergeType::COW_COPY, 20, 21, 1, 0),
            op(MergeType::COW_COPY, 21, 20, 1, 0),
            op(MergeType::COW_COPY, 30, 31, 1, 0),
            op(MergeType::COW_COPY, 31, 32, 1, 0),
            op(MergeType::COW_COPY, 32, 30, 1, 0),
            // XOR with a misaligned source that a copy overwrites afterwards.
            op(MergeType::COW_XOR, 40, 50, 2, 5),
            op(MergeType::COW_COPY, 60, 41, 1, 0),
            op(MergeType::COW_COPY, 45, 45, 1, 0),
            op(MergeType::COW_REPLACE, 0, 55, 2, 0),
        ];
        // The new image the ops describe, from the untouched old image.
        let mut new = old.clone();
        let plan_view = plan_merge_ops(&ops, BS as u32).unwrap();
        for m in &ops {
            let (s, d, n) = (
                m.src_extent.start_block() as usize,
                m.dst_extent.start_block() as usize,
                m.dst_extent.num_blocks() as usize,
            );
            for k in 0..n {
                let at = (s + k) * BS + m.src_offset() as usize;
                match m.type_() {
                    MergeType::COW_REPLACE => new[(d + k) * BS..(d + k + 1) * BS].fill(0xee),
                    MergeType::COW_XOR => {
                        let src = old[at..at + BS].to_vec();
                        for (j, b) in src.iter().enumerate() {
                            new[(d + k) * BS + j] = b ^ 0x3c;
                        }
                    }
                    MergeType::COW_COPY => {
                        let src = old[at..at + BS].to_vec();
                        new[(d + k) * BS..(d + k + 1) * BS].copy_from_slice(&src);
                    }
                }
            }
        }
        assert_eq!(merge_in_place(&old, &new, &plan_view), new);
        // One op per cycle demoted, the identity copy dropped, nothing else lost.
        assert_eq!(plan_view.demoted.len(), 2);
        assert_eq!(plan_view.ops.len(), 6 + 6 + 2 + 3 + 2 + 1 - 2);
        assert_eq!(plan_view.replaced, vec![55, 56]);
        // The payload's order as it is (what update_engine writes) corrupts the image.
        let naive = CowPlan {
            ops: ops
                .iter()
                .filter(|m| m.type_() != MergeType::COW_REPLACE)
                .flat_map(|m| {
                    let (s, d) = (m.src_extent.start_block(), m.dst_extent.start_block());
                    (0..m.dst_extent.num_blocks()).map(move |k| match m.type_() {
                        MergeType::COW_XOR => PlannedOp::Xor {
                            new_block: d + k,
                            old_block: s + k,
                            offset: m.src_offset(),
                        },
                        _ => PlannedOp::Copy {
                            new_block: d + k,
                            old_block: s + k,
                        },
                    })
                })
                .collect(),
            replaced: plan_view.replaced.clone(),
            ..CowPlan::default()
        };
        assert_ne!(merge_in_place(&old, &new, &naive), new);
    }

    #[test]
    fn refuses_double_writes_and_bad_offsets() {
        let twice = [
            op(MergeType::COW_COPY, 0, 5, 2, 0),
            op(MergeType::COW_COPY, 9, 6, 1, 0),
        ];
        assert!(plan_merge_ops(&twice, 4096).is_err());
        let offset = [op(MergeType::COW_XOR, 0, 5, 1, 4096)];
        assert!(plan_merge_ops(&offset, 4096).is_err());
        let mut uneven = op(MergeType::COW_COPY, 0, 5, 2, 0);
        uneven.dst_extent.as_mut().unwrap().set_num_blocks(3);
        assert!(plan_merge_ops(&[uneven], 4096).is_err());
    }
}
