//! `abupdate publish` (host tool: add an offer to a feed directory and sign the feed),
//! `abupdate check [--apply]` (fetch, verify and pick from the feed; apply the offer into the
//! inactive slot) and `abupdate report flush` (send the queued fleet reports).

#[cfg(feature = "host-tools")]
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
#[cfg(feature = "host-tools")]
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use abupdate::download::SourceOptions;
use abupdate::engine::ApplyOptions;
use abupdate::feed::client::{self, DeviceIdentity, Reporting};
use abupdate::feed::device_key;
#[cfg(feature = "host-tools")]
use abupdate::feed::device_key::public_key_from_pem;
#[cfg(feature = "host-tools")]
use abupdate::feed::publish::{self, Publication, DEFAULT_CHUNK};
use abupdate::feed::report::ReportQueue;
use abupdate::payload::keys::TrustedKeys;
#[cfg(feature = "host-tools")]
use abupdate::payload::signature::Signer;
use abupdate::slot::Slot;
use abupdate::sysprop::{Properties, PropertyFile};
use abupdate::updater::{HostOptions, Updater};

use crate::apply_cmd::BarObserver;
use crate::follow::Follow;

#[cfg(feature = "host-tools")]
#[derive(Args)]
pub struct PublishArgs {
    /// The feed directory (served as it is): <model>/<channel>/feed.json and payloads.
    #[arg(long, value_name = "DIR")]
    pub feed_dir: PathBuf,
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// The payload.bin to offer.
    #[arg(long)]
    pub payload: PathBuf,
    /// payload_properties.txt (default: computed from the payload).
    #[arg(long, value_name = "FILE")]
    pub properties: Option<PathBuf>,
    /// The target build's ro.build.fingerprint.
    #[arg(long)]
    pub fingerprint: String,
    /// The target build's ro.build.date.utc (default: the payload's max_timestamp).
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// A delta: the running build's fingerprint it applies to.
    #[arg(long, value_name = "FINGERPRINT")]
    pub source_fingerprint: Option<String>,
    /// Staged rollout, percent of devices (0 pauses).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub rollout: u8,
    #[arg(long, default_value = "")]
    pub notes: String,
    /// The offer id (default: <timestamp>-full or <timestamp>-delta).
    #[arg(long)]
    pub id: Option<String>,
    /// AVB rollback index of the target build, LOCATION=INDEX (repeatable).
    #[arg(long = "rollback-index", value_name = "LOC=N")]
    pub rollback_indexes: Vec<String>,
    /// Encrypt the payload for this device's X25519 public key, PEM (repeatable).
    #[arg(long = "encrypt-for", value_name = "DEVICE_PUB.pem")]
    pub encrypt_for: Vec<PathBuf>,
    /// Plaintext bytes per encrypted chunk.
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    pub chunk_size: u32,
    /// Where devices send reports (abupdate-server's /v1/report).
    #[arg(long)]
    pub report_url: Option<String>,
    /// Where devices check in (abupdate-server's /v1/checkin).
    #[arg(long)]
    pub checkin_url: Option<String>,
    /// The OTA signing key (RSA, PEM): the feed is signed with it.
    #[arg(long, value_name = "OTA_KEY.pem")]
    pub key: PathBuf,
}

#[cfg(feature = "host-tools")]
pub fn publish(args: PublishArgs) -> Result<()> {
    let signer = Signer::from_pem(
        &std::fs::read_to_string(&args.key)
            .with_context(|| format!("reading {}", args.key.display()))?,
    )?;
    let properties = match &args.properties {
        Some(path) => Some(crate::apply_cmd::header_pairs(Some(path), &[])?),
        None => None,
    };
    let mut rollback_indexes = BTreeMap::new();
    for pair in &args.rollback_indexes {
        let (loc, index) = pair
            .split_once('=')
            .with_context(|| format!("--rollback-index {pair}: not LOC=N"))?;
        rollback_indexes.insert(loc.to_owned(), index.parse().context("rollback index")?);
    }
    let mut encrypt_for = Vec::new();
    for path in &args.encrypt_for {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        encrypt_for.push(public_key_from_pem(&pem).with_context(|| path.display().to_string())?);
    }
    let offer = publish::publish(
        &Publication {
            feed_dir: &args.feed_dir,
            model: &args.model,
            channel: &args.channel,
            payload: &args.payload,
            properties,
            id: args.id.clone(),
            fingerprint: args.fingerprint.clone(),
            timestamp: args.timestamp,
            source_fingerprint: args.source_fingerprint.clone(),
            rollout_percent: args.rollout,
            notes: args.notes.clone(),
            rollback_indexes,
            encrypt_for,
            chunk_size: args.chunk_size,
            report_url: args.report_url.clone(),
            checkin_url: args.checkin_url.clone(),
            now: now(),
        },
        &signer,
    )?;
    println!(
        "published {} ({}, {} bytes{}) in {}/{}/{}",
        offer.id,
        if offer.is_delta() { "delta" } else { "full" },
        offer.payload.size,
        if offer.payload.encryption.is_some() {
            ", encrypted"
        } else {
            ""
        },
        args.feed_dir.display(),
        args.model,
        args.channel
    );
    Ok(())
}

