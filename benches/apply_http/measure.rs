//! Timing one command and its peak memory, exactly.
//!
//! `getrusage(RUSAGE_CHILDREN)` reports the largest peak RSS among a process's reaped children,
//! and a child starts with its parent's high-water mark (the kernel carries it across exec).
//! So the benchmark does not spawn `abupdate` itself: it runs a fresh copy of its own binary
//! (small, a few MiB) that spawns the one command, waits, and reports that command's wall time,
//! CPU time and peak RSS.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::resource::{getrusage, UsageWho};

/// The first argument that makes the benchmark binary a measuring parent.
pub const MEASURE_ARG: &str = "__abupdate_bench_measure";

/// What one command cost.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    /// User plus system CPU time.
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Runs `program args` under a measuring copy of this binary.
pub fn measure(program: &Path, args: &[OsString]) -> Result<Measured> {
    let output = Command::new(std::env::current_exe()?)
        .arg(MEASURE_ARG)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} failed ({}): {stdout}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let field = |key: &str| -> Result<f64> {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key} in {stdout:?}"))?
            .parse()
            .with_context(|| format!("{key} in {stdout:?}"))
    };
    Ok(Measured {
        wall: Duration::from_secs_f64(field("wall_secs")?),
        cpu: Duration::from_secs_f64(field("cpu_secs")?),
        max_rss_kib: field("max_rss_kib")? as u64,
    })
}

/// The measuring parent: runs the command, then prints its numbers on stdout.
pub fn measure_main(args: &[OsString]) -> Result<()> {
    let (program, rest) = args.split_first().context("no command to measure")?;
    let started = Instant::now();
    let output = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!(
            "{} exited with {}: {}{}",
            program.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let secs =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    println!(
        "wall_secs={} cpu_secs={} max_rss_kib={}",
        wall.as_secs_f64(),
        (secs(usage.user_time()) + secs(usage.system_time())).as_secs_f64(),
        // Linux reports ru_maxrss in KiB.
        usage.max_rss()
    );
    Ok(())
}
