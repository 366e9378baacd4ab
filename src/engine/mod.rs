//! The apply engine: payload bytes in, written and verified target partitions out.
//!
//! The engine never opens a file or socket itself. It reads the payload through a
//! [`PayloadSource`], partitions through [`SlotPartitions`], and keeps its resume state in a
//! [`CheckpointStore`]; the platform adapters (`device`, `source`, `checkpoint_store`)
//! implement those. The flow follows update_engine:
//!
//! 1. read and verify the metadata (header pairs, metadata signature, manifest);
//! 2. resume from a checkpoint of the same payload, or check the device and start over;
//! 3. apply every operation in order (decoded in parallel, written in order, checkpointed);
//! 4. verify the payload signature and `FILE_HASH` over everything read;
//! 5. re-read every target partition, write its verity data, check `new_partition_info.hash`.
//!
//! Switching slots is the caller's step, once this returns `Ok`.

mod buffers;
pub mod checkpoint;
mod commit;
pub mod cow_plan;
mod finalize;
pub mod hashing;
pub mod metadata;
pub mod operation;
mod pipeline;
mod trailing_pass;
mod verity_pass;
mod writer;

use std::io::{self, Read};

use checkpoint::{Checkpoint, CheckpointStore, Phase};
use hashing::ResumableSha256;
use metadata::Metadata;

use crate::error::{Error, Result};
use crate::payload::keys::TrustedKeys;
use crate::payload::properties::PayloadProperties;
use crate::{bail, err};

/// Give up resuming a payload after this many resumed attempts ended in an error, as
/// update_engine does (`kMaxResumedUpdateFailures`), and start over cleanly.
pub const MAX_RESUME_FAILURES: u32 = 10;

/// Room the state directory must have before an update starts: checkpoints are a few hundred
/// bytes, written twice (temporary file and rename), plus slack for the file system.
pub const MIN_STATE_SPACE: u64 = 1 << 20;

/// Read access to a partition of the running slot.
pub trait SourceRead: Send + Sync {
    /// Fills `buf` from `offset` bytes into the partition; a short read is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The partition's size in bytes.
    fn size(&self) -> u64;
}

/// Write access to a partition of the target slot. Writes are durable once `sync` returns.
pub trait TargetWrite: Send + Sync {
    /// Writes all of `buf` at `offset` bytes into the partition.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset` bytes into the partition; a short read is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Flushes what was written to stable storage.
    fn sync(&self) -> io::Result<()>;
    /// The partition's size in bytes.
    fn size(&self) -> u64;
    /// A snapshot (a Virtual A/B COW) marks a resume point here: everything written so far
    /// is what the state `label` names. The engine calls it, on the writing thread, for every
    /// partition written since the last checkpoint before that checkpoint is saved (`label`:
    /// the checkpoint's next operation), and with [`END_LABEL`] once a partition's verity data
    /// are written. A plain partition has nothing to do.
    fn label(&self, _label: u64) -> io::Result<()> {
        Ok(())
    }
    /// Before a run writes operations `next_operation..`: a snapshot goes back to its resume
    /// point for that checkpoint (or starts over at 0), dropping whatever a killed run wrote
    /// after it.
    fn rewind(&self, _next_operation: u32) -> io::Result<()> {
        Ok(())
    }
    /// Whether reading back while writing is costly (a snapshot re-reads its COW): the
    /// post-write pass then leaves the partition to the verifying phase.
    fn is_snapshot(&self) -> bool {
        false
    }
}

/// The last resume point of a snapshot: its operations and verity data are all written
/// (update_engine's `kEndOfInstallLabel`).
pub const END_LABEL: u64 = u64::MAX;

/// The partitions of the two slots, by name. Only the target slot can be written.
pub trait SlotPartitions: Sync {
    /// Opens the running slot's partition `name` (no slot suffix) for reading.
    fn open_source(&self, name: &str) -> Result<Box<dyn SourceRead>>;
    /// Opens the target slot's partition `name` (no slot suffix) for writing.
    fn open_target(&self, name: &str) -> Result<Box<dyn TargetWrite>>;
    /// Suffix of the target slot, recorded in checkpoints ("a" or "b").
    fn target_slot_name(&self) -> String;
}

