//! The three measurements: the XZ decompression bound (liblzma on two threads), the xz CLI on
//! the same blobs, and an apply in a child process (so its peak RSS is its own).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use abupdate::engine::{ApplyOptions, Observer, Progress, Stage};
use abupdate::payload::properties::PayloadProperties;
use abupdate::payload::{Manifest, OpKind, PayloadHeader, HEADER_SIZE};
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};

use crate::fixture::Fixture;

/// The first argument that makes the bench binary an apply child.
pub const CHILD_ARG: &str = "__abupdate_bench_apply_child";

/// One XZ operation: its blob and how many bytes it decompresses to.
pub struct XzBlob {
    pub data: Vec<u8>,
    pub out_len: usize,
}

/// Reads every REPLACE_XZ blob of the payload into memory.
pub fn xz_blobs(payload: &Path) -> Result<Vec<XzBlob>> {
    let file = File::open(payload)?;
    let mut header = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut header, 0)?;
    let header = PayloadHeader::parse(&header, None)?;
    let mut metadata = vec![0u8; header.metadata_size() as usize];
    file.read_exact_at(&mut metadata, 0)?;
    let manifest = Manifest::parse(&metadata[HEADER_SIZE..], None)?;
    let mut blobs = Vec::new();
    for op in manifest.partitions.iter().flat_map(|p| &p.operations) {
        if op.kind == OpKind::ReplaceXz {
            let mut data = vec![0u8; op.data_length as usize];
            file.read_exact_at(&mut data, header.data_offset() + op.data_offset)?;
            blobs.push(XzBlob {
                data,
                out_len: op.dst_bytes() as usize,
            });
        }
    }
    Ok(blobs)
}

/// Wall and CPU time of one measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timing {
    pub wall: Duration,
    pub cpu: Duration,
}

/// (a) Decodes every blob with liblzma, blobs shared out to `threads` threads, output thrown
/// away into one reused buffer per thread.
pub fn decompression_bound(blobs: &[XzBlob], threads: usize) -> Result<Timing> {
    let cpu = cpu_time()?;
    let next = AtomicUsize::new(0);
    let max_out = blobs.iter().map(|b| b.out_len).max().unwrap_or(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut out = vec![0u8; max_out];
                    while let Some(blob) = blobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let mut stream = liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0)?;
                        let status = stream.process(
                            &blob.data,
                            &mut out[..blob.out_len],
                            liblzma::stream::Action::Finish,
                        )?;
                        ensure!(
                            status == liblzma::stream::Status::StreamEnd
                                && stream.total_out() == blob.out_len as u64,
                            "blob decoded to {} bytes, expected {}",
                            stream.total_out(),
                            blob.out_len
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("decoder panicked"))?)
    })?;
    Ok(Timing {
        wall: t.elapsed(),
        cpu: cpu_time()? - cpu,
    })
}

/// (b) The same blobs through `xz -d`: each thread's share concatenated into one file (xz
/// decodes concatenated streams), decoded by that many processes at once. The files live in a
/// temporary directory for the length of the benchmark.
pub struct XzShares {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
}

impl XzShares {
    pub fn write(blobs: &[XzBlob], threads: usize, parent: &Path) -> Result<Self> {
        let dir = tempfile::tempdir_in(parent)?;
        let mut files = Vec::new();
        for i in 0..threads {
            let path = dir.path().join(format!("share-{i}.xz"));
            let mut out = std::io::BufWriter::new(File::create(&path)?);
            for blob in blobs.iter().skip(i).step_by(threads) {
                out.write_all(&blob.data)?;
            }
            out.flush()?;
            files.push(path);
        }
        Ok(XzShares { _dir: dir, files })
    }

