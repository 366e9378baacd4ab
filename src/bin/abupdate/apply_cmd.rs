//! `abupdate apply`: applies a payload into the inactive slot of a host device directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use abupdate::device::Slot;
use abupdate::download::{header_for_property, SourceOptions};
use abupdate::engine::{ApplyOptions, Observer, Progress, Stage};
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::properties::PayloadProperties;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Outcome, Updater};

#[derive(Args, Clone)]
pub struct ApplyArgs {
    /// Device directory holding <name>_a.img / <name>_b.img.
    #[arg(long)]
    pub device: PathBuf,
    /// The running slot (a or b); the update goes into the other one. Default: what
    /// DEVICE/misc.img records.
    #[arg(long)]
    pub current_slot: Option<String>,
    /// Trusted payload key: PEM public key, X.509 certificate or otacerts.zip (repeatable).
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// AVB public key (avbpubkey or PEM) new slots must be signed with; default
    /// DEVICE/avb_key.pem, else the running slot's vbmeta key.
    #[arg(long)]
    pub avb_key: Option<PathBuf>,
    /// Header pair KEY=VALUE, as the service receives them (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// payload_properties.txt, whose lines are taken as header pairs.
    #[arg(long)]
    pub properties: Option<PathBuf>,
    /// Where checkpoints are kept (default: DEVICE/state).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Threads decoding operations.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Trust this CA (PEM) for https:// besides the system store.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The payload: a file, or an http://, https://, file:// or fd:// location.
    pub payload: String,
    /// Offset of the payload in the file or URL (a payload.bin stored inside an OTA zip).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Size of the payload at that offset (default: to the end).
    #[arg(long)]
    pub size: Option<u64>,
    /// Minimum time between checkpoints while writing, in milliseconds (default 1000). Hidden:
    /// only the kill-and-resume tests need checkpoints this often.
    #[arg(long, hide = true)]
    pub checkpoint_interval_ms: Option<u64>,
}

pub fn run(args: ApplyArgs) -> Result<()> {
    let outcome = apply(&args, std::io::stderr().is_terminal())?;
    let report = &outcome.report;
    println!(
        "applied {}: {} operations{}, {} payload bytes read; {}",
        args.payload,
        report.operations_applied,
        report
            .resumed_at
            .map(|op| format!(" (resumed at operation {op})"))
            .unwrap_or_default(),
        report.bytes_read,
        match outcome.switched_to {
            Some(slot) => format!("slot {slot} is active for the next boot"),
            None => "slot not switched (SWITCH_SLOT_ON_REBOOT=0)".to_owned(),
        }
    );
    Ok(())
}

/// Runs one apply; shared with the demo.
pub fn apply(args: &ApplyArgs, progress_bar: bool) -> Result<Outcome> {
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
    let updater = Updater::open_host(&args.device, &host)?;
    let mut options = ApplyOptions {
        keys: load_keys(&args.keys)?,
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
    let mut options = SourceOptions {
        pinned_ca: args.ca.clone(),
        ..SourceOptions::default()
    };
    let pairs = [
        ("USER_AGENT", &props.user_agent),
        ("AUTHORIZATION", &props.authorization),
    ];
    for (key, value) in pairs {
        if let (Some(header), Some(value)) = (header_for_property(key), value) {
            options.headers.push((header.to_owned(), value.clone()));
        }
    }
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

fn load_keys(paths: &[PathBuf]) -> Result<TrustedKeys> {
    let mut keys = TrustedKeys::none();
    for path in paths {
        for key in TrustedKeys::load(path)?.keys() {
            keys.add(key.clone());
        }
    }
    Ok(keys)
}

fn properties(file: Option<&Path>, headers: &[String]) -> Result<PayloadProperties> {
    let mut props = match file {
        Some(path) => PayloadProperties::parse_text(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => PayloadProperties::new(),
    };
    for pair in headers {
        props.set_pair(pair)?;
    }
    Ok(props)
}

/// Shows progress with indicatif on a terminal; silent otherwise. Stops on SIGINT-free runs only
/// when the engine says so: cancellation is the service's business.
struct BarObserver {
    bar: Option<indicatif::ProgressBar>,
    stage: Mutex<Option<Stage>>,
    start: Instant,
}

impl BarObserver {
    fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        BarObserver {
            bar,
            stage: Mutex::new(None),
            start: Instant::now(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        log::info!("apply took {:.1?}", self.start.elapsed());
    }
}

impl Observer for BarObserver {
    fn progress(&self, p: &Progress) {
        let Some(bar) = &self.bar else { return };
        let mut stage = self.stage.lock().unwrap_or_else(|e| e.into_inner());
        if *stage != Some(p.stage) {
            *stage = Some(p.stage);
            bar.set_message(match p.stage {
                Stage::Metadata => "metadata",
                Stage::Writing => "writing",
                Stage::Verifying => "verifying",
                Stage::Done => "done",
            });
            bar.set_length(p.bytes_total);
        }
        bar.set_position(p.bytes_done);
    }
}