/// Where payload bytes come from: a file, an HTTP URL, a file descriptor.
pub trait PayloadSource {
    /// Total payload size when known up front (file size, `FILE_SIZE`, `Content-Length`).
    fn size(&self) -> Option<u64>;
    /// A stream of payload bytes starting at `offset`. Read errors that carry a structured
    /// [`Error`] (`io::Error::other(Error)`) keep their code.
    fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send + '_>>;
}

/// What the engine is doing, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading and verifying the payload's metadata.
    Metadata,
    /// Applying operations to the target slot.
    Writing,
    /// Reading the written partitions back against their hashes (and computing verity data).
    Verifying,
    /// The new slot's postinstall programs run (after verification, before the switch):
    /// `bytes_done` of `bytes_total` is the programs' combined `global_progress`, in
    /// millionths.
    Postinstall,
    /// Finished: ready for the slot switch.
    Done,
}

/// A progress report.
#[derive(Clone, Debug)]
pub struct Progress {
    /// What the engine is doing.
    pub stage: Stage,
    /// [`Stage::Writing`]: payload bytes applied (written and checkpointable) out of
    /// `bytes_total`, the payload size. [`Stage::Verifying`]: bytes of the partitions verified
    /// so far out of all partitions' bytes.
    pub bytes_done: u64,
    /// See `bytes_done`.
    pub bytes_total: u64,
    /// Operations applied so far.
    pub operations_done: u64,
    /// Operations in the payload.
    pub operations_total: u64,
    /// Partition being verified, in [`Stage::Verifying`].
    pub partition: Option<String>,
}

/// Receives progress and answers whether to stop. Called from the engine's writing thread.
pub trait Observer: Sync {
    /// Called with each progress report.
    fn progress(&self, _progress: &Progress) {}
    /// Whether to stop; the engine asks between operations and stops with 38 (`Cancelled`).
    fn is_cancelled(&self) -> bool {
        false
    }
    /// Whether the update is suspended now, without waiting. A running postinstall program
    /// is stopped (SIGSTOP) while this holds, then [`Observer::is_cancelled`] is asked, which
    /// may wait for the resume.
    fn is_suspended(&self) -> bool {
        false
    }
    /// Whether the update was cancelled, without waiting out a suspension (an
    /// [`Observer::is_cancelled`] may block while suspended).
    fn is_cancelled_now(&self) -> bool {
        self.is_cancelled()
    }
}

/// An observer that ignores progress and never cancels.
pub struct Quiet;
impl Observer for Quiet {}

/// Policy hooks the engine calls at fixed points; the updater implements them with boot
/// control, downgrade and AVB checks. Each may refuse the update with its own code.
pub trait UpdateHooks: Sync {
    /// After the metadata verified, before anything is written (fresh start or resume).
    fn check_metadata(&self, _metadata: &Metadata) -> Result<()> {
        Ok(())
    }
    /// Before the first byte of a run is written to the target slot, on a fresh start and on
    /// every resume (a reset or the bootloader may have made the half-written slot bootable
    /// again since the last run): it must not boot half-written.
    fn before_first_write(&self) -> Result<()> {
        Ok(())
    }
    /// Before a run resumes from a checkpoint (nothing is written before it either): what
    /// `before_first_write` set up must still be in place (a torn record or a reset may have
    /// made the half-written target bootable again).
    fn before_resume(&self) -> Result<()> {
        Ok(())
    }
    /// After the last operation of a partition is written (not yet synced or verified).
    fn partition_written(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

impl UpdateHooks for () {}

/// How to apply a payload.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// What payloads must be signed with. The default, no key, refuses every payload (29).
    pub keys: TrustedKeys,
    /// `payload_properties.txt`: the sizes and hashes the payload must match.
    pub properties: PayloadProperties,
    /// Threads decoding operations; writing stays in order on the calling thread.
    pub threads: usize,
    /// Seconds between checkpoints while writing (update_engine: at most once a second).
    pub checkpoint_interval: std::time::Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            keys: TrustedKeys::none(),
            properties: PayloadProperties::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            checkpoint_interval: std::time::Duration::from_secs(1),
        }
    }
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    /// The payload's verified metadata.
    pub metadata: Metadata,
    /// The operation a resumed run started from (`None`: a fresh start).
    pub resumed_at: Option<u32>,
    /// Payload bytes this run read (metadata included).
    pub bytes_read: u64,
    /// Operations this run applied.
    pub operations_applied: u64,
}

