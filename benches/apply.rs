//! Apply benchmark: how close the engine gets to the XZ decompression bound.
//!
//! `cargo bench --bench apply` builds (once, cached) a signed full payload of 1 GiB of partition
//! data (`ABUPDATE_BENCH_MIB` to change the size), then measures:
//! (a) the bound: decoding all the payload's XZ blobs with liblzma on two threads;
//! (b) `xz -d` on the same blobs, for reference;
//! (c) an apply into a host device directory with two decoding threads, in a child process:
//!     wall time, throughput, peak RSS, and its ratio to (a).
//!
//! Each measurement runs `ABUPDATE_BENCH_RUNS` times (default 3) and the fastest run counts:
//! the machine is shared, and interference only ever adds time.

#[path = "apply/fixture.rs"]
mod fixture;
#[path = "apply/measure.rs"]
mod measure;

use std::time::Duration;

use anyhow::Result;

use fixture::Fixture;

const THREADS: usize = 2;
const SEED: u64 = 0x00ab_0bda_7e00_5eed;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(measure::CHILD_ARG) {
        return measure::child_main(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1) as usize;

    let fixture = Fixture::prepare(mib, SEED)?;
    let blobs = measure::xz_blobs(&fixture.payload)?;
    let blob_bytes: usize = blobs.iter().map(|b| b.data.len()).sum();
    let xz_out: usize = blobs.iter().map(|b| b.out_len).sum();
    println!(
        "payload: {} MiB of partitions, {} XZ blobs ({} MiB -> {} MiB), payload file {} MiB",
        fixture.partition_bytes >> 20,
        blobs.len(),
        blob_bytes >> 20,
        xz_out >> 20,
        std::fs::metadata(&fixture.payload)?.len() >> 20
    );

    let mut bounds = (0..runs)
        .map(|_| measure::decompression_bound(&blobs, THREADS))
        .collect::<Result<Vec<_>>>()?;
    bounds.sort();
    for b in &bounds {
        println!("    bound run: {} (CPU {})", secs(b.wall), secs(b.cpu));
    }
    let bound = bounds[0].wall;
    let bound_cpu = bounds.iter().map(|b| b.cpu).min().unwrap_or_default();
    println!(
        "(a) decompression bound, liblzma on {THREADS} threads: {}",
        secs(bound)
    );

    let mut applies = Vec::new();
    for _ in 0..runs {
        let run = measure::apply_in_child(&fixture, THREADS)?;
        println!(
            "    apply run: {} (writing {}, verifying {}), CPU {}, VmHWM {} KiB",
            secs(run.total),
            secs(run.writing),
            secs(run.total.saturating_sub(run.writing)),
            secs(run.cpu),
            run.vm_hwm_kib
        );
        applies.push(run);
    }
    let apply_cpu = applies.iter().map(|r| r.cpu).min().unwrap_or_default();
    let peak_rss = applies.iter().map(|r| r.vm_hwm_kib).max().unwrap_or(0);
    let apply = applies.iter().map(|r| r.total).min().unwrap_or_default();
    drop(applies);

    let cli = best(runs, || {
        measure::xz_cli(&blobs, THREADS, &fixture.dir).map(|d| d.unwrap_or_default())
    })?;

    let mib_s = (fixture.partition_bytes as f64 / (1 << 20) as f64) / apply.as_secs_f64();
    println!(
        "(b) xz -d (xz-utils CLI), {THREADS} processes: {} ({:.2}x the bound)",
        secs(cli),
        ratio(cli, bound)
    );
    println!(
        "(c) apply, {THREADS} threads: {} = {mib_s:.0} MiB/s of partition data",
        secs(apply)
    );
    println!(
        "    peak RSS of the apply: {:.1} MiB (VmHWM of the child)",
        peak_rss as f64 / 1024.0
    );
    println!(
        "    apply / decompression bound = {:.2} (wall)",
        ratio(apply, bound)
    );
    println!(
        "    CPU time: apply {} / bound {} = {:.2} (less sensitive to other load)",
        secs(apply_cpu),
        secs(bound_cpu),
        ratio(apply_cpu, bound_cpu)
    );
    Ok(())
}

/// The fastest of `runs` measurements.
fn best(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut times = (0..runs).map(|_| f()).collect::<Result<Vec<_>>>()?;
    times.sort();
    Ok(times[0])
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(default),
    }
}
