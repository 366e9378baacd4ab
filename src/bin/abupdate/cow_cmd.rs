//! `abupdate cow write|apply|info|update|merge|serve`: Virtual A/B COW images (libsnapshot_cow
//! v2/v3) on a host, for tests and for Android 15's `snapshotctl apply-update` (one COW per
//! partition), and a snapshot's view served as an nbd block device.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::file_sink::FileSink;
use crate::image_file::ImageFile;

use abupdate::cow::{
    write_image_cow, Compression, CowOptions, CowReader, OpType, ReadAt, SnapshotView,
};

#[derive(Subcommand)]
pub enum CowCommand {
    /// Write NEW.img as a COW (against --source OLD.img: unchanged blocks are left out, moved
    /// blocks become copies).
    Write {
        #[arg(long, default_value_t = 3)]
        version: u16,
        #[arg(long, default_value = "lz4")]
        compression: String,
        /// v3: bytes compressed together, 4096 to 262144 (a power of two).
        #[arg(long, default_value_t = 65536)]
        compression_factor: u32,
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
        /// The base image the COW will be applied over.
        #[arg(long)]
        source: Option<PathBuf>,
        /// Compression threads, default the available cores (the output does not depend on
        /// them).
        #[arg(long)]
        threads: Option<usize>,
        new: PathBuf,
        out: PathBuf,
    },
    /// Apply a COW over BASE.img into OUT.img (the snapshot's view of the new partition).
    Apply {
        /// Size of OUT.img; default: the larger of BASE.img and the last block the COW writes.
        #[arg(long)]
        size: Option<u64>,
        base: PathBuf,
        cow: PathBuf,
        out: PathBuf,
    },
    /// Header, op counts, labels and whether the merge order is safe.
    Info { cow: PathBuf },
    /// Serve the snapshot's view (BASE.img plus COW) read-only as the nbd device NBD
    /// (/dev/nbdN, module nbd loaded) until `cow serve-stop` disconnects it.
    Serve {
        #[arg(long)]
        nbd: PathBuf,
        /// The device's size; default: the larger of BASE.img and the last block the COW
        /// writes.
        #[arg(long)]
        size: Option<u64>,
        base: PathBuf,
        cow: PathBuf,
    },
    /// Disconnect an nbd device that `cow serve` serves (it then exits).
    ServeStop {
        #[arg(long)]
        nbd: PathBuf,
    },
    /// Apply a payload to a host device directory as Virtual A/B snapshots: one v3 COW per
    /// partition in SNAPSHOTS over the running slot's partitions; resumes where a killed run
    /// stopped.
    Update {
        /// The host device directory (<name>_a.img / <name>_b.img).
        #[arg(long)]
        device: PathBuf,
        /// The running slot (a or b).
        #[arg(long, default_value = "a")]
        current_slot: String,
        /// Where the COW files and the checkpoint go.
        #[arg(long)]
        snapshots: PathBuf,
        /// Trusted payload key (repeatable).
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        #[arg(long, default_value = "lz4")]
        compression: String,
        #[arg(long, default_value_t = 65536)]
        compression_factor: u32,
        /// Milliseconds between checkpoints.
        #[arg(long, default_value_t = 1000)]
        checkpoint_ms: u64,
        payload: PathBuf,
    },
    /// Merge a COW into its base image in place, resuming from STATE where a killed merge
    /// stopped. STATE then says the merge is done (merging again does nothing): remove it
    /// with the COW.
    Merge {
        #[arg(long)]
        state: PathBuf,
        base: PathBuf,
        cow: PathBuf,
    },
}

pub fn run(cmd: CowCommand) -> Result<()> {
    match cmd {
        CowCommand::Write {
            version,
            compression,
            compression_factor,
            block_size,
            source,
            threads,
            new,
            out,
        } => {
            let compression = Compression::from_name(&compression)
                .with_context(|| format!("unknown compression {compression:?}"))?;
            let opts = CowOptions {
                version,
                block_size,
                compression,
                compression_factor: if version == 3 {
                    compression_factor
                } else {
                    block_size
                },
                threads: threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
                ..CowOptions::default()
            };
            let new_img = ImageFile::open(&new)?;
            let old_img = source.as_deref().map(ImageFile::open).transpose()?;
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let sink = FileSink::new(file);
            let (sink, summary) = write_image_cow(&new_img, old_img.as_ref(), opts, sink)
                .with_context(|| format!("writing {}", out.display()))?;
            sink.finish()?;
            println!(
                "cow v{version} {}: copy={} replace={} zero={} sequence={} data={} bytes, {} bytes",
                compression.name(),
                summary.copy_ops,
                summary.replace_ops,
                summary.zero_ops,
                summary.sequence_entries,
                summary.data_bytes,
                summary.file_size
            );
            Ok(())
        }
        CowCommand::Apply {
            size,
            base,
            cow,
            out,
        } => apply(&base, &cow, &out, size),
        CowCommand::Info { cow } => info(&cow),
        CowCommand::Serve {
            nbd,
            size,
            base,
            cow,
        } => serve(&nbd, &base, &cow, size),
        CowCommand::ServeStop { nbd } => abupdate::nbd::disconnect(&nbd)
            .with_context(|| format!("disconnecting {}", nbd.display())),
        CowCommand::Update {
            device,
            current_slot,
            snapshots,
            keys,
            compression,
            compression_factor,
            checkpoint_ms,
            payload,
        } => {
            let compression = Compression::from_name(&compression)
                .with_context(|| format!("unknown compression {compression:?}"))?;
            let slot: abupdate::slot::Slot = current_slot
                .parse()
                .map_err(|_| anyhow::anyhow!("slot must be a or b"))?;
            let opts = CowOptions {
                compression,
                compression_factor,
                ..CowOptions::default()
            };
            update(
                &device,
                slot,
                &snapshots,
                &keys,
                opts,
                checkpoint_ms,
                &payload,
            )
        }
        CowCommand::Merge { state, base, cow } => {
            let cow_img = ImageFile::open(&cow)?;
            let target = abupdate::device::TargetPartition::open(&base)?;
            abupdate::device::snapshot_merge::merge(
                &cow_img,
                &target,
                &state,
                &mut |done, all| {
                    println!("merged {done}/{all}");
                },
            )?;
            println!("merge done");
            Ok(())
        }
    }
}