    /// Wall time of the decoding processes; `None` without an xz binary.
    pub fn decode(&self) -> Result<Option<Duration>> {
        let t = Instant::now();
        let children: Vec<_> = match self
            .files
            .iter()
            .map(|f| {
                Command::new("xz")
                    .args(["-d", "-c", "-T1"])
                    .arg(f)
                    .stdout(Stdio::null())
                    .spawn()
            })
            .collect::<std::io::Result<Vec<_>>>()
        {
            Ok(children) => children,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for mut child in children {
            ensure!(child.wait()?.success(), "xz -d failed");
        }
        Ok(Some(t.elapsed()))
    }
}

/// What one apply child reports.
#[derive(Debug)]
pub struct ApplyRun {
    pub total: Duration,
    pub writing: Duration,
    /// Peak RSS of the child, from its own `VmHWM`.
    pub vm_hwm_kib: u64,
    /// User and system CPU time of the child.
    pub cpu: Duration,
}

/// (c) Applies the fixture's payload in a child process running this same binary.
pub fn apply_in_child(fixture: &Fixture, threads: usize) -> Result<ApplyRun> {
    fixture.reset_device()?;
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .arg(CHILD_ARG)
        .arg(&fixture.device)
        .arg(&fixture.payload)
        .arg(&fixture.properties)
        .arg(&fixture.cert)
        .arg(threads.to_string())
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("apply child failed ({}): {stdout}", output.status);
    }
    let field = |key: &str| -> Result<f64> {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("child output lacks {key}: {stdout}"))?
            .parse()
            .with_context(|| format!("child output {key}"))
    };
    Ok(ApplyRun {
        total: Duration::from_secs_f64(field("apply_secs")?),
        writing: Duration::from_secs_f64(field("writing_secs")?),
        vm_hwm_kib: field("vm_hwm_kib")? as u64,
        cpu: Duration::from_secs_f64(field("cpu_secs")?),
    })
}

/// The child's side: one apply through the library API, then its numbers on stdout.
pub fn child_main(args: &[String]) -> Result<()> {
    let [device, payload, properties, cert, threads] = args else {
        bail!("child arguments: DEVICE PAYLOAD PROPERTIES CERT THREADS");
    };
    let device = PathBuf::from(device);
    let host = HostOptions {
        current: Some(Slot::A),
        state_dir: Some(device.join("state")),
        avb_key: None,
    };
    let updater = Updater::open_host(&device, &host)?;
    let options = ApplyOptions {
        keys: abupdate::key_file::load(Path::new(cert))?,
        properties: PayloadProperties::parse_text(&fs::read_to_string(properties)?)?,
        threads: threads.parse()?,
        ..ApplyOptions::default()
    };
    let mut source = Source::file(Path::new(payload))?;
    let observer = StageClock {
        start: Instant::now(),
        verifying_at: Mutex::new(None),
    };
    let outcome = updater.apply(&mut source, &options, &observer)?;
    let total = observer.start.elapsed();
    ensure!(
        outcome.switched_to == Some(Slot::B),
        "the apply did not switch to slot B"
    );
    let writing = observer
        .verifying_at
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .unwrap_or(total);
    println!(
        "apply_secs={} writing_secs={} cpu_secs={} vm_hwm_kib={}",
        total.as_secs_f64(),
        writing.as_secs_f64(),
        cpu_time()?.as_secs_f64(),
        vm_hwm_kib()?
    );
    Ok(())
}

/// Notes when the engine moves from writing to verifying partitions.
struct StageClock {
    start: Instant,
    verifying_at: Mutex<Option<Duration>>,
}

impl Observer for StageClock {
    fn progress(&self, p: &Progress) {
        if p.stage == Stage::Verifying {
            if let Ok(mut at) = self.verifying_at.lock() {
                at.get_or_insert_with(|| self.start.elapsed());
            }
        }
    }
}

/// User plus system CPU time of this process (exec does not carry it over, unlike maxrss).
fn cpu_time() -> Result<Duration> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let secs =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// Peak RSS of this process's current image. (`ru_maxrss` would not do: a spawned child
/// shares its parent's memory until exec, and the kernel keeps that high-water mark.)
fn vm_hwm_kib() -> Result<u64> {
    let mut status = String::new();
    File::open("/proc/self/status")?.read_to_string(&mut status)?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?)
}
