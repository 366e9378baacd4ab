//! COW writing benchmark: the 1 GiB benchmark image (the apply benchmark's content generator:
//! zeros, random, text and code runs) written as a Virtual A/B COW, v3, lz4, 64 KiB
//! compression factor, by `abupdate cow write` and by AOSP's own writer (`mkcow` on
//! libsnapshot_cow, `../shared/tools/aosp/bin`) in the same run, mkcow both with its defaults
//! (one thread) and with `--threads 2 --batch-write` (libsnapshot's compression threads and
//! batched writes). Prints wall times, the speed ratios and each writer's peak RSS (from
//! `getrusage` of a wrapper process whose only child is the writer). Before each write the
//! previous output is removed and the page cache's dirty data written back, so no writer pays
//! for another's (or its own earlier) output.
//!
//! Also times the two LZ4 block compressors alone (lz4_flex, which `cow` uses, and
//! `abupdate::lz4`'s fast one, liblz4's output byte for byte) on the image's units.
//!
//! `cargo bench --bench cow_write`; `ABUPDATE_BENCH_MIB` (default 1024) for the size,
//! `ABUPDATE_BENCH_RUNS` (default 3) rounds, the fastest of each writer counts,
//! `ABUPDATE_BENCH_THREADS` (default: the available cores, as `cow write`) for our compression
//! threads.

#[allow(dead_code)]
#[path = "apply/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const WRAP: &str = "--wrapped";

