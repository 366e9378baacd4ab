//! Streaming benchmark: the same payload applied by the release `abupdate apply` from a file,
//! over HTTP and over HTTPS from a real nginx on 127.0.0.1, in one run.
//!
//! `cargo bench --bench apply_http` uses the same payload fixture as `cargo bench --bench apply`
//! (built once and cached; `ABUPDATE_BENCH_MIB` for another size). Every apply runs in a child process on a reset device
//! (slot B out of the page cache), measured from outside: wall time, CPU time and peak RSS.
//! The paths take turns, `ABUPDATE_BENCH_RUNS` rounds (default 3), and each path's fastest run
//! counts: the machine may be shared, and interference only ever adds time. The target:
//! HTTP costs at most 10% more wall time than the file, with the same peak RSS.

#[path = "apply/fixture.rs"]
mod fixture;
#[path = "apply_http/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "../tests/common/nginx.rs"]
mod nginx;
#[allow(dead_code)]
#[path = "../tests/common/pki.rs"]
mod pki;

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use abupdate::boot_control::MiscBootControl;
use abupdate::slot::BootControl;
use abupdate::slot::Slot;
use fixture::Fixture;
use measure::Measured;

const THREADS: usize = 2;

fn main() -> Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == measure::MEASURE_ARG) {
        return measure::measure_main(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 1024)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1);
    let fixture = Fixture::prepare(mib, fixture::SEED)?;
    let payload_len = std::fs::metadata(&fixture.payload)?.len();
    println!(
        "payload: {} MiB of partitions ({}), payload file {} MiB",
        fixture.partition_bytes >> 20,
        fixture::PARTITIONS.map(|(name, _)| name).join(", "),
        payload_len >> 20
    );

    let pki = pki::Pki::generate();
    let server = nginx::Nginx::start(Some(&pki));
    serve(&fixture.payload, &server.www().join("payload.bin"))?;
    // Both paths read the payload from the page cache: warm it once.
    std::io::copy(&mut File::open(&fixture.payload)?, &mut std::io::sink())?;

    let abupdate = PathBuf::from(env!("CARGO_BIN_EXE_abupdate"));
    let paths = [
        ("file", fixture.payload.to_string_lossy().into_owned()),
        ("http", server.url("payload.bin")),
        ("https", server.tls_url("127.0.0.1", "payload.bin")),
    ];
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); paths.len()];
    for round in 1..=runs {
        for (i, (name, location)) in paths.iter().enumerate() {
            fixture.reset_device()?;
            let args = apply_args(&fixture, location, &pki.ca_cert);
            let m = measure::measure(&abupdate, &args)?;
            let active =
                MiscBootControl::open_device_dir(&fixture.device, Some(Slot::A))?.active_slot()?;
            ensure!(
                active == Slot::B,
                "{name}: the apply did not switch to slot B"
            );
            println!(
                "    round {round} {name:>5}: {} wall, {} CPU, peak RSS {:.1} MiB",
                secs(m.wall),
                secs(m.cpu),
                m.max_rss_kib as f64 / 1024.0
            );
            results[i].push(m);
        }
    }

    let best =
        |i: usize| -> Duration { results[i].iter().map(|m| m.wall).min().unwrap_or_default() };
    let cpu = |i: usize| -> Duration { results[i].iter().map(|m| m.cpu).min().unwrap_or_default() };
    let peak = |i: usize| -> f64 {
        results[i].iter().map(|m| m.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    };
    let mib_s = |d: Duration| (fixture.partition_bytes >> 20) as f64 / d.as_secs_f64();
    for (i, (name, _)) in paths.iter().enumerate() {
        println!(
            "{name:>5}: best {} ({:.0} MiB/s of partitions), best CPU {}, peak RSS {:.1} MiB",
            secs(best(i)),
            mib_s(best(i)),
            secs(cpu(i)),
            peak(i)
        );
    }
    let (file, http, https) = (best(0), best(1), best(2));
    let ratio = http.as_secs_f64() / file.as_secs_f64();
    println!(
        "http / file wall = {ratio:.3} (target <= 1.10: {}), https / file = {:.3}",
        if ratio <= 1.10 { "met" } else { "NOT met" },
        https.as_secs_f64() / file.as_secs_f64()
    );
    println!(
        "peak RSS: file {:.1} MiB, http {:.1} MiB ({:+.1}), https {:.1} MiB ({:+.1})",
        peak(0),
        peak(1),
        peak(1) - peak(0),
        peak(2),
        peak(2) - peak(0)
    );
    Ok(())
}

/// `abupdate apply` of `location` onto the fixture's device, with its key and properties.
fn apply_args(fixture: &Fixture, location: &str, ca: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["apply".into(), "--device".into()];
    args.push(fixture.device.clone().into());
    args.extend(["--current-slot".into(), "a".into(), "--key".into()]);
    args.push(fixture.cert.clone().into());
    args.push("--properties".into());
    args.push(fixture.properties.clone().into());
    args.extend([
        "--threads".into(),
        THREADS.to_string().into(),
        "--ca".into(),
    ]);
    args.push(ca.into());
    args.push(location.into());
    args
}

/// Puts the payload where nginx serves it, as a symbolic link (nginx follows them by default):
/// no copy, and a payload cached by another benchmark is left as it is.
fn serve(payload: &Path, served: &Path) -> Result<()> {
    let payload = std::fs::canonicalize(payload)?;
    std::os::unix::fs::symlink(&payload, served)
        .with_context(|| format!("linking {} for nginx", payload.display()))
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn env_u64(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}
