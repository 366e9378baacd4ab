//! Applying the operations: read in order, decode in parallel, write in order, checkpoint.
//!
//! Several threads share the work. The reader pulls blobs off the payload stream, carries the
//! payload and file hash states forward and checks each blob's own hash (one pass for the
//! three). Workers check source hashes and decode (XZ, bzip2, zstd, bsdiff). The calling
//! thread writes results in operation order (see `writer`); a committer thread makes them
//! durable and saves checkpoints, and the post-write pass hashes each partition right behind
//! the writer. A fixed number of tokens bounds the operations in flight, so memory stays at a
//! few operations' worth whatever the payload size.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::Mutex;

use super::buffers::BufferPool;
use super::checkpoint::Checkpoint;
use super::commit::Committer;
use super::hashing::ResumableSha256;
use super::operation::{self, CheckedBlob, Output};
use super::trailing_pass::{self, FinalPrefixes, Watermarks};
use super::{read_exact, writer, Context, SourceRead};
use crate::bail;
use crate::error::{Error, Result};
use crate::payload::Operation;

pub(crate) struct Outcome {
    pub bytes_read: u64,
    pub operations: u64,
    /// `new_partition_info.hash` candidates the post-write pass computed during writing.
    pub digests: Vec<Option<[u8; 32]>>,
}

/// Operations decoded or queued ahead of the writer, beyond one per worker. Room to keep the
/// workers busy while the writer waits on a slow write.
const EXTRA_IN_FLIGHT: usize = 4;

struct Job<'m> {
    seq: usize,
    part: usize,
    op: &'m Operation,
    blob: CheckedBlob,
    after: HashStates,
}

#[derive(Clone)]
pub(super) struct HashStates {
    pub payload: Vec<u8>,
    pub file: Vec<u8>,
    /// Data-section offset just past this operation's blob.
    pub data_end: u64,
}

/// A decoded operation on its way to the writer.
pub(super) struct Done {
    pub seq: usize,
    pub part: usize,
    pub result: Result<Output>,
    pub after: HashStates,
    pub op_dst: Vec<crate::payload::Extent>,
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
    for (t, p) in targets.iter().zip(&manifest.partitions) {
        t.rewind(cp.next_operation)
            .map_err(|e| Error::io(format!("rewinding the snapshot of {}", p.name), e))?;
    }
    // A snapshot's read-back re-reads its COW: the post-write pass leaves snapshots to the
    // verifying phase.
    let trailing = !targets.iter().any(|t| t.is_snapshot());
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
    // Every operation in flight holds at most a blob and an output buffer.
    let pool = BufferPool::new(2 * in_flight);
    let prefixes = FinalPrefixes::new(&manifest.partitions);
    let marks = Watermarks::new(prefixes.when_next_is(start));

    std::thread::scope(|s| {
        let reader_done = done_tx.clone();
        let (ops, stop, pool) = (&ops, &stop, &pool);
        let data_offset = cp.next_data_offset;
        s.spawn(move || {
            read_blobs(
                ops,
                start,
                data_offset,
                reader,
                payload_hash,
                file_hash,
                Flow {
                    stop,
                    tokens: &token_rx,
                    pool,
                },
                job_tx,
                reader_done,
            )
        });
        for _ in 0..threads {
            let (job_rx, done_tx, sources) = (&job_rx, done_tx.clone(), &sources);
            s.spawn(move || decode(job_rx, done_tx, sources, pool));
        }
        drop(done_tx);
        let pass = s.spawn(|| match trailing {
            true => trailing_pass::run(cx, &marks),
            false => Vec::new(),
        });
        let committer = Committer::spawn(s, &targets, cx.store);
        let written = writer::write_in_order(
            cx,
            &targets,
            ops,
            start,
            cp,
            writer::Inputs {
                done: done_rx,
                tokens: token_tx,
                pool,
                committer,
                prefixes: &prefixes,
                marks: &marks,
            },
        );
        stop.store(true, Ordering::Relaxed);
        marks.close();
        let digests = pass.join().unwrap_or_default();
        written.map(|(bytes_read, operations)| Outcome {
            bytes_read,
            operations,
            digests,
        })
    })
}

/// What the reader shares with the rest of the pipeline.
struct Flow<'a> {
    stop: &'a AtomicBool,
    tokens: &'a Receiver<()>,
    pool: &'a BufferPool,
}

#[allow(clippy::too_many_arguments)]
fn read_blobs<'m>(
    ops: &'m [(usize, &'m Operation)],
    start: usize,
    mut data_offset: u64,
    reader: &mut (dyn Read + Send),
    mut payload_hash: ResumableSha256,
    mut file_hash: ResumableSha256,
    flow: Flow<'_>,
    jobs: std::sync::mpsc::SyncSender<Job<'m>>,
    done: Sender<Done>,
) {
    for (seq, &(part, op)) in ops.iter().enumerate().skip(start) {
        if flow.tokens.recv().is_err() || flow.stop.load(Ordering::Relaxed) {
            return;
        }
        let blob = match read_blob(reader, op, [&mut payload_hash, &mut file_hash], flow.pool) {
            Ok(blob) => blob,
            Err(e) => {
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
        };
        if op.kind.has_blob() {
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

/// Reads an operation's blob, feeds it to the payload and file hashes and checks its own
/// hash: the three hashes in one pass over it.
fn read_blob(
    reader: &mut (dyn Read + Send),
    op: &Operation,
    [payload_hash, file_hash]: [&mut ResumableSha256; 2],
    pool: &BufferPool,
) -> Result<CheckedBlob> {
    if !op.kind.has_blob() {
        return CheckedBlob::hash(op, Vec::new());
    }
    let mut blob = pool.take(op.data_length as usize);
    blob.resize(op.data_length as usize, 0);
    read_exact(reader, &mut blob, "operation data")?;
    let mut own = ResumableSha256::new();
    ResumableSha256::update_all([payload_hash, file_hash, &mut own], &blob);
    CheckedBlob::with_digest(op, blob, &own.finish())
}

fn decode(
    jobs: &Mutex<Receiver<Job<'_>>>,
    done: Sender<Done>,
    sources: &[Option<Box<dyn SourceRead>>],
    pool: &BufferPool,
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
            .and_then(|src| operation::execute_checked(job.op, job.blob, src.as_deref(), pool));
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
