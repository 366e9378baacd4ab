//! Apply benchmark: how close the engine gets to the XZ decompression bound.
//!
//! `cargo bench --bench apply` builds (once, cached) a signed full payload of 1 GiB of partition
//! data (`ABUPDATE_BENCH_MIB` to change the size), then measures:
//! (a) the bound: decoding all the payload's XZ blobs with liblzma on two threads;
//! (b) `xz -d` on the same blobs, for reference;
//! (c) an apply into a host device directory with two decoding threads, in a child process:
//!     wall time, throughput, peak RSS, and its ratio to (a).
//!
//! The three run in turn, `ABUPDATE_BENCH_RUNS` rounds (default 3), and the fastest of each
//! counts: the machine may be shared, and interference only ever adds time.

#[path = "apply/fixture.rs"]
mod fixture;
#[path = "apply/measure.rs"]
mod measure;

use std::time::Duration;

use anyhow::Result;

use fixture::Fixture;

const THREADS: usize = 2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(measure::CHILD_ARG) {
        return measure::child_main(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1) as usize;

    let fixture = Fixture::prepare(mib, fixture::SEED)?;
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

    let shares = measure::XzShares::write(&blobs, THREADS, &fixture.dir)?;
    println!("load average before: {}", load_average());
    // Rounds interleave the three measurements, so that a burst of load from elsewhere on a
    // shared machine hits all of them alike; each round's ratio is printed too.
    let mut rounds = Vec::new();
    for round in 1..=runs {
        let bound = measure::decompression_bound(&blobs, THREADS)?;
        let apply = measure::apply_in_child(&fixture, THREADS)?;
        let cli = shares.decode()?;
        println!(
            "  round {round}: bound {} (CPU {}) | apply {} (writing {}, then {}; CPU {}; \
             VmHWM {} KiB) | xz -d {} | apply/bound {:.2}",
            secs(bound.wall),
            secs(bound.cpu),
            secs(apply.total),
            secs(apply.writing),
            secs(apply.total.saturating_sub(apply.writing)),
            secs(apply.cpu),
            apply.vm_hwm_kib,
            cli.map_or("n/a".to_owned(), secs),
            ratio(apply.total, bound.wall),
        );
        rounds.push((bound, apply, cli));
    }
    println!("load average after: {}", load_average());

    let bound = rounds.iter().map(|r| r.0.wall).min().unwrap_or_default();
    let bound_cpu = rounds.iter().map(|r| r.0.cpu).min().unwrap_or_default();
    let apply = rounds.iter().map(|r| r.1.total).min().unwrap_or_default();
    let apply_cpu = rounds.iter().map(|r| r.1.cpu).min().unwrap_or_default();
    let peak_rss = rounds.iter().map(|r| r.1.vm_hwm_kib).max().unwrap_or(0);
    let cli = rounds.iter().filter_map(|r| r.2).min();
    let mib_s = (fixture.partition_bytes as f64 / (1 << 20) as f64) / apply.as_secs_f64();
    println!("fastest of {runs} rounds:");
    println!(
        "(a) decompression bound, liblzma on {THREADS} threads: {}",
        secs(bound)
    );
    match cli {
        Some(cli) => println!(
            "(b) xz -d (xz-utils CLI), {THREADS} processes: {} ({:.2}x the bound)",
            secs(cli),
            ratio(cli, bound)
        ),
        None => println!("(b) xz -d: no xz binary found"),
    }
    println!(
        "(c) apply, {THREADS} threads: {} = {mib_s:.0} MiB/s of partition data",
        secs(apply)
    );
    println!(
        "    peak RSS of the apply: {:.1} MiB (VmHWM of the child, largest of all rounds)",
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

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
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