#[derive(Args)]
pub struct CheckArgs {
    /// The feed: https://.../<model>/<channel>/feed.json (its signature at feed.json.sig).
    #[arg(long, value_name = "URL")]
    pub feed_url: String,
    /// Apply the offer into the inactive slot; without --device the service does
    /// (applyFeedOffer) and this follows it to its end, exiting with its code.
    #[arg(long)]
    pub apply: bool,
    /// A host device directory (as `apply --device`); its build.prop names the running build
    /// (ro.build.fingerprint, ro.build.date.utc, ro.product.name).
    #[arg(long, value_name = "DIR")]
    pub device: Option<PathBuf>,
    /// The stable per-device id the rollout bucket comes from.
    #[arg(long)]
    pub device_id: String,
    /// The device token for check-ins and reports (abupdate-server device add).
    #[arg(long)]
    pub token: Option<String>,
    /// Default: ro.product.name.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// With --device: trusted OTA key (PEM key, certificate or otacerts.zip; repeatable),
    /// for feed and payload (without one, nothing is trusted: 29). The service has its own.
    #[arg(long = "key", value_name = "FILE", requires = "device")]
    pub keys: Vec<PathBuf>,
    /// With --device: the device's X25519 key (PKCS#8 PEM) for encrypted payloads (default
    /// DEVICE/device_key.pem when it exists). The service has its own.
    #[arg(long, value_name = "FILE")]
    pub device_key: Option<PathBuf>,
    /// Trust this CA (PEM) for https:// besides the system store.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// With --device: where state is kept (default DEVICE/state).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub current_slot: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub avb_key: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub service: crate::service_cmd::ServiceArgs,
}

#[cfg(feature = "host-tools")]
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn source_options(ca: Option<&Path>) -> SourceOptions {
    SourceOptions {
        pinned_ca: ca.map(Path::to_path_buf),
        ..SourceOptions::default()
    }
}