/// The engine's context for one apply.
pub(crate) struct Context<'a> {
    pub partitions: &'a dyn SlotPartitions,
    pub store: &'a dyn CheckpointStore,
    pub options: &'a ApplyOptions,
    pub observer: &'a dyn Observer,
    pub hooks: &'a dyn UpdateHooks,
    pub metadata: &'a Metadata,
}

/// Applies a payload into the target slot, resuming where a previous run of the same payload
/// stopped. On success every target partition is written and verified; the caller switches slots.
pub fn apply(
    partitions: &dyn SlotPartitions,
    source: &mut dyn PayloadSource,
    store: &dyn CheckpointStore,
    hooks: &dyn UpdateHooks,
    options: &ApplyOptions,
    observer: &dyn Observer,
) -> Result<ApplyReport> {
    // Before the source is even opened: with nothing to verify against, nothing is read.
    options.keys.require()?;
    let size = payload_size(source, options)?;
    let mut stream = source.open(0)?;
    let metadata = read_metadata(&mut stream, size, options)?;
    metadata.manifest.check_supported()?;
    hooks.check_metadata(&metadata)?;
    let cx = Context {
        partitions,
        store,
        options,
        observer,
        hooks,
        metadata: &metadata,
    };

    let mut checkpoint = match store.load()? {
        Some(cp) if resumable(&cp, &metadata, partitions) => {
            hooks.before_resume()?;
            reverify_if_done(cp)
        }
        _ => {
            store.clear()?;
            start(&cx)?
        }
    };
    let resumed_at = (checkpoint.next_operation > 0 || checkpoint.phase > Phase::Writing)
        .then_some(checkpoint.next_operation);
    if resumed_at.is_some() {
        log::info!(
            "resuming at operation {} ({:?}, {} earlier failures)",
            checkpoint.next_operation,
            checkpoint.phase,
            checkpoint.resume_failures
        );
    }

    // A fresh start goes on reading the stream the metadata came from (one request for the
    // whole payload); a resume asks for exactly what the checkpoint does not cover.
    let data_offset = metadata.header.data_offset();
    let stream = match checkpoint.phase {
        Phase::Writing if checkpoint.next_data_offset == 0 => Some(stream),
        Phase::Writing => {
            drop(stream);
            Some(source.open(data_offset + checkpoint.next_data_offset)?)
        }
        Phase::Verifying | Phase::Done => None,
    };
    let result = run(&cx, stream, &mut checkpoint);
    match result {
        Ok((bytes_read, operations_applied)) => Ok(ApplyReport {
            metadata: metadata.clone(),
            resumed_at,
            bytes_read,
            operations_applied,
        }),
        Err(e) => {
            // A resumed run that fails counts towards giving up on resuming; cancellation and
            // device errors from a pulled cable do not make the state suspect.
            if resumed_at.is_some() && e.code != crate::ErrorCode::Cancelled {
                if let Ok(Some(mut cp)) = store.load() {
                    cp.resume_failures += 1;
                    let _ = store.save(&cp);
                }
            }
            Err(e)
        }
    }
}