fn update(
    device: &Path,
    slot: abupdate::slot::Slot,
    snapshots: &Path,
    keys: &[PathBuf],
    opts: CowOptions,
    checkpoint_ms: u64,
    payload: &Path,
) -> Result<()> {
    use abupdate::engine::{self, ApplyOptions, Quiet};
    let dev = abupdate::device::Device::host(device, slot);
    let mut source = abupdate::source::Source::file(payload)?;
    let keys = abupdate::key_file::load_all(keys)?;
    // The manifest names the partitions and their merge ops: read and verify it first.
    let metadata = {
        use abupdate::engine::metadata::Metadata;
        let file = File::open(payload).with_context(|| format!("opening {}", payload.display()))?;
        let size = file.metadata()?.len();
        let mut head = vec![0u8; abupdate::payload::HEADER_SIZE];
        file.read_exact_at(&mut head, 0)?;
        let mut bytes = vec![0u8; usize::try_from(Metadata::needed(&head, Some(size))?)?];
        file.read_exact_at(&mut bytes, 0)?;
        let props = abupdate::payload::properties::PayloadProperties::new();
        Metadata::verify(bytes, Some(size), &props, &keys)?
    };
    let parts = abupdate::device::snapshot::SnapshotPartitions::new(
        &dev,
        snapshots,
        opts,
        &metadata.manifest,
    )?;
    let store = abupdate::checkpoint_store::FileCheckpointStore::new(snapshots.join("state"))?;
    let options = ApplyOptions {
        keys,
        checkpoint_interval: std::time::Duration::from_millis(checkpoint_ms),
        ..ApplyOptions::default()
    };
    let report = engine::apply(&parts, &mut source, &store, &(), &options, &Quiet)?;
    match report.resumed_at {
        Some(op) => println!("resumed at operation {op}"),
        None => println!("fresh start"),
    }
    println!("applied {} operations", report.operations_applied);
    Ok(())
}

fn apply(base: &Path, cow: &Path, out: &Path, size: Option<u64>) -> Result<()> {
    let cow_img = ImageFile::open(cow)?;
    let base_img = ImageFile::open(base)?;
    let reader = CowReader::parse(&cow_img, None).context("parsing the COW")?;
    let out_size = size.unwrap_or_else(|| base_img.size().max(reader.image_end()));
    std::fs::copy(base, out)
        .with_context(|| format!("copying {} to {}", base.display(), out.display()))?;
    let file = std::fs::OpenOptions::new().write(true).open(out)?;
    file.set_len(out_size)?;
    let mut sink = FileSink::new(file);
    reader
        .apply(&cow_img, &base_img, &mut sink, out_size)
        .context("applying the COW")?;
    sink.finish()?;
    Ok(())
}

fn serve(nbd: &Path, base: &Path, cow: &Path, size: Option<u64>) -> Result<()> {
    let view = SnapshotView::new(ImageFile::open(cow)?, ImageFile::open(base)?, size)
        .context("parsing the COW")?;
    let block_size = view.reader().header.block_size;
    let bytes = view.size();
    let stats = abupdate::nbd::serve_device(nbd, &view, block_size, || {
        // The line a script waits for: the device is configured and about to start.
        println!("serving {}: {bytes} bytes", nbd.display());
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
    .with_context(|| format!("serving {}", nbd.display()))?;
    println!(
        "disconnected: {} reads, {} bytes, {} refused",
        stats.reads, stats.bytes_read, stats.refused
    );
    Ok(())
}

fn info(path: &Path) -> Result<()> {
    let img = ImageFile::open(path)?;
    let r = CowReader::parse(&img, None).context("parsing the COW")?;
    let h = &r.header;
    println!("version:          {}.{}", h.major, h.minor);
    println!("block size:       {}", h.block_size);
    println!("compression:      {}", r.compression.name());
    if h.major == 3 {
        println!("compression unit: {} (max)", h.max_compression_size);
        println!("op count:         {} of {}", h.op_count, h.op_count_max);
        println!(
            "resume points:    {:?}",
            r.resume_points
                .iter()
                .map(|p| (p.label, p.op_index))
                .collect::<Vec<_>>()
        );
    } else {
        println!("cluster ops:      {}", h.cluster_ops);
        println!("footer ops:       {:?}", r.footer_ops);
        println!("last label:       {:?}", r.last_label);
    }
    println!("scratch space:    {}", h.buffer_size);
    println!("merged ops:       {}", h.num_merge_ops);
    println!("sequence:         {} entries", r.sequence.len());
    let count = |k: OpType| r.ops.iter().filter(|o| o.kind == k).count();
    println!(
        "ops:              copy={} replace={} zero={} xor={} label={} cluster={}",
        count(OpType::Copy),
        count(OpType::Replace),
        count(OpType::Zero),
        count(OpType::Xor),
        count(OpType::Label),
        count(OpType::Cluster)
    );
    println!("image end:        {} bytes", r.image_end());
    match r.verify_merge_order() {
        Ok(()) => println!("merge order:      consistent"),
        Err(e) => bail!("merge order: {e}"),
    }
    Ok(())
}
