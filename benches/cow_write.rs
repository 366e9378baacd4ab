//! COW writing benchmark: the 1 GiB benchmark image (the apply benchmark's content generator:
//! zeros, random, text and code runs) written as a Virtual A/B COW, v3, lz4, 64 KiB
//! compression factor, by `abupdate cow write` and by AOSP's own writer (`mkcow` on
//! libsnapshot_cow, `../shared/tools/aosp/bin`) in the same run. Prints wall times, the
//! speed ratio and each side's peak RSS (from `getrusage` of a wrapper process whose only
//! child is the writer).
//!
//! `cargo bench --bench cow_write`; `ABUPDATE_BENCH_MIB` (default 1024) for the size,
//! `ABUPDATE_BENCH_RUNS` (default 3) rounds, the fastest of each side counts,
//! `ABUPDATE_BENCH_THREADS` (default: the available cores, as `cow write`) for our compression
//! threads, `ABUPDATE_BENCH_MKCOW_THREADS` (default: none, mkcow's own default of one) for
//! mkcow's `--threads`.

#[allow(dead_code)]
#[path = "apply/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const WRAP: &str = "--wrapped";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(WRAP) {
        return wrapped(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let threads = env_u64("ABUPDATE_BENCH_THREADS", cores)?.max(1);
    let mkcow_threads = std::env::var("ABUPDATE_BENCH_MKCOW_THREADS").ok();
    let root = fixture::cache_root()?;
    let image = root.join(format!("cow-image-{mib}MiB-seed{:x}.img", fixture::SEED));
    if !image.exists() {
        let tmp = image.with_extension("tmp");
        let mut rng = fixture::Rng::new(fixture::SEED);
        fixture::write_image(&tmp, mib << 20, &mut rng)?;
        std::fs::rename(&tmp, &image)?;
    }
    println!("image: {} ({mib} MiB)", image.display());
    let ours_out = root.join("cow-ours.cow");
    let aosp_out = root.join("cow-aosp.cow");
    let ours_cmd: Vec<String> = [
        env!("CARGO_BIN_EXE_abupdate"),
        "cow",
        "write",
        "--version",
        "3",
        "--compression",
        "lz4",
        "--compression-factor",
        "65536",
        "--threads",
        &threads.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path(&image), path(&ours_out)])
    .collect();
    let mkcow = aosp_tool("mkcow");
    let aosp_cmd: Vec<String> = [
        path(&mkcow).as_str(),
        "--version",
        "3",
        "--compression",
        "lz4",
        "--compression-factor",
        "65536",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        mkcow_threads
            .iter()
            .flat_map(|t| ["--threads".to_owned(), t.clone()]),
    )
    .chain([path(&image), path(&aosp_out)])
    .collect();

    println!("load average before: {}", load_average());
    let mut ours_best = Duration::MAX;
    let mut aosp_best = Duration::MAX;
    let mut ours_rss = 0;
    let mut aosp_rss = 0;
    for round in 1..=runs {
        let (t_aosp, rss_aosp) = measure(&aosp_cmd)?;
        let (t_ours, rss_ours) = measure(&ours_cmd)?;
        println!(
            "  round {round}: ours {:.3} s ({} KiB peak RSS) | mkcow {:.3} s ({} KiB) | mkcow/ours {:.2}",
            t_ours.as_secs_f64(),
            rss_ours,
            t_aosp.as_secs_f64(),
            rss_aosp,
            t_aosp.as_secs_f64() / t_ours.as_secs_f64()
        );
        ours_best = ours_best.min(t_ours);
        aosp_best = aosp_best.min(t_aosp);
        ours_rss = ours_rss.max(rss_ours);
        aosp_rss = aosp_rss.max(rss_aosp);
    }
    println!("load average after: {}", load_average());
    // Both must be readable COWs of the same image.
    let sizes = (
        std::fs::metadata(&ours_out)?.len(),
        std::fs::metadata(&aosp_out)?.len(),
    );
    println!("fastest of {runs} rounds (ours with {threads} compression thread(s)):");
    println!(
        "  abupdate cow write: {:.3} s, {:.0} MiB/s, COW {} MiB, peak RSS {:.1} MiB",
        ours_best.as_secs_f64(),
        mib as f64 / ours_best.as_secs_f64(),
        sizes.0 >> 20,
        ours_rss as f64 / 1024.0
    );
    println!(
        "  AOSP mkcow ({} thread(s)): {:.3} s, {:.0} MiB/s, COW {} MiB, peak RSS {:.1} MiB",
        mkcow_threads.as_deref().unwrap_or("1"),
        aosp_best.as_secs_f64(),
        mib as f64 / aosp_best.as_secs_f64(),
        sizes.1 >> 20,
        aosp_rss as f64 / 1024.0
    );
    println!(
        "  speed ratio mkcow/ours = {:.2} (target >= 1.5); our peak RSS {:.1} MiB (target <= 64)",
        aosp_best.as_secs_f64() / ours_best.as_secs_f64(),
        ours_rss as f64 / 1024.0
    );
    Ok(())
}

/// Runs `cmd` under a wrapper process and returns its wall time and the writer's peak RSS.
fn measure(cmd: &[String]) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .arg(WRAP)
        .args(cmd)
        .output()?;
    let wall = start.elapsed();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rss = stdout
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .context("no maxrss from the wrapper")?
        .trim()
        .parse()?;
    Ok((wall, rss))
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
