//! Applying the operations: read in order, decode in parallel, write in order, checkpoint.
//!
//! Three kinds of thread share the work. The reader pulls blobs off the payload stream and
//! carries the payload and file hash states forward. Workers check blob and source hashes and
//! decode (XZ, bzip2, zstd, bsdiff). The calling thread writes results in operation order and
//! checkpoints. A fixed number of tokens bounds the operations in flight, so memory stays at a
//! few operations' worth whatever the payload size.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Instant;

use super::checkpoint::Checkpoint;
use super::hashing::ResumableSha256;
use super::operation::{self, Output};
use super::{read_exact, Context, Progress, SourceRead, Stage, TargetWrite};
use crate::error::{Error, Result};
use crate::payload::Operation;
use crate::{bail, err};

pub(crate) struct Outcome {
    pub bytes_read: u64,
    pub operations: u64,
}

/// Operations decoded or queued ahead of the writer, beyond one per worker.
const EXTRA_IN_FLIGHT: usize = 2;

struct Job<'m> {
    seq: usize,
    part: usize,
    op: &'m Operation,
    blob: Vec<u8>,
    after: HashStates,
}

#[derive(Clone)]
struct HashStates {
    payload: Vec<u8>,
    file: Vec<u8>,
    /// Data-section offset just past this operation's blob.
    data_end: u64,
}

struct Done {
    seq: usize,
    part: usize,
    result: Result<Output>,
    after: HashStates,
    op_dst: Vec<crate::payload::Extent>,
}

pub(crate) fn write_operations(
    cx: &Context<'_>,
    reader: &mut (dyn Read + Send),
    cp: &mut Checkpoint,
) -> Result<Outcome> {
    let manifest = &cx.metadata.manifest;
    let ops: Vec<(usize, &Operation)> = manifest
        .partitions
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.operations.iter().map(move |op| (i, op)))
        .collect();
    let start = cp.next_operation as usize;
    let targets = manifest
        .partitions
        .iter()
        .map(|p| cx.partitions.open_target(&p.name))
        .collect::<Result<Vec<_>>>()?;
    let sources = manifest
        .partitions
        .iter()
        .map(|p| {
            let needed = p.operations.iter().any(|op| op.kind.reads_source());
            needed
                .then(|| cx.partitions.open_source(&p.name))
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;

    let threads = cx.options.threads.max(1);
    let in_flight = threads + EXTRA_IN_FLIGHT;
    let stop = AtomicBool::new(false);
    let (token_tx, token_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = token_tx.send(());
    }
    let (job_tx, job_rx) = sync_channel::<Job<'_>>(in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Done>();
    let payload_hash = ResumableSha256::restore(&cp.payload_hash_state)?;
    let file_hash = ResumableSha256::restore(&cp.file_hash_state)?;

    std::thread::scope(|s| {
        let reader_done = done_tx.clone();
        let (ops, stop) = (&ops, &stop);
        let data_offset = cp.next_data_offset;
        s.spawn(move || {
            read_blobs(
                ops,
                start,
                data_offset,
                reader,
                payload_hash,
                file_hash,
                stop,
                &token_rx,
                job_tx,
                reader_done,
            )
        });
        for _ in 0..threads {
            let (job_rx, done_tx, sources) = (&job_rx, done_tx.clone(), &sources);
            s.spawn(move || decode(job_rx, done_tx, sources));
        }
        drop(done_tx);
        let result = write_in_order(cx, &targets, ops, start, cp, done_rx, token_tx);
        stop.store(true, Ordering::Relaxed);
        result
    })
}

#[allow(clippy::too_many_arguments)]
fn read_blobs<'m>(
    ops: &'m [(usize, &'m Operation)],
    start: usize,
    mut data_offset: u64,
    reader: &mut (dyn Read + Send),
    mut payload_hash: ResumableSha256,
    mut file_hash: ResumableSha256,
    stop: &AtomicBool,
    tokens: &Receiver<()>,
    jobs: std::sync::mpsc::SyncSender<Job<'m>>,
    done: Sender<Done>,
) {
    for (seq, &(part, op)) in ops.iter().enumerate().skip(start) {
        if tokens.recv().is_err() || stop.load(Ordering::Relaxed) {
            return;
        }
        let mut blob = Vec::new();
        if op.kind.has_blob() {
            blob = vec![0u8; op.data_length as usize];
            if let Err(e) = read_exact(reader, &mut blob, "operation data") {
                let after = HashStates {
                    payload: vec![],
                    file: vec![],
                    data_end: data_offset,
                };
                let _ = done.send(Done {
                    seq,
                    part,
                    result: Err(e),
                    after,
                    op_dst: vec![],
                });
                return;
            }
            payload_hash.update(&blob);
            file_hash.update(&blob);
            data_offset += op.data_length;
        }
        let after = HashStates {
            payload: payload_hash.save(),
            file: file_hash.save(),
            data_end: data_offset,
        };
        if jobs
            .send(Job {
                seq,
                part,
                op,
                blob,
                after,
            })
            .is_err()
        {
            return;
        }
    }
}

