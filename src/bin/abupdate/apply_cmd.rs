//! `abupdate apply`: applies a payload into the inactive slot, through the service, or with
//! `--device DIR` directly into a host device directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
#[cfg(feature = "host-tools")]
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use abupdate::download::SourceOptions;
#[cfg(feature = "host-tools")]
use abupdate::engine::Stage;
use abupdate::engine::{ApplyOptions, Observer, Progress};
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::properties::PayloadProperties;
use abupdate::service::updater_backend::http_headers;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Outcome, Updater};

#[derive(Args, Clone)]
pub struct ApplyArgs {
    /// The payload: a file, or an http://, https:// or file:// URL (with --device also
    /// fd://N). Through the service a file is passed as an open descriptor, so the
    /// service reads it with the caller's permissions.
    pub payload: String,
    /// Header pair KEY=VALUE, as in payload_properties.txt (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// payload_properties.txt, whose lines are taken as header pairs.
    #[arg(long, value_name = "FILE")]
    pub properties: Option<PathBuf>,
    /// Offset of the payload in the file or URL (a payload.bin stored inside an OTA zip).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Size of the payload at that offset (default: to the end).
    #[arg(long)]
    pub size: Option<u64>,

    /// Apply here, without the service: a host device directory holding
    /// <name>_a.img / <name>_b.img and misc.img.
    #[arg(long, value_name = "DIR")]
    pub device: Option<PathBuf>,
    /// With --device: the running slot (a or b); the update goes into the other one.
    /// Default: what DEVICE/misc.img records.
    #[arg(long, requires = "device")]
    pub current_slot: Option<String>,
    /// With --device: trusted payload key, PEM public key, X.509 certificate or
    /// otacerts.zip (repeatable). The service has its own.
    #[arg(long = "key", requires = "device", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// With --device: apply without checking payload signatures. Without it and without
    /// --key, nothing is applied (29).
    #[arg(long, requires = "device", conflicts_with = "keys")]
    pub allow_unsigned: bool,
    /// With --device: AVB public key (avbpubkey or PEM) new slots must be signed with;
    /// default DEVICE/avb_key.pem, else the running slot's vbmeta key.
    #[arg(long, requires = "device", value_name = "FILE")]
    pub avb_key: Option<PathBuf>,
    /// With --device: where checkpoints are kept (default: DEVICE/state).
    #[arg(long, requires = "device", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// With --device: threads decoding operations.
    #[arg(long, requires = "device")]
    pub threads: Option<usize>,
    /// With --device: trust this CA (PEM) for https:// besides the system store.
    #[arg(long, requires = "device", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Through the service: wait for the update to finish (progress bar on a terminal);
    /// the exit code is then the update's result.
    #[arg(long, conflicts_with = "device")]
    pub wait: bool,
    #[command(flatten)]
    pub service: crate::service_cmd::ServiceArgs,
    /// With --device: minimum time between checkpoints while writing, in milliseconds (default 1000). Hidden:
    /// only the kill-and-resume tests need checkpoints this often.
    #[arg(long, hide = true, requires = "device")]
    pub checkpoint_interval_ms: Option<u64>,
}

pub fn run(args: ApplyArgs) -> Result<()> {
    let Some(device) = &args.device else {
        return crate::service_cmd::apply(&args);
    };
    let outcome = apply(device, &args, std::io::stderr().is_terminal()).inspect_err(|_| {
        if let Some(note) = crate::slots_cmd::device_note(device, args.current_slot.as_deref()) {
            eprintln!("abupdate: {note}");
        }
    })?;
    println!("applied {}: {outcome}", args.payload);
    Ok(())
}

