//! The writing end of the pipeline: decoded operations are written in operation order, the
//! checkpoint advances with them, and durable checkpoints are handed to the committer.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use super::buffers::BufferPool;
use super::checkpoint::Checkpoint;
use super::commit::Committer;
use super::operation::Output;
use super::pipeline::Done;
use super::trailing_pass::{FinalPrefixes, Watermarks};
use super::{Context, Progress, Stage, TargetWrite};
use crate::error::{Error, Result};
use crate::payload::{Extent, Operation};
use crate::{bail, err};

/// The writer's connections to the other threads.
pub(super) struct Inputs<'a> {
    /// Decoded operations, in any order.
    pub done: Receiver<Done>,
    /// One token back per operation written: the reader may take on another.
    pub tokens: SyncSender<()>,
    pub pool: &'a BufferPool,
    pub committer: Committer<'a>,
    pub prefixes: &'a FinalPrefixes,
    /// Told how far each partition is final, for the post-write pass.
    pub marks: &'a Watermarks,
}

/// Writes operations `start..` in order. Returns the payload bytes and operations consumed.
pub(super) fn write_in_order(
    cx: &Context<'_>,
    targets: &[Box<dyn TargetWrite>],
    ops: &[(usize, &Operation)],
    start: usize,
    cp: &mut Checkpoint,
    inputs: Inputs<'_>,
) -> Result<(u64, u64)> {
    let Inputs {
        done,
        tokens,
        pool,
        mut committer,
        prefixes,
        marks,
    } = inputs;
    let data_offset = cx.metadata.header.data_offset();
    let total = cx.metadata.implied_size();
    let first_data = cp.next_data_offset;
    let mut pending = BTreeMap::new();
    let mut next = start;
    let mut last_checkpoint = Instant::now();

    while next < ops.len() {
        if cx.observer.is_cancelled() {
            committer.finish(cp)?;
            bail!(
                Cancelled,
                "update cancelled at operation {next} of {}",
                ops.len()
            );
        }
        let msg = match pending.remove(&next) {
            Some(msg) => msg,
            None => {
                let msg: Done = done
                    .recv()
                    .map_err(|_| err!(InstallFailed, "decoder threads stopped"))?;
                pending.insert(msg.seq, msg);
                continue;
            }
        };
        let Done {
            part,
            result,
            after,
            op_dst,
            ..
        } = msg;
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                // Keep what is already written: a resume restarts at the failing operation.
                committer.finish(cp)?;
                return Err(e);
            }
        };
        write_extents(targets[part].as_ref(), &op_dst, &output).map_err(|e| {
            Error::io(
                format!(
                    "writing partition {}",
                    cx.metadata.manifest.partitions[part].name
                ),
                e,
            )
        })?;
        committer.mark_dirty(part);
        if let Output::Data(buf) = output {
            pool.give(buf);
        }
        let _ = tokens.send(());
        let (_, final_prefix) = prefixes.after(next);
        marks.advance(part, final_prefix);
        if ops.get(next + 1).map_or(true, |&(p, _)| p != part) {
            cx.hooks
                .partition_written(&cx.metadata.manifest.partitions[part].name)?;
        }
        next += 1;
        cp.next_operation = next as u32;
        cp.next_data_offset = after.data_end;
        cp.payload_hash_state = after.payload;
        cp.file_hash_state = after.file;
        if last_checkpoint.elapsed() >= cx.options.checkpoint_interval {
            // A commit still running when the interval is up delays the next one.
            if committer.start(cp)? {
                last_checkpoint = Instant::now();
            }
        } else {
            committer.poll()?;
        }
        cx.observer.progress(&Progress {
            stage: Stage::Writing,
            bytes_done: data_offset + after.data_end,
            bytes_total: total,
            operations_done: next as u64,
            operations_total: ops.len() as u64,
            partition: None,
        });
    }
    committer.finish(cp)?;
    Ok((cp.next_data_offset - first_data, (next - start) as u64))
}

fn write_extents(
    target: &dyn TargetWrite,
    extents: &[Extent],
    output: &Output,
) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut at = 0usize;
    for e in extents {
        let len = e.byte_len() as usize;
        match output {
            Output::Data(data) => target.write_at(&data[at..at + len], e.byte_offset())?,
            Output::Zeros => {
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(ZEROS.len());
                    target.write_at(&ZEROS[..n], e.byte_offset() + done as u64)?;
                    done += n;
                }
            }
        }
        at += len;
    }
    Ok(())
}