pub fn check(args: CheckArgs) -> Result<()> {
    let Some(dir) = &args.device else {
        return check_through_service(&args);
    };
    let props = match std::fs::read_to_string(dir.join("build.prop")) {
        Ok(text) => PropertyFile::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PropertyFile::default(),
        Err(e) => return Err(e).context("reading build.prop"),
    };
    let prop = |name: &str| props.get(name).ok().flatten().filter(|v| !v.is_empty());
    let build_timestamp = prop("ro.build.date.utc")
        .map(|v| v.parse::<i64>())
        .transpose()
        .context("ro.build.date.utc")?;
    let Some(model) = args.model.clone().or_else(|| prop("ro.product.name")) else {
        bail!("no --model and no ro.product.name in build.prop");
    };
    let identity = DeviceIdentity {
        feed_url: args.feed_url.clone(),
        model,
        channel: args.channel.clone(),
        device_id: args.device_id.clone(),
        token: args.token.clone(),
        fingerprint: prop("ro.build.fingerprint"),
        build_timestamp,
    };
    let state_dir = client::host_state_dir(dir, args.state_dir.as_deref());
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let keys = abupdate::key_file::load_all(&args.keys)?;
    let opts = source_options(args.ca.as_deref());
    let result = check_and_apply(&args, dir, &identity, &keys, &state_dir, &opts);
    if let Some(token) = &args.token {
        match client::flush_reports(&state_dir, token, &opts, 3, false) {
            Ok(done) if done.left > 0 => eprintln!(
                "reports: {} sent, {} left queued ({})",
                done.delivered,
                done.left,
                done.stopped.unwrap_or_default()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("reports: {e}"),
        }
    }
    result
}

/// `check [--apply]` without `--device`: the service checks (`checkForUpdate`) or checks and
/// applies (`applyFeedOffer`, followed to its end; the exit code is the update's).
fn check_through_service(args: &CheckArgs) -> Result<()> {
    if args.device_key.is_some() || args.state_dir.is_some() {
        bail!("--device-key and --state-dir are the service's own (abupdated --device-key, --state-dir)");
    }
    let client = args.service.connect()?;
    let token = args.token.as_deref().unwrap_or("");
    if !args.apply {
        println!(
            "{}",
            client.check_for_update(&args.feed_url, &args.device_id, token)?
        );
        return Ok(());
    }
    // Listen first, so that the end of a quick update is not missed.
    let follow = Follow::start(&client, std::io::stderr().is_terminal())?;
    let summary = client.apply_feed_offer(&args.feed_url, &args.device_id, token)?;
    println!("{summary}");
    if summary == "NO_UPDATE" {
        return Ok(());
    }
    // Printed at once: a caller reading the output knows the update started.
    std::io::Write::flush(&mut std::io::stdout())?;
    follow.until_complete(false)?;
    println!("applied; reboot to run the new slot");
    Ok(())
}

fn check_and_apply(
    args: &CheckArgs,
    dir: &Path,
    identity: &DeviceIdentity,
    keys: &TrustedKeys,
    state_dir: &Path,
    opts: &SourceOptions,
) -> Result<()> {
    let Some(update) = client::check(identity, keys, state_dir, opts)? else {
        println!("NO_UPDATE");
        return Ok(());
    };
    println!("{}", update.summary());
    if !args.apply {
        return Ok(());
    }
    let device_key_path = args
        .device_key
        .clone()
        .or_else(|| Some(dir.join("device_key.pem")).filter(|p| p.exists()));
    let device_key = device_key_path
        .as_deref()
        .map(device_key::load_file)
        .transpose()?;
    let host = HostOptions {
        current: args
            .current_slot
            .as_deref()
            .map(str::parse::<Slot>)
            .transpose()?,
        state_dir: Some(state_dir.to_path_buf()),
        avb_key: args.avb_key.clone(),
    };
    let updater = Updater::open_host(dir, &host)?;
    let mut options = ApplyOptions {
        keys: keys.clone(),
        ..ApplyOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    options.properties = update.offer.properties()?;
    let queue = ReportQueue::new(state_dir);
    let reporting = Reporting {
        queue: &queue,
        device: identity,
        slot: updater
            .device()
            .target_slot()
            .suffix()
            .trim_start_matches('_')
            .to_owned(),
    };
    let observer = BarObserver::new(std::io::stderr().is_terminal());
    let outcome =
        client::payload_source(&update, device_key.as_deref(), opts).and_then(|mut source| {
            client::apply(
                &updater,
                &update,
                &mut source,
                &options,
                &observer,
                &reporting,
            )
        });
    observer.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            if update.report_url.is_some() {
                client::report_failure(&queue, identity, &update, &reporting.slot, &e);
            }
            return Err(e.into());
        }
    };
    println!("applied {}: {outcome}", update.offer.id);
    Ok(())
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Send the queued reports now (retrying with backoff).
    Flush(FlushArgs),
}

#[derive(Args)]
pub struct FlushArgs {
    /// A host device directory (state in DIR/state), or --state-dir.
    #[arg(long, value_name = "DIR")]
    pub device: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub token: String,
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Attempts, with exponential backoff between them.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
}

pub fn report(cmd: ReportCommand) -> Result<()> {
    let ReportCommand::Flush(args) = cmd;
    let state_dir = match (&args.state_dir, &args.device) {
        (Some(dir), _) => dir.clone(),
        (None, Some(device)) => client::host_state_dir(device, None),
        (None, None) => PathBuf::from("/data/misc/abupdate"),
    };
    let opts = source_options(args.ca.as_deref());
    let done = client::flush_reports(&state_dir, &args.token, &opts, args.attempts, true)?;
    println!(
        "reports: {} sent, {} refused, {} queued",
        done.delivered, done.refused, done.left
    );
    if done.left > 0 {
        bail!(
            "{} reports still queued: {}",
            done.left,
            done.stopped.unwrap_or_default()
        );
    }
    Ok(())
}