/// Runs one apply on the host device directory `device`; shared with the demo.
pub fn apply(device: &Path, args: &ApplyArgs, progress_bar: bool) -> Result<Outcome> {
    let current = args
        .current_slot
        .as_deref()
        .map(str::parse::<Slot>)
        .transpose()?;
    let host = HostOptions {
        current,
        state_dir: args.state_dir.clone(),
        avb_key: args.avb_key.clone(),
    };
    let updater = Updater::open_host(device, &host)?;
    let keys = match args.allow_unsigned {
        true => TrustedKeys::accept_unsigned(),
        false => abupdate::key_file::load_all(&args.keys)?,
    };
    let mut options = ApplyOptions {
        keys,
        ..ApplyOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    if let Some(ms) = args.checkpoint_interval_ms {
        options.checkpoint_interval = std::time::Duration::from_millis(ms);
    }
    options.properties = properties(args.properties.as_deref(), &args.headers)?;
    let mut source = source(args, &options.properties)?;
    let observer = BarObserver::new(progress_bar);
    let result = updater.apply(&mut source, &options, &observer);
    observer.finish();
    Ok(result?)
}

fn source(args: &ApplyArgs, props: &PayloadProperties) -> Result<Source> {
    let options = SourceOptions {
        pinned_ca: args.ca.clone(),
        headers: http_headers(props),
        network: props.network_id,
        ..SourceOptions::default()
    };
    // A local file's size is known up front; a URL's comes from FILE_SIZE or the server.
    let file_size = match args.payload.contains("://") {
        false => Some(
            std::fs::metadata(&args.payload)
                .map_err(|e| abupdate::err!(DownloadFailed, "{}: {e}", args.payload))?
                .len()
                .saturating_sub(args.offset),
        ),
        true => None,
    };
    let size = args.size.or(file_size).or(props.file_size);
    Ok(Source::new(&args.payload, args.offset, size, options))
}

fn properties(file: Option<&Path>, headers: &[String]) -> Result<PayloadProperties> {
    let mut props = PayloadProperties::new();
    for pair in header_pairs(file, headers)? {
        props.set_pair(&pair)?;
    }
    Ok(props)
}

/// The header pairs of `--properties FILE` (its non-empty lines) followed by `--header`s.
pub fn header_pairs(file: Option<&Path>, headers: &[String]) -> Result<Vec<String>> {
    let mut pairs = Vec::new();
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        pairs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    pairs.extend(headers.iter().cloned());
    Ok(pairs)
}

/// Shows progress with indicatif on a terminal; silent otherwise. Stops on SIGINT-free runs only
/// when the engine says so: cancellation is the service's business.
pub(crate) struct BarObserver {
    /// indicatif is a host crate (AOSP has none): device builds show no bar.
    #[cfg(feature = "host-tools")]
    bar: Option<indicatif::ProgressBar>,
    #[cfg(feature = "host-tools")]
    stage: Mutex<Option<Stage>>,
    start: Instant,
}

impl BarObserver {
    pub(crate) fn new(enabled: bool) -> Self {
        #[cfg(not(feature = "host-tools"))]
        let _ = enabled;
        #[cfg(feature = "host-tools")]
        let bar = enabled.then(|| crate::progress_bar::new(10));
        BarObserver {
            #[cfg(feature = "host-tools")]
            bar,
            #[cfg(feature = "host-tools")]
            stage: Mutex::new(None),
            start: Instant::now(),
        }
    }

    pub(crate) fn finish(&self) {
        #[cfg(feature = "host-tools")]
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        log::info!("apply took {:.1?}", self.start.elapsed());
    }
}

impl Observer for BarObserver {
    fn progress(&self, p: &Progress) {
        #[cfg(not(feature = "host-tools"))]
        let _ = p;
        #[cfg(feature = "host-tools")]
        self.show(p);
    }
}

#[cfg(feature = "host-tools")]
impl BarObserver {
    fn show(&self, p: &Progress) {
        let Some(bar) = &self.bar else { return };
        let mut stage = self.stage.lock().unwrap_or_else(|e| e.into_inner());
        if *stage != Some(p.stage) {
            *stage = Some(p.stage);
            bar.set_message(match p.stage {
                Stage::Metadata => "metadata",
                Stage::Writing => "writing",
                Stage::Verifying => "verifying",
                Stage::Postinstall => "postinstall",
                Stage::Done => "done",
            });
            bar.set_length(p.bytes_total);
        }
        bar.set_position(p.bytes_done);
    }
}
