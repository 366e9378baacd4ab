//! PUFFDIFF benchmark, two parts in one run:
//!
//! 1. Size: an image of APK-like zips (deflated entries, a few changed per zip) diffed by our
//!    builder with PUFFDIFF and with BROTLI_BSDIFF alone; prints both totals and the ratio.
//! 2. Speed: PUFFDIFF patches made by AOSP's `puffin --operation=puffdiff` for a big zip and a
//!    gzip file, applied by us (read source, apply, write destination) and by AOSP's
//!    `puffin --operation=puffpatch` on the same files; fastest of `ABUPDATE_BENCH_RUNS`
//!    (default 5) each, with the ratio and both peak RSS. Target: ours/AOSP <= 1.0.
//!
//! `cargo bench --bench puffin` (needs `../shared/tools/aosp-delta/bin/puffin`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use abupdate::build::ops::{delta_with, Compressors};
use abupdate::payload::OpKind;
use abupdate::puffin::{self, Limits};
use anyhow::{ensure, Context, Result};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Text-like content (XML, properties): words from a vocabulary.
fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    while out.len() < n {
        let w = rng.next();
        out.extend_from_slice(
            format!(
                "<e k{}=\"v{}\">t{}</e>\n",
                w % 300,
                (w >> 20) % 1000,
                (w >> 40) % 50
            )
            .as_bytes(),
        );
    }
    out.truncate(n);
    out
}

/// Binary-like content (dex, resources): structured records with random fields.
fn binary(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        let w = rng.next();
        out.extend_from_slice(&[0x12, 0x34, (w % 7) as u8, 0]);
        out.extend_from_slice(&(w as u32 % 65536).to_le_bytes());
        out.extend_from_slice(&w.to_le_bytes()[..(w >> 61) as usize]);
    }
    out.truncate(n);
    out
}

/// An APK-like zip: `entries` deflated entries of `size` bytes each, as (name, content).
fn apk_entries(rng: &mut Rng, entries: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..entries)
        .map(|i| {
            let data = if i % 2 == 0 {
                text(rng, size)
            } else {
                binary(rng, size)
            };
            (format!("res/e{i}.bin"), data)
        })
        .collect()
}

/// Changes a few entries: a replaced run and an insertion, as a version bump does.
fn evolve(rng: &mut Rng, entries: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut out = entries.to_vec();
    for (i, (_, data)) in out.iter_mut().enumerate() {
        if i % 3 != 0 || data.len() < 100 {
            continue;
        }
        let at = (rng.next() as usize) % (data.len() - 64);
        data[at..at + 16].copy_from_slice(b"versionCode=4321");
        let at = (rng.next() as usize) % data.len();
        data.splice(at..at, b"inserted".iter().copied());
    }
    out
}

fn zip(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = ::zip::write::SimpleFileOptions::default()
        .compression_method(::zip::CompressionMethod::Deflated)
        .last_modified_time(::zip::DateTime::default());
    for (name, data) in entries {
        w.start_file(name.as_str(), opts)?;
        w.write_all(data)?;
    }
    Ok(w.finish()?.into_inner())
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    e.write_all(data)?;
    Ok(e.finish()?)
}

fn size_win() -> Result<()> {
    let mut rng = Rng(0x5eed_0001);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..24 {
        let entries = apk_entries(&mut rng, 8, 40_000);
        let changed = evolve(&mut rng, &entries);
        for (image, zipped) in [(&mut old, zip(&entries)?), (&mut new, zip(&changed)?)] {
            image.extend_from_slice(&zipped);
            image.resize(image.len().next_multiple_of(4096), 0);
        }
        let len = old.len().max(new.len());
        old.resize(len, 0);
        new.resize(len, 0);
    }
    let compressors = Compressors {
        xz: true,
        bzip2: true,
    };
    let total = |puff: bool| -> Result<(usize, usize)> {
        let ops = delta_with(&old, &new, &[], compressors, puff)?;
        let n = ops.iter().filter(|o| o.kind == OpKind::Puffdiff).count();
        Ok((ops.iter().map(|o| o.blob.len()).sum(), n))
    };
    let t = Instant::now();
    let (with, n) = total(true)?;
    let t_with = t.elapsed();
    let t = Instant::now();
    let (without, _) = total(false)?;
    let t_without = t.elapsed();
    println!(
        "size: image of 24 APK-like zips, {} MiB; delta with PUFFDIFF {with} bytes ({n} PUFFDIFF ops, \
         {:.1} s), BROTLI_BSDIFF alone {without} bytes ({:.1} s): PUFFDIFF/BSDIFF = {:.3}",
        new.len() >> 20,
        t_with.as_secs_f64(),
        t_without.as_secs_f64(),
        with as f64 / without as f64
    );
    Ok(())
}

