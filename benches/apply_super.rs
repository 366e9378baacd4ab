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

use std::fs::{self, OpenOptions};

use fixture::{Fixture, PARTITIONS};

const THREADS: usize = 2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(measure::CHILD_ARG) {
        return measure::child_main(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1) as usize;
    let plain = Fixture::prepare(mib, fixture::SEED)?;
    let logical = with_super_device(&plain)?;
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

/// The same payload's device with dynamic partitions: `device-super/super.img` holding
/// every partition as a logical `<name>_a` and `<name>_b` (both slots' metadata list
/// both, as after an earlier update, so the full payload without groups writes `_b`
/// where it is), its blocks allocated as the plain device's target files are.
fn with_super_device(plain: &Fixture) -> Result<Fixture> {
    const MIB: u64 = 1 << 20;
    let device = plain.dir.join("device-super");
    let sizes: Vec<(&str, u64)> = PARTITIONS
        .iter()
        .map(|(name, _)| {
            Ok((
                *name,
                fs::metadata(plain.device.join(format!("{name}_b.img")))?.len(),
            ))
        })
        .collect::<Result<_>>()?;
    let total: u64 = sizes.iter().map(|(_, s)| s).sum();
    if !device.join("complete").exists() {
        let _ = fs::remove_dir_all(&device);
        fs::create_dir_all(&device)?;
        let mut layout = abupdate::lp::NewSuper::new(2 * total + 4 * MIB, 65536, 3)
            .group("main_a", total)
            .group("main_b", total);
        for suffix in ["_a", "_b"] {
            for (name, size) in &sizes {
                let group = format!("main{suffix}");
                layout = layout.partition(&format!("{name}{suffix}"), 1, *size, Some(&group));
            }
        }
        let path = device.join("super.img");
        abupdate::build::super_image::write(&path, &layout, &[])?;
        let (geometry, _) = layout.build()?;
        let start = geometry.total_metadata_size()?.next_multiple_of(MIB);
        let file = OpenOptions::new().write(true).open(&path)?;
        let zeros = vec![0u8; MIB as usize];
        let mut at = start;
        while at < layout.device_size {
            std::os::unix::fs::FileExt::write_all_at(&file, &zeros, at)?;
            at += MIB;
        }
        file.sync_all()?;
        fs::write(device.join("complete"), b"")?;
    }
    Ok(Fixture {
        dir: plain.dir.clone(),
        payload: plain.payload.clone(),
        properties: plain.properties.clone(),
        cert: plain.cert.clone(),
        device,
        partition_bytes: plain.partition_bytes,
    })
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(default),
    }
}
