//! The post-write pass, run while operations are still being applied: a thread re-reads and
//! hashes each target partition (building its verity data on the way) right behind the
//! writer, touching only bytes that no later operation writes. Its digests spare the verifying
//! phase a second pass over every partition; whatever it did not finish (an error, a
//! cancellation, a resumed update) that phase does as before.
//!
//! Which bytes are final follows from the manifest alone: once operation `k` of a partition is
//! written, every byte below the lowest offset that operations `k+1..` of that partition write
//! keeps its content. For a full payload, whose operations fill a partition in order, that is
//! everything before the next operation.

use std::sync::{Condvar, Mutex};

use super::{verity_pass, Context};
use crate::err;
use crate::error::Result;
use crate::payload::manifest::Partition;

/// For every operation, in apply order, how much of its partition is final once it is written.
pub(super) struct FinalPrefixes {
    /// Partition of each operation, and the final prefix after it.
    after_op: Vec<(usize, u64)>,
    /// Operations of each partition, as a range of apply-order indexes.
    ranges: Vec<std::ops::Range<usize>>,
    /// Final prefix of each partition before any of its operations is written.
    before_any: Vec<u64>,
}

impl FinalPrefixes {
    pub fn new(partitions: &[Partition]) -> Self {
        let mut after_op = Vec::new();
        let mut ranges = Vec::new();
        let mut before_any = Vec::new();
        for (i, p) in partitions.iter().enumerate() {
            let lows: Vec<u64> = p
                .operations
                .iter()
                .map(|op| {
                    let low = op.dst_extents.iter().map(|e| e.byte_offset()).min();
                    low.unwrap_or(u64::MAX)
                })
                .collect();
            // Suffix minima: after operation k, nothing below min(lows[k+1..]) changes.
            let mut after = vec![u64::MAX; lows.len()];
            for k in (0..lows.len().saturating_sub(1)).rev() {
                after[k] = after[k + 1].min(lows[k + 1]);
            }
            let start = after_op.len();
            after_op.extend(after.into_iter().map(|prefix| (i, prefix)));
            ranges.push(start..after_op.len());
            before_any.push(lows.iter().copied().min().unwrap_or(u64::MAX));
        }
        FinalPrefixes {
            after_op,
            ranges,
            before_any,
        }
    }

    /// Each partition's final prefix when the operations before `next` are written.
    pub fn when_next_is(&self, next: usize) -> Vec<u64> {
        self.ranges
            .iter()
            .zip(&self.before_any)
            .map(|(range, &before)| {
                if next >= range.end {
                    u64::MAX
                } else if next <= range.start {
                    before
                } else {
                    self.after_op[next - 1].1
                }
            })
            .collect()
    }

    /// The partition of operation `op` and its final prefix once `op` is written.
    pub fn after(&self, op: usize) -> (usize, u64) {
        self.after_op.get(op).copied().unwrap_or((0, 0))
    }
}

/// The final prefixes as the writer advances them, for the pass to wait on.
pub(super) struct Watermarks {
    state: Mutex<(Vec<u64>, bool)>,
    moved: Condvar,
}

impl Watermarks {
    pub fn new(initial: Vec<u64>) -> Self {
        Watermarks {
            state: Mutex::new((initial, false)),
            moved: Condvar::new(),
        }
    }

    pub fn advance(&self, partition: usize, prefix: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mark) = state.0.get_mut(partition) {
            *mark = (*mark).max(prefix);
        }
        self.moved.notify_all();
    }

    /// No more writes in this run: waits for bytes that are not final yet fail from now on.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.moved.notify_all();
    }

    fn wait(&self, partition: usize, end: u64) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.0.get(partition).is_some_and(|&mark| mark >= end) {
                return Ok(());
            }
            if state.1 {
                return Err(err!(InstallFailed, "writing stopped before the pass"));
            }
            state = self.moved.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The pass over every partition in manifest order, each as far as the writer lets it. Returns
/// the digests it completed; it stops at the first partition it cannot finish.
pub(super) fn run(cx: &Context<'_>, marks: &Watermarks) -> Vec<Option<[u8; 32]>> {
    let partitions = &cx.metadata.manifest.partitions;
    let mut digests = vec![None; partitions.len()];
    for (i, p) in partitions.iter().enumerate() {
        let digest = cx
            .partitions
            .open_target(&p.name)
            .and_then(|target| verity_pass::run(cx, p, target.as_ref(), &|end| marks.wait(i, end)));
        match digest {
            Ok(digest) => digests[i] = Some(digest),
            Err(e) => {
                log::debug!("post-write pass left {} for later: {e}", p.name);
                break;
            }
        }
    }
    digests
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::manifest::{Extent, PartitionInfo};
    use crate::payload::{OpKind, Operation};

    fn partition(dst_starts: &[&[u64]]) -> Partition {
        let operations = dst_starts
            .iter()
            .map(|starts| Operation {
                kind: OpKind::Replace,
                data_offset: 0,
                data_length: 0,
                data_sha256: None,
                src_extents: vec![],
                src_sha256: None,
                dst_extents: starts
                    .iter()
                    .map(|&start_block| Extent {
                        start_block,
                        num_blocks: 1,
                    })
                    .collect(),
            })
            .collect();
        Partition {
            name: "p".into(),
            old_info: None,
            new_info: PartitionInfo {
                size: 16 * 4096,
                hash: [0; 32],
            },
            operations,
            verity: None,
            version: None,
            postinstall: None,
            cow: Default::default(),
        }
    }

    #[test]
    fn a_prefix_is_final_once_no_later_operation_writes_below_its_end() {
        const B: u64 = 4096;
        // Partition 0 writes blocks in order; partition 1 writes 4, then 2 and 9, then 3.
        let parts = [
            partition(&[&[0], &[1], &[2]]),
            partition(&[&[4], &[9, 2], &[3]]),
        ];
        let prefixes = FinalPrefixes::new(&parts);
        assert_eq!(prefixes.when_next_is(0), vec![0, 2 * B]);
        assert_eq!(prefixes.after(0), (0, B));
        assert_eq!(prefixes.after(2), (0, u64::MAX));
        assert_eq!(prefixes.after(3), (1, 2 * B));
        assert_eq!(prefixes.after(4), (1, 3 * B));
        assert_eq!(prefixes.after(5), (1, u64::MAX));
        // Resuming at operation 4 (the second of partition 1).
        assert_eq!(prefixes.when_next_is(4), vec![u64::MAX, 2 * B]);
        assert_eq!(prefixes.when_next_is(6), vec![u64::MAX, u64::MAX]);
    }

    #[test]
    fn waiting_ends_when_the_mark_passes_or_writing_stops() {
        let marks = Watermarks::new(vec![0]);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| marks.wait(0, 100));
            marks.advance(0, 100);
            assert!(waiter.join().unwrap().is_ok());
            let waiter = s.spawn(|| marks.wait(0, 200));
            marks.close();
            assert!(waiter.join().unwrap().is_err());
        });
    }
}
