//! Encrypted payloads: the same payload applied by the release `abupdate check --apply` over
//! HTTPS from a real nginx on 127.0.0.1, published once plainly and once encrypted
//! (`abupdate publish --encrypt-for`, 64 KiB chunks), in one run. The target: decrypting while
//! streaming costs at most 10% more wall time than the plain HTTPS apply.
//!
//! `cargo bench --bench apply_feed` (`ABUPDATE_BENCH_MIB`, default 256; `ABUPDATE_BENCH_RUNS`,
//! default 3). Each apply runs in a child process on a reset device, measured from outside;
//! the paths take turns and each one's fastest run counts.

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
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use abupdate::boot_control::MiscBootControl;
use abupdate::feed::device_key::{public_key_to_pem, DeviceKey, FileDeviceKey};
use abupdate::payload::signature::Signer;
use abupdate::slot::BootControl;
use abupdate::slot::Slot;
use fixture::Fixture;
use measure::Measured;

const MODEL: &str = "benchphone";

fn main() -> Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == measure::MEASURE_ARG) {
        return measure::measure_main(&args[2..]);
    }
    let mib = env_u64("ABUPDATE_BENCH_MIB", 256)?;
    let runs = env_u64("ABUPDATE_BENCH_RUNS", 3)?.max(1);
    let fixture = Fixture::prepare(mib, fixture::SEED)?;
    println!(
        "payload: {} MiB of partitions, payload file {} MiB",
        fixture.partition_bytes >> 20,
        std::fs::metadata(&fixture.payload)?.len() >> 20
    );
    let work = tempfile::tempdir()?;
    let path = |name: &str| work.path().join(name);

    let feed_signer = Signer::generate(2048)?;
    std::fs::write(path("feed-key.pem"), feed_signer.private_key_pem()?)?;
    std::fs::write(path("feed-cert.pem"), feed_signer.public_key_pem()?)?;
    std::fs::write(path("device.pem"), FileDeviceKey::generate_pem()?)?;
    let device_key = FileDeviceKey::load(&path("device.pem"))?;
    std::fs::write(
        path("device.pub.pem"),
        public_key_to_pem(&device_key.public_key()),
    )?;

    let pki = pki::Pki::generate();
    let server = nginx::Nginx::start(Some(&pki));
    let abupdate = PathBuf::from(env!("CARGO_BIN_EXE_abupdate"));
    for (channel, extra) in [
        ("plain", vec![]),
        (
            "enc",
            vec!["--encrypt-for".into(), path("device.pub.pem").into()],
        ),
    ] {
        let mut args: Vec<OsString> = vec!["publish".into(), "--feed-dir".into()];
        args.push(server.www().into());
        args.extend([
            "--model".into(),
            MODEL.into(),
            "--channel".into(),
            channel.into(),
        ]);
        args.extend(["--payload".into(), fixture.payload.clone().into()]);
        args.extend([
            "--fingerprint".into(),
            "bench/v2".into(),
            "--timestamp".into(),
        ]);
        args.extend([
            "2000000000".into(),
            "--key".into(),
            path("feed-key.pem").into(),
        ]);
        args.extend(extra);
        let out = Command::new(&abupdate).args(&args).output()?;
        ensure!(
            out.status.success(),
            "publish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let channels = ["plain", "enc"];
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); channels.len()];
    for round in 1..=runs {
        for (i, channel) in channels.iter().enumerate() {
            fixture.reset_device()?;
            let url = server.tls_url("127.0.0.1", &format!("{MODEL}/{channel}/feed.json"));
            let mut args: Vec<OsString> = vec!["check".into(), "--apply".into(), "--device".into()];
            args.push(fixture.device.clone().into());
            args.extend([
                "--current-slot".into(),
                "a".into(),
                "--feed-url".into(),
                url.into(),
            ]);
            args.extend([
                "--device-id".into(),
                "bench".into(),
                "--model".into(),
                MODEL.into(),
            ]);
            args.extend(["--channel".into(), (*channel).into()]);
            for key in [fixture.cert.clone(), path("feed-cert.pem")] {
                args.extend(["--key".into(), key.into()]);
            }
            args.extend(["--device-key".into(), path("device.pem").into()]);
            args.extend(["--threads".into(), "2".into(), "--ca".into()]);
            args.push(pki.ca_cert.clone().into());
            let m = measure::measure(&abupdate, &args)?;
            let active =
                MiscBootControl::open_device_dir(&fixture.device, Some(Slot::A))?.active_slot()?;
            ensure!(
                active == Slot::B,
                "{channel}: the apply did not switch to slot B"
            );
            println!(
                "    round {round} {channel:>5}: {} wall, {} CPU, peak RSS {:.1} MiB",
                secs(m.wall),
                secs(m.cpu),
                m.max_rss_kib as f64 / 1024.0
            );
            results[i].push(m);
        }
    }
    let best =
        |i: usize| -> Duration { results[i].iter().map(|m| m.wall).min().unwrap_or_default() };
    let peak = |i: usize| -> f64 {
        results[i].iter().map(|m| m.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
    };
    let ratio = best(1).as_secs_f64() / best(0).as_secs_f64();
    println!(
        "https plain: best {}, peak RSS {:.1} MiB; https encrypted: best {}, peak RSS {:.1} MiB",
        secs(best(0)),
        peak(0),
        secs(best(1)),
        peak(1)
    );
    println!(
        "encrypted / plain wall = {ratio:.3} (target <= 1.10: {})",
        if ratio <= 1.10 { "met" } else { "NOT met" }
    );
    Ok(())
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