fn puffin_tool() -> PathBuf {
    let shared = std::env::var_os("ABUPDATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("tools/aosp-delta/bin/puffin")
}

fn run_puffin(args: &[String]) -> Result<()> {
    let out = Command::new(puffin_tool())
        .args(args)
        .output()
        .context("puffin")?;
    ensure!(
        out.status.success(),
        "puffin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn max_rss_kib(who: nix::sys::resource::UsageWho) -> i64 {
    nix::sys::resource::getrusage(who).map_or(0, |u| u.max_rss())
}

fn speed() -> Result<()> {
    let runs = std::env::var("ABUPDATE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    let dir = tempfile::tempdir()?;
    let mut rng = Rng(0x5eed_0002);
    let entries = apk_entries(&mut rng, 100, 60_000);
    let changed = evolve(&mut rng, &entries);
    let log = text(&mut rng, 4 << 20);
    let mut log2 = log.clone();
    log2[2 << 20..(2 << 20) + 12].copy_from_slice(b"edited here!");
    let pairs = [
        ("apk.zip", zip(&entries)?, zip(&changed)?),
        ("log.gz", gzip(&log)?, gzip(&log2)?),
    ];
    let (mut ours_all, mut theirs_all) = (Duration::ZERO, Duration::ZERO);
    for (name, old, new) in &pairs {
        let (src, dst, patch, out) = (
            dir.path().join(format!("old.{name}")),
            dir.path().join(format!("new.{name}")),
            dir.path().join(format!("{name}.puffdiff")),
            dir.path().join(format!("out.{name}")),
        );
        std::fs::write(&src, old)?;
        std::fs::write(&dst, new)?;
        let arg = |k: &str, p: &Path| format!("--{k}={}", p.display());
        run_puffin(&[
            "--operation=puffdiff".into(),
            arg("src_file", &src),
            arg("dst_file", &dst),
            arg("patch_file", &patch),
        ])?;
        let blob = std::fs::read(&patch)?;
        let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
        for _ in 0..runs {
            let _ = std::fs::remove_file(&out);
            let t = Instant::now();
            let source = std::fs::read(&src)?;
            let result = puffin::apply(&source, &blob, new.len(), Limits::DEFAULT)?;
            std::fs::write(&out, &result)?;
            ours = ours.min(t.elapsed());
            ensure!(result == *new, "{name}: our apply differs");

            let _ = std::fs::remove_file(&out);
            let t = Instant::now();
            run_puffin(&[
                "--operation=puffpatch".into(),
                arg("src_file", &src),
                arg("dst_file", &out),
                arg("patch_file", &patch),
            ])?;
            theirs = theirs.min(t.elapsed());
            ensure!(
                std::fs::read(&out)? == *new,
                "{name}: AOSP puffpatch differs"
            );
        }
        println!(
            "speed: {name}: {} KiB -> {} KiB, patch {} bytes: ours {:.1} ms, AOSP puffpatch {:.1} ms: \
             ours/AOSP = {:.3}",
            old.len() >> 10,
            new.len() >> 10,
            blob.len(),
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
        ours_all += ours;
        theirs_all += theirs;
    }
    println!(
        "speed: all patches, fastest of {runs}: ours {:.1} ms, AOSP {:.1} ms: ours/AOSP = {:.3} \
         (target <= 1.0); peak RSS: this process {} MiB, AOSP puffin {} MiB",
        ours_all.as_secs_f64() * 1e3,
        theirs_all.as_secs_f64() * 1e3,
        ours_all.as_secs_f64() / theirs_all.as_secs_f64(),
        max_rss_kib(nix::sys::resource::UsageWho::RUSAGE_SELF) >> 10,
        max_rss_kib(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) >> 10,
    );
    Ok(())
}

fn main() -> Result<()> {
    speed()?;
    size_win()
}
