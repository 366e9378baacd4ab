//! Dynamic partitions benchmark: the apply benchmark's payload applied into logical partitions
//! of a `super` image (every write mapped through the partition's extents in super.img) and
//! into plain partition files, in the same run.
//!
//! `cargo bench --bench apply_super` uses the same cached payload fixture as `--bench apply`
//! (`ABUPDATE_BENCH_MIB`, default 1024). Each apply runs in a child process on a reset
//! device (target out of the page cache); the two take turns for `ABUPDATE_BENCH_RUNS` rounds
//! (default 3) and the fastest of each counts. The target: super costs at most 1.05x.

#[path = "apply/fixture.rs"]
mod fixture;
#[allow(dead_code)]
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
    let plain = Fixture::prepare(mib, fixture::SEED)?;
    let logical = plain.with_super_device()?;
    println!(
        "payload: {} MiB of partitions; plain files in {}, logical partitions in {}",
        plain.partition_bytes >> 20,
        plain.device.display(),
        logical.device.join("super.img").display()
    );
    let mut best = (Duration::MAX, Duration::MAX);
    for round in 1..=runs {
        let p = measure::apply_in_child(&plain, THREADS)?.total;
        let s = measure::apply_in_child(&logical, THREADS)?.total;
        println!(
            "  round {round}: plain files {:.3} s | super {:.3} s | super/plain {:.3}",
            p.as_secs_f64(),
            s.as_secs_f64(),
            s.as_secs_f64() / p.as_secs_f64()
        );
        best = (best.0.min(p), best.1.min(s));
    }
    let ratio = best.1.as_secs_f64() / best.0.as_secs_f64();
    println!(
        "fastest of {runs} rounds: plain files {:.3} s, super {:.3} s: super/plain = {ratio:.3} \
         (target <= 1.05)",
        best.0.as_secs_f64(),
        best.1.as_secs_f64()
    );
    Ok(())
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(default),
    }
}