/// The payload size the source knows, checked against `FILE_SIZE`.
fn payload_size(source: &dyn PayloadSource, options: &ApplyOptions) -> Result<Option<u64>> {
    let size = source.size();
    if let (Some(expected), Some(actual)) = (options.properties.file_size, size) {
        if expected != actual {
            bail!(
                SizeMismatch,
                "payload is {actual} bytes, FILE_SIZE says {expected}"
            );
        }
    }
    Ok(size.or(options.properties.file_size))
}

fn read_metadata(
    reader: &mut dyn Read,
    size: Option<u64>,
    options: &ApplyOptions,
) -> Result<Metadata> {
    let mut bytes = vec![0u8; crate::payload::HEADER_SIZE];
    read_exact(reader, &mut bytes, "payload header")?;
    let needed = Metadata::needed(&bytes, size)?;
    bytes.resize(needed as usize, 0);
    read_exact(
        reader,
        &mut bytes[crate::payload::HEADER_SIZE..],
        "payload metadata",
    )?;
    Metadata::verify(bytes, size, &options.properties, &options.keys)
}

/// A checkpoint that says every partition is written and verified is not taken at its word:
/// it may come from an earlier boot, and the target slot is what the switch trusts, so every
/// partition is verified again (re-reading it, as the first verification did).
fn reverify_if_done(mut cp: Checkpoint) -> Checkpoint {
    if cp.phase == Phase::Done {
        cp.phase = Phase::Verifying;
        cp.verified_partitions = 0;
    }
    cp
}

fn resumable(cp: &Checkpoint, metadata: &Metadata, partitions: &dyn SlotPartitions) -> bool {
    cp.payload_id == metadata.id
        && cp.target_slot == partitions.target_slot_name()
        && cp.resume_failures < MAX_RESUME_FAILURES
        && (cp.next_operation as usize) <= metadata.manifest.operation_count()
        // Past the blobs it is no resume point of this payload (and would overflow an offset).
        && cp.next_data_offset <= metadata.manifest.blobs_size
}

/// Checks that the device can take the payload `metadata` describes, before anything is
/// written: every target partition exists and is large enough (33), and for a delta every
/// source partition is exactly the base it was made for (25; this reads the whole base).
pub fn check_device(
    partitions: &dyn SlotPartitions,
    metadata: &Metadata,
    observer: &dyn Observer,
) -> Result<()> {
    for p in &metadata.manifest.partitions {
        let target = partitions.open_target(&p.name)?;
        if target.size() < p.new_info.size {
            bail!(
                PartitionMissing,
                "target partition {} has {} bytes, the update needs {}",
                p.name,
                target.size(),
                p.new_info.size
            );
        }
        if let Some(old) = &p.old_info {
            finalize::check_source(partitions, observer, &p.name, old)?;
        }
    }
    Ok(())
}

/// A fresh start: check that the device can take this payload, mark the target slot
/// unbootable, and save the first checkpoint.
fn start(cx: &Context<'_>) -> Result<Checkpoint> {
    if let Some(free) = cx.store.available_bytes() {
        if free < MIN_STATE_SPACE {
            bail!(
                NotEnoughStorage,
                "the state directory has {free} bytes free, {MIN_STATE_SPACE} needed"
            );
        }
    }
    check_device(cx.partitions, cx.metadata, cx.observer)?;
    cx.hooks.before_first_write()?;
    let mut payload_hash = ResumableSha256::new();
    let mut file_hash = ResumableSha256::new();
    let metadata_size = cx.metadata.header.metadata_size() as usize;
    payload_hash.update(&cx.metadata.bytes[..metadata_size]);
    file_hash.update(&cx.metadata.bytes);
    let cp = Checkpoint {
        payload_id: cx.metadata.id,
        payload_size: Some(cx.metadata.implied_size()),
        target_slot: cx.partitions.target_slot_name(),
        phase: Phase::Writing,
        next_operation: 0,
        next_data_offset: 0,
        payload_hash_state: payload_hash.save(),
        file_hash_state: file_hash.save(),
        verified_partitions: 0,
        resume_failures: 0,
    };
    cx.store.save(&cp)?;
    Ok(cp)
}

