//! Virtual A/B benchmark: the apply benchmark's images as one full payload with compressed
//! snapshots asked for (`dynamic_partition_metadata`: snapshot_enabled, VABC lz4, COW v3,
//! 64 KiB compression factor), applied in the same run to two devices with a `super` image:
//! - Virtual A/B (super's flag and `ro.virtual_ab.enabled`): the snapshot path, every
//!   partition written as a COW into its `<name>_b-cow` partition carved from super's free
//!   space, the engine's hash checks read back through the snapshots;
//! - not Virtual A/B: the dynamic-partitions path, the `_b` partitions grown in super and
//!   written in place.
//!
//! `cargo bench --bench apply_vab` (`ABUPDATE_BENCH_MIB`, default 1024; `ABUPDATE_BENCH_RUNS`
//! rounds, default 3, the fastest of each side counts). Each apply runs in a child process
//! (`apply/measure.rs`) on a device reset to its state before the update (super's metadata,
//! misc, no libsnapshot state, super out of the page cache). The target: the Virtual A/B
//! apply costs at most 1.5x the dynamic-partitions one.

#[allow(dead_code)]
#[path = "apply/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "apply/measure.rs"]
mod measure;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};

use abupdate::boot_control::MiscBootControl;
use abupdate::build::super_image;
use abupdate::payload::Vabc;
use abupdate::slot::Slot;

use fixture::{Fixture, PARTITIONS};
use measure::ApplyRun;

const THREADS: usize = 2;
const MIB: u64 = 1 << 20;
const GROUP: &str = "main";
/// The saved head of a device's `super.img` (geometry and metadata), restored before a run.
const HEAD: &str = "super.head";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(measure::CHILD_ARG) {
        return measure::child_main(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1) as usize;
    let sizes: Vec<(&str, u64)> = fixture::sizes(mib);
    let total: u64 = sizes.iter().map(|(_, s)| s).sum();
    let names: Vec<&str> = PARTITIONS.iter().map(|(n, _)| *n).collect();
    let mut dynamic = super_image::dynamic_metadata(GROUP, total, &names);
    dynamic.snapshot_enabled = true;
    dynamic.vabc = Vabc::cuttlefish_android15();
    let fx = Fixture::prepare_with(mib, fixture::SEED, Some(("vabc", dynamic)))?;
    let dap = super_device(&fx, &sizes, false)?;
    let vab = super_device(&fx, &sizes, true)?;
    println!(
        "payload: {} ({} MiB of partitions, {} MiB); load average before: {}",
        fx.payload.display(),
        total >> 20,
        fs::metadata(&fx.payload)?.len() >> 20,
        load_average()
    );
    let mut best: (Option<ApplyRun>, Option<ApplyRun>) = (None, None);
    let keep = |best: &mut Option<ApplyRun>, run: ApplyRun| {
        if best.as_ref().map_or(true, |b| run.total < b.total) {
            *best = Some(run);
        }
    };
    for round in 1..=runs {
        let d = apply(&dap)?;
        let v = apply(&vab)?;
        check_snapshot_state(&vab.device)?;
        println!(
            "  round {round}: dynamic partitions {:.3} s | Virtual A/B {:.3} s | vab/dap {:.3}",
            d.total.as_secs_f64(),
            v.total.as_secs_f64(),
            v.total.as_secs_f64() / d.total.as_secs_f64()
        );
        keep(&mut best.0, d);
        keep(&mut best.1, v);
    }
    let (Some(d), Some(v)) = best else {
        anyhow::bail!("no rounds");
    };
    println!("load average after: {}", load_average());
    println!("fastest of {runs} rounds ({THREADS} engine threads):");
    for (name, r) in [("dynamic partitions", &d), ("Virtual A/B", &v)] {
        println!(
            "  {name}: {:.3} s (writing {:.3} s), CPU {:.3} s, peak RSS {:.1} MiB",
            r.total.as_secs_f64(),
            r.writing.as_secs_f64(),
            r.cpu.as_secs_f64(),
            r.vm_hwm_kib as f64 / 1024.0
        );
    }
    println!(
        "  Virtual A/B / dynamic partitions = {:.3} wall, {:.3} CPU (target <= 1.5)",
        v.total.as_secs_f64() / d.total.as_secs_f64(),
        v.cpu.as_secs_f64() / d.cpu.as_secs_f64()
    );
    Ok(())
}

/// A device directory running slot a with every partition in `super.img` as `<name>_a`
/// (`_b` empty, as `lpmake` lays out a retrofit-free A/B super): `super` holds slot a, the
/// target partitions, and for Virtual A/B the COWs (each at most its partition's size plus
/// the op area), its data area allocated (zero-filled) as on a device.
fn super_device(fx: &Fixture, sizes: &[(&str, u64)], virtual_ab: bool) -> Result<Fixture> {
    let name = if virtual_ab {
        "device-vab"
    } else {
        "device-dap"
    };
    let device = fx.dir.join(name);
    if !device.join("complete").exists() {
        let _ = fs::remove_dir_all(&device);
        fs::create_dir_all(&device)?;
        let total: u64 = sizes.iter().map(|(_, s)| s).sum();
        let size = (2 * total + total / 8 + 64 * MIB).next_multiple_of(MIB);
        let layout = super_image::ab_layout(size, GROUP, total, sizes, virtual_ab);
        let path = device.join("super.img");
        super_image::write(&path, &layout, &[])?;
        let (geometry, _) = layout.build()?;
        let start = geometry.total_metadata_size()?.next_multiple_of(MIB);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let zeros = vec![0u8; MIB as usize];
        let mut at = start;
        while at < layout.device_size {
            file.write_all_at(&zeros, at)?;
            at += MIB;
        }
        file.sync_all()?;
        let mut head = vec![0u8; start as usize];
        file.read_exact_at(&mut head, 0)?;
        fs::write(device.join(HEAD), head)?;
        fs::write(
            device.join("build.prop"),
            format!("ro.build.date.utc=0\nro.virtual_ab.enabled={virtual_ab}\n"),
        )?;
        fs::write(device.join("complete"), b"")?;
    }
    Ok(Fixture {
        dir: fx.dir.clone(),
        payload: fx.payload.clone(),
        properties: fx.properties.clone(),
        cert: fx.cert.clone(),
        device,
        partition_bytes: fx.partition_bytes,
    })
}

/// One apply on `device` as it was before any update.
fn apply(device: &Fixture) -> Result<ApplyRun> {
    let dir = &device.device;
    let head = fs::read(dir.join(HEAD))?;
    OpenOptions::new()
        .write(true)
        .open(dir.join("super.img"))?
        .write_all_at(&head, 0)?;
    for state in ["metadata", "state"] {
        let _ = fs::remove_dir_all(dir.join(state));
    }
    let misc = dir.join("misc.img");
    let _ = fs::remove_file(&misc);
    MiscBootControl::create_image(&misc, Slot::A)?;
    measure::apply_in_child(device, THREADS)
}

/// The Virtual A/B apply took the snapshot path: libsnapshot's state says the update waits
/// for its reboot.
fn check_snapshot_state(device: &Path) -> Result<()> {
    let state: PathBuf = device.join("metadata/ota/state");
    ensure!(
        state.exists(),
        "no {}: the snapshot path was not taken",
        state.display()
    );
    ensure!(
        device.join("metadata/ota/snapshot-boot").exists(),
        "no snapshot-boot after the Virtual A/B apply"
    );
    Ok(())
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(default),
    }
}