fn decode(
    jobs: &Mutex<Receiver<Job<'_>>>,
    done: Sender<Done>,
    sources: &[Option<Box<dyn SourceRead>>],
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let source = sources.get(job.part).and_then(Option::as_deref);
        let result = read_source(job.op, source)
            .and_then(|src| operation::execute(job.op, job.blob, src.as_deref()));
        let msg = Done {
            seq: job.seq,
            part: job.part,
            result,
            after: job.after,
            op_dst: job.op.dst_extents.clone(),
        };
        if done.send(msg).is_err() {
            return;
        }
    }
}

fn read_source(op: &Operation, source: Option<&dyn SourceRead>) -> Result<Option<Vec<u8>>> {
    if !op.kind.reads_source() {
        return Ok(None);
    }
    let Some(source) = source else {
        bail!(
            PartitionMissing,
            "{} needs a source partition",
            op.kind.name()
        );
    };
    let mut buf = vec![0u8; op.src_bytes() as usize];
    let mut at = 0;
    for e in &op.src_extents {
        let len = e.byte_len() as usize;
        if e.byte_offset() + e.byte_len() > source.size() {
            bail!(
                SourceHash,
                "source extent {}+{} is past the source partition's end",
                e.start_block,
                e.num_blocks
            );
        }
        source
            .read_at(&mut buf[at..at + len], e.byte_offset())
            .map_err(|err| Error::io("reading the source partition", err))?;
        at += len;
    }
    Ok(Some(buf))
}

fn write_in_order(
    cx: &Context<'_>,
    targets: &[Box<dyn TargetWrite>],
    ops: &[(usize, &Operation)],
    start: usize,
    cp: &mut Checkpoint,
    done: Receiver<Done>,
    tokens: std::sync::mpsc::SyncSender<()>,
) -> Result<Outcome> {
    let data_offset = cx.metadata.header.data_offset();
    let total = cx.metadata.implied_size();
    let first_data = cp.next_data_offset;
    let mut pending = BTreeMap::new();
    let mut next = start;
    let mut dirty = vec![false; targets.len()];
    let mut last_checkpoint = Instant::now();
    let mut last_end = first_data;

    while next < ops.len() {
        if cx.observer.is_cancelled() {
            commit(cx, targets, &mut dirty, cp)?;
            bail!(
                Cancelled,
                "update cancelled at operation {next} of {}",
                ops.len()
            );
        }
        let msg = match pending.remove(&next) {
            Some(msg) => msg,
            None => {
                let msg = done
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
                commit(cx, targets, &mut dirty, cp)?;
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
        dirty[part] = true;
        let _ = tokens.send(());
        if ops.get(next + 1).is_none_or(|&(p, _)| p != part) {
            cx.hooks
                .partition_written(&cx.metadata.manifest.partitions[part].name)?;
        }
        next += 1;
        last_end = after.data_end;
        cp.next_operation = next as u32;
        cp.next_data_offset = after.data_end;
        cp.payload_hash_state = after.payload;
        cp.file_hash_state = after.file;
        if last_checkpoint.elapsed() >= cx.options.checkpoint_interval {
            commit(cx, targets, &mut dirty, cp)?;
            last_checkpoint = Instant::now();
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
    commit(cx, targets, &mut dirty, cp)?;
    Ok(Outcome {
        bytes_read: last_end - first_data,
        operations: (next - start) as u64,
    })
}

/// Makes everything written so far durable, then records it: sync before checkpoint.
fn commit(
    cx: &Context<'_>,
    targets: &[Box<dyn TargetWrite>],
    dirty: &mut [bool],
    cp: &Checkpoint,
) -> Result<()> {
    for (i, target) in targets.iter().enumerate() {
        if std::mem::take(&mut dirty[i]) {
            target
                .sync()
                .map_err(|e| Error::io("syncing a target partition", e))?;
        }
    }
    cx.store.save(cp)
}

fn write_extents(
    target: &dyn TargetWrite,
    extents: &[crate::payload::Extent],
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