/// Runs the remaining phases from `cp`; `stream` is positioned at the checkpoint's next blob
/// while there are operations to write. Returns payload bytes read and operations applied.
fn run(
    cx: &Context<'_>,
    stream: Option<Box<dyn Read + Send + '_>>,
    cp: &mut Checkpoint,
) -> Result<(u64, u64)> {
    let mut bytes_read = cx.metadata.header.data_offset();
    let mut applied = 0;
    let mut digests = Vec::new();
    if let (Phase::Writing, Some(mut reader)) = (cp.phase, stream) {
        let outcome = pipeline::write_operations(cx, &mut reader, cp)?;
        bytes_read += outcome.bytes_read;
        applied = outcome.operations;
        digests = outcome.digests;
        bytes_read += verify_payload(cx, &mut reader, cp)?;
        cp.phase = Phase::Verifying;
        cx.store.save(cp)?;
    }
    if cp.phase == Phase::Verifying {
        finalize::verify_partitions(cx, cp, &digests)?;
        cp.phase = Phase::Done;
        cx.store.save(cp)?;
    }
    cx.observer.progress(&Progress {
        stage: Stage::Done,
        bytes_done: cx.metadata.implied_size(),
        bytes_total: cx.metadata.implied_size(),
        operations_done: cx.metadata.manifest.operation_count() as u64,
        operations_total: cx.metadata.manifest.operation_count() as u64,
        partition: None,
    });
    Ok((bytes_read, applied))
}

/// Reads the signature blob and checks the payload signature, `FILE_HASH` and `FILE_SIZE`.
fn verify_payload(cx: &Context<'_>, reader: &mut dyn Read, cp: &Checkpoint) -> Result<u64> {
    let payload_hash = ResumableSha256::restore(&cp.payload_hash_state)?.finish();
    let mut file_hash = ResumableSha256::restore(&cp.file_hash_state)?;
    let mut read = 0;
    let sig_blob = match cx.metadata.manifest.signatures {
        Some((_, len)) => {
            let mut blob = vec![0u8; len as usize];
            read_exact(reader, &mut blob, "payload signature")?;
            file_hash.update(&blob);
            read += len;
            Some(blob)
        }
        None => None,
    };
    let keys = &cx.options.keys;
    crate::payload::signature::check(
        keys,
        sig_blob.as_deref(),
        "payload",
        crate::ErrorCode::PayloadSignature,
        |set| set.verifies_digest(keys, &payload_hash),
    )?;
    // Anything after the signature means the payload is not what its manifest describes.
    let mut probe = [0u8; 1];
    if read_some(reader, &mut probe)? != 0 {
        bail!(
            SizeMismatch,
            "payload has data after its last blob/signature"
        );
    }
    let props = &cx.options.properties;
    if let Some(size) = props.file_size {
        if size != cx.metadata.implied_size() {
            bail!(
                SizeMismatch,
                "FILE_SIZE={size} but the payload is {} bytes",
                cx.metadata.implied_size()
            );
        }
    }
    if let Some(expected) = props.file_hash {
        if file_hash.finish() != expected {
            bail!(PayloadSignature, "payload does not match FILE_HASH");
        }
    }
    Ok(read)
}

/// Reads exactly `buf.len()` bytes, turning a short stream into a clear error.
pub(crate) fn read_exact(reader: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_some(reader, &mut buf[filled..])? {
            0 => bail!(
                SizeMismatch,
                "payload ended inside the {what} ({filled} of {} bytes)",
                buf.len()
            ),
            n => filled += n,
        }
    }
    Ok(())
}

fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(source_error(e)),
        }
    }
}

/// Keeps the structured code of a source's error, or files it as a download failure.
pub(crate) fn source_error(e: io::Error) -> Error {
    // Not `io::Error::downcast`: it is newer than AOSP 15's rustc 1.78.
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let message = e.to_string();
        return match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            _ => err!(DownloadFailed, "reading the payload: {message}"),
        };
    }
    err!(DownloadFailed, "reading the payload: {e}").caused_by(e)
}