/// One writer under test: its name, its command line but for the output, where it writes.
struct Writer {
    name: String,
    cmd: Vec<String>,
    out: PathBuf,
    best: Duration,
    /// User plus system CPU time of the fastest run.
    best_cpu: Duration,
    rss_kib: u64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WRAP) {
        return wrapped(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let threads = env_u64("ABUPDATE_BENCH_THREADS", cores)?.max(1);
    let root = fixture::cache_root()?;
    let image = root.join(format!("cow-image-{mib}MiB-seed{:x}.img", fixture::SEED));
    if !image.exists() {
        let tmp = image.with_extension("tmp");
        let mut rng = fixture::Rng::new(fixture::SEED);
        fixture::write_image(&tmp, mib << 20, &mut rng)?;
        std::fs::rename(&tmp, &image)?;
    }
    println!("image: {} ({mib} MiB)", image.display());
    let common = [
        "--version",
        "3",
        "--compression",
        "lz4",
        "--compression-factor",
        "65536",
    ];
    let writer = |name: &str, prog: &str, extra: &[&str], out: &str| Writer {
        name: name.to_owned(),
        cmd: std::iter::once(prog)
            .chain(extra.iter().copied())
            .chain(common)
            .chain([path(&image).as_str()])
            .map(str::to_owned)
            .collect(),
        out: root.join(out),
        best: Duration::MAX,
        best_cpu: Duration::ZERO,
        rss_kib: 0,
    };
    let mkcow = path(&aosp_tool("mkcow"));
    let threads_arg = threads.to_string();
    let mut writers = [
        writer(
            &format!("abupdate cow write ({threads} threads)"),
            env!("CARGO_BIN_EXE_abupdate"),
            &["cow", "write", "--threads", &threads_arg],
            "cow-ours.cow",
        ),
        writer("mkcow (1 thread)", &mkcow, &[], "cow-aosp.cow"),
        writer(
            "mkcow --threads 2 --batch-write",
            &mkcow,
            &["--threads", "2", "--batch-write"],
            "cow-aosp-t2.cow",
        ),
    ];

    compare_compressors(&image)?;
    println!("load average before: {}", load_average());
    for round in 1..=runs {
        let mut line = format!("  round {round}:");
        let mut times = Vec::new();
        for w in writers.iter_mut() {
            let (t, cpu, rss) = measure(&w.cmd, &w.out)?;
            line += &format!(
                " {} {:.3} s (CPU {:.3} s, {rss} KiB) |",
                w.name,
                t.as_secs_f64(),
                cpu.as_secs_f64()
            );
            times.push(t);
            if t < w.best {
                w.best = t;
                w.best_cpu = cpu;
            }
            w.rss_kib = w.rss_kib.max(rss);
        }
        for t in &times[1..] {
            line += &format!(" {:.2}x", t.as_secs_f64() / times[0].as_secs_f64());
        }
        println!("{line}");
    }
    println!("load average after: {}", load_average());
    println!("fastest of {runs} rounds:");
    for w in &writers {
        println!(
            "  {}: {:.3} s (CPU {:.3} s), {:.0} MiB/s, COW {} MiB, peak RSS {:.1} MiB",
            w.name,
            w.best.as_secs_f64(),
            w.best_cpu.as_secs_f64(),
            mib as f64 / w.best.as_secs_f64(),
            std::fs::metadata(&w.out)?.len() >> 20,
            w.rss_kib as f64 / 1024.0
        );
    }
    let ours = &writers[0];
    for w in &writers[1..] {
        println!(
            "  speed ratio {} / ours = {:.2} (target >= 1.5)",
            w.name,
            w.best.as_secs_f64() / ours.best.as_secs_f64()
        );
    }
    println!(
        "  our peak RSS {:.1} MiB (target <= 64)",
        ours.rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// The two LZ4 block compressors alone, one thread, on the image's 64 KiB units that are not
/// all zero (the units `cow write` compresses): lz4_flex and `abupdate::lz4`'s fast compressor
/// (liblz4's `LZ4_compress_default`, byte for byte). Fastest of three passes each.
fn compare_compressors(image: &Path) -> Result<()> {
    const UNIT: usize = 65536;
    let data = std::fs::read(image)?;
    let units: Vec<&[u8]> = data
        .chunks(UNIT)
        .filter(|u| u.iter().any(|&b| b != 0))
        .collect();
    let input: usize = units.iter().map(|u| u.len()).sum();
    let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(UNIT)];
    let mut time = |f: &mut dyn FnMut(&[u8], &mut [u8]) -> usize| {
        let mut best = (Duration::MAX, 0usize);
        for _ in 0..3 {
            let t = Instant::now();
            let size: usize = units.iter().map(|u| f(u, &mut out).min(u.len())).sum();
            best = (best.0.min(t.elapsed()), size);
        }
        best
    };
    let flex = time(&mut |u, out| lz4_flex::block::compress_into(u, out).unwrap_or(u.len()));
    let ours = time(&mut |u, _| {
        abupdate::lz4::compress_dest_size(u, u.len() + u.len() / 255 + 16)
            .map_or(u.len(), |(z, _)| z.len())
    });
    println!(
        "lz4 alone, one thread, {} MiB of non-zero 64 KiB units:",
        input >> 20
    );
    for (name, (t, size)) in [("lz4_flex", flex), ("abupdate::lz4 fast", ours)] {
        println!(
            "  {name}: {:.3} s, {:.0} MiB/s, {} MiB stored ({:.3} of the input)",
            t.as_secs_f64(),
            (input >> 20) as f64 / t.as_secs_f64(),
            size >> 20,
            size as f64 / input as f64
        );
    }
    Ok(())
}

/// Runs `cmd OUT` under a wrapper process and returns its wall time, the writer's CPU time
/// (user and system) and its peak RSS; first removes OUT and writes dirty data back.
fn measure(cmd: &[String], out: &Path) -> Result<(Duration, Duration, u64)> {
    match std::fs::remove_file(out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    nix::unistd::sync();
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .arg(WRAP)
        .args(cmd)
        .arg(out)
        .output()?;
    let wall = start.elapsed();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> Result<&str> {
        Ok(stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .with_context(|| format!("no {key} from the wrapper"))?
            .trim())
    };
    let rss = field("maxrss_kib=")?.parse()?;
    let cpu = Duration::from_secs_f64(field("cpu_secs=")?.parse()?);
    Ok((wall, cpu, rss))
}

/// The wrapper: runs the writer as its only child and prints the child's peak RSS.
fn wrapped(cmd: &[String]) -> Result<()> {
    let (prog, args) = cmd.split_first().context("no command")?;
    let out = Command::new(prog).args(args).output()?;
    if !out.status.success() {
        bail!("{prog} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    println!("maxrss_kib={}", usage.max_rss());
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    println!(
        "cpu_secs={}",
        secs(usage.user_time()) + secs(usage.system_time())
    );
    Ok(())
}

fn aosp_tool(name: &str) -> PathBuf {
    let shared = std::env::var_os("ABUPDATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("tools/aosp/bin").join(name)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(default),
    }
}
