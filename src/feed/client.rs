//! The device side over the network: fetch and verify the feed, check in with the service,
//! pick the offer, open its payload (decrypting if it is encrypted) and apply it with a report
//! at each phase end, queued on disk and flushed to the feed's report URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::choice::{choose, Running};
use super::crypt::{KeyFile, Layout, MAX_KEY_FILE_BYTES};
use super::decrypt::DecryptingSource;
use super::device_key::DeviceKey;
use super::model::{Feed, Offer, MAX_FEED_BYTES};
use super::report::{Flushed, Report, ReportQueue, ReportSink, Sent};
use super::trust::{verify, AcceptedStore, Expectation, VerifiedFeed};
use crate::download::{self, SourceOptions};
use crate::engine::{ApplyOptions, Observer, PayloadSource, Progress, Stage};
use crate::error::{shown, Error, Result};
use crate::payload::keys::TrustedKeys;
use crate::source::Source;
use crate::updater::{Outcome, Updater};

const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Who and what the device is, and where its feed is.
#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    /// Where `feed.json` is.
    pub feed_url: String,
    /// The device's model, which the feed must be for.
    pub model: String,
    /// The channel, which the feed must be for.
    pub channel: String,
    /// The device's id, for the rollout bucket and reports.
    pub device_id: String,
    /// The device token for check-ins and reports (`Authorization: Bearer`).
    pub token: Option<String>,
    /// `ro.build.fingerprint`.
    pub fingerprint: Option<String>,
    /// `ro.build.date.utc`.
    pub build_timestamp: Option<i64>,
}

/// An offer picked for this device, with its URLs resolved against the feed's.
#[derive(Clone, Debug)]
pub struct Update {
    /// The offer picked.
    pub offer: Offer,
    /// The payload's URL, resolved.
    pub payload_url: String,
    /// The wrapped keys' URL, resolved, for an encrypted payload.
    pub key_url: Option<String>,
    /// The report URL, resolved, if the feed has one.
    pub report_url: Option<String>,
}

impl Update {
    /// `UPDATE_AVAILABLE id=... build=... size=N delta|full [encrypted] notes="..."`.
    pub fn summary(&self) -> String {
        let o = &self.offer;
        format!(
            "UPDATE_AVAILABLE id={} build={} size={} {}{} notes={}",
            o.id,
            o.build.fingerprint,
            o.payload.size,
            if o.is_delta() { "delta" } else { "full" },
            if o.payload.encryption.is_some() {
                " encrypted"
            } else {
                ""
            },
            serde_json::to_string(&o.notes).unwrap_or_default()
        )
    }
}

#[derive(Serialize)]
struct Checkin<'a> {
    device_id: &'a str,
    model: &'a str,
    channel: &'a str,
    build_fingerprint: &'a str,
    build_timestamp: i64,
}

#[derive(Deserialize)]
struct CheckinAnswer {
    #[serde(default)]
    rollout: BTreeMap<String, u8>,
}

/// Unix seconds now (0 before 1970).
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Fetches `feed.json` and `feed.json.sig` and verifies them (15, 16, 17), against the last feed
/// accepted in `state_dir`.
pub fn fetch_feed(
    device: &DeviceIdentity,
    keys: &TrustedKeys,
    state_dir: &Path,
    opts: &SourceOptions,
) -> Result<VerifiedFeed> {
    let bytes = download::fetch_bounded(&device.feed_url, MAX_FEED_BYTES, opts)?;
    let sig_url = format!("{}.sig", device.feed_url);
    let signature = download::fetch_bounded(&sig_url, MAX_SIGNATURE_BYTES, opts)?;
    let accepted = AcceptedStore::new(state_dir, &device.channel);
    let expect = Expectation {
        model: &device.model,
        channel: &device.channel,
        build_timestamp: device.build_timestamp,
        last_accepted: accepted.load()?,
    };
    verify(&bytes, &signature, keys, &expect)
}

/// Checks for an update: the feed, the check-in (when the feed names a check-in URL and the
/// device has a token; the service's rollout percentages override the feed's), the choice.
/// The feed's time is recorded as accepted once it verified.
pub fn check(
    device: &DeviceIdentity,
    keys: &TrustedKeys,
    state_dir: &Path,
    opts: &SourceOptions,
) -> Result<Option<Update>> {
    let verified = fetch_feed(device, keys, state_dir, opts)?;
    AcceptedStore::new(state_dir, &device.channel).record(&verified)?;
    let feed = verified.feed();
    let rollout = match (&feed.checkin_url, &device.token) {
        (Some(url), Some(token)) => checkin(&resolve(device, url)?, token, device, opts)?,
        _ => BTreeMap::new(),
    };
    let running = Running {
        fingerprint: device.fingerprint.as_deref(),
        timestamp: device.build_timestamp,
        device_id: &device.device_id,
    };
    let Some(offer) = choose(&verified, &running, &rollout) else {
        return Ok(None);
    };
    update_for(device, feed, offer.clone()).map(Some)
}

fn resolve(device: &DeviceIdentity, reference: &str) -> Result<String> {
    if device.feed_url.contains("://") && !device.feed_url.starts_with("file://") {
        download::resolve_url(&device.feed_url, reference)
    } else if reference.contains("://") || reference.starts_with('/') {
        Ok(reference.to_owned())
    } else {
        // A feed read from a local directory: siblings are files.
        let path = device.feed_url.trim_start_matches("file://");
        let dir = Path::new(path).parent().unwrap_or(Path::new("."));
        Ok(dir.join(reference).display().to_string())
    }
}

fn update_for(device: &DeviceIdentity, feed: &Feed, offer: Offer) -> Result<Update> {
    Ok(Update {
        payload_url: resolve(device, &offer.payload.url)?,
        key_url: offer
            .payload
            .encryption
            .as_ref()
            .map(|e| resolve(device, &e.key_url))
            .transpose()?,
        report_url: feed
            .report_url
            .as_ref()
            .map(|url| resolve(device, url))
            .transpose()?,
        offer,
    })
}

fn checkin(
    url: &str,
    token: &str,
    device: &DeviceIdentity,
    opts: &SourceOptions,
) -> Result<BTreeMap<String, u8>> {
    let body = serde_json::to_vec(&Checkin {
        device_id: &device.device_id,
        model: &device.model,
        channel: &device.channel,
        build_fingerprint: device.fingerprint.as_deref().unwrap_or(""),
        build_timestamp: device.build_timestamp.unwrap_or(0),
    })
    .map_err(|e| crate::err!(DownloadFailed, "check-in body: {e}"))?;
    let answer = download::post(
        url,
        "application/json",
        &body,
        MAX_ANSWER_BYTES,
        &with_token(opts, token),
    )?;
    if answer.status != 200 {
        crate::bail!(
            DownloadProtocol,
            "check-in at {url} answered {}: {}",
            answer.status,
            crate::error::shown_bytes(&answer.body)
        );
    }
    let parsed: CheckinAnswer = serde_json::from_slice(&answer.body)
        .map_err(|e| crate::err!(DownloadProtocol, "check-in answer: {e}"))?;
    Ok(parsed.rollout)
}

fn with_token(opts: &SourceOptions, token: &str) -> SourceOptions {
    let mut opts = opts.clone();
    opts.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
    opts.headers
        .push(("Authorization".into(), format!("Bearer {token}")));
    opts
}

/// The payload source of an update: the payload itself, or the encrypted payload decrypted
/// with the content key `device_key` unwraps (20 when it cannot).
pub fn payload_source(
    update: &Update,
    device_key: Option<&dyn DeviceKey>,
    opts: &SourceOptions,
) -> Result<Box<dyn PayloadSource + Send>> {
    let payload = &update.offer.payload;
    let Some(enc) = &payload.encryption else {
        return Ok(Box::new(Source::new(
            &update.payload_url,
            payload.offset,
            Some(payload.size),
            opts.clone(),
        )));
    };
    let Some(device_key) = device_key else {
        crate::bail!(
            VerificationFailed,
            "offer {} is encrypted and this device has no device key",
            update.offer.id
        );
    };
    let key_url = update.key_url.as_deref().unwrap_or_default();
    let key_file = KeyFile::parse(&download::fetch_bounded(key_url, MAX_KEY_FILE_BYTES, opts)?)?;
    let key = key_file.unwrap_for(device_key)?;
    let layout = Layout {
        chunk_size: enc.chunk_size,
        plain_size: payload.size,
    };
    // The encrypted file's size is left for the chunks to check: a file cut short ends inside
    // a chunk the layout expects (20, with the chunk), rather than a bare size mismatch.
    let inner = Source::new(&update.payload_url, 0, None, opts.clone());
    Ok(Box::new(DecryptingSource::new(inner, key, layout)?))
}

/// A boxed source is a source: [`payload_source`] picks plain or decrypting at run time.
impl<S: PayloadSource + ?Sized> PayloadSource for Box<S> {
    fn size(&self) -> Option<u64> {
        (**self).size()
    }
    fn open(&mut self, offset: u64) -> Result<Box<dyn std::io::Read + Send + '_>> {
        (**self).open(offset)
    }
}

/// What an apply reports with.
pub struct Reporting<'a> {
    /// Where reports wait to be sent.
    pub queue: &'a ReportQueue,
    /// The device reporting.
    pub device: &'a DeviceIdentity,
    /// The target slot, for the reports.
    pub slot: String,
}

/// Applies `update` with `updater`, queuing a report at each phase end and at completion (when
/// the feed names a report URL).
pub fn apply(
    updater: &Updater,
    update: &Update,
    source: &mut dyn PayloadSource,
    options: &ApplyOptions,
    observer: &dyn Observer,
    reporting: &Reporting<'_>,
) -> Result<Outcome> {
    let phases = PhaseReports {
        inner: observer,
        reporting,
        update,
        started: Instant::now(),
        state: Mutex::new((Stage::Metadata, 0)),
    };
    let result = updater.apply(source, options, &phases);
    let (stage, bytes) = phases.state();
    let phase = match (&result, stage) {
        (Ok(_), _) => "install",
        (Err(_), Stage::Metadata | Stage::Writing) => "download",
        (Err(_), Stage::Verifying) => "verify",
        (Err(_), Stage::Postinstall) => "postinstall",
        (Err(_), Stage::Done) => "install",
    };
    let outcome = result.as_ref().map(|_| ());
    phases.push(phase, outcome, bytes);
    phases.push("complete", outcome, bytes);
    result
}

struct PhaseReports<'a> {
    inner: &'a dyn Observer,
    reporting: &'a Reporting<'a>,
    update: &'a Update,
    started: Instant,
    state: Mutex<(Stage, u64)>,
}

impl PhaseReports<'_> {
    fn state(&self) -> (Stage, u64) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, phase: &str, outcome: std::result::Result<(), &Error>, bytes: u64) {
        let Some(url) = &self.update.report_url else {
            return;
        };
        let device = self.reporting.device;
        let mut report = Report {
            device_id: device.device_id.clone(),
            offer_id: self.update.offer.id.clone(),
            phase: phase.to_owned(),
            code: 0,
            reason: String::new(),
            message: String::new(),
            bytes,
            from_build: device.fingerprint.clone().unwrap_or_default(),
            to_build: self.update.offer.build.fingerprint.clone(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            slot: self.reporting.slot.clone(),
            at: now(),
        };
        report.set_outcome(outcome);
        // A report that cannot be queued must not fail the update.
        if let Err(e) = self.reporting.queue.push(url, report) {
            log::warn!("queuing a {phase} report: {e}");
        }
    }
}

impl Observer for PhaseReports<'_> {
    fn progress(&self, progress: &Progress) {
        let ended = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let previous = state.0;
            *state = (progress.stage, progress.bytes_done.max(state.1));
            (previous != progress.stage).then_some(previous)
        };
        match ended {
            Some(Stage::Writing) => self.push("download", Ok(()), progress.bytes_total),
            Some(Stage::Verifying) => self.push("verify", Ok(()), progress.bytes_total),
            _ => {}
        }
        self.inner.progress(progress);
    }

    fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
}

/// Sends reports over HTTP(S) with the device token.
pub struct HttpReportSink {
    opts: SourceOptions,
}

impl HttpReportSink {
    /// A sink posting with `token` as bearer token.
    pub fn new(opts: &SourceOptions, token: &str) -> Self {
        let mut opts = with_token(opts, token);
        opts.connect_timeout = std::time::Duration::from_secs(10);
        opts.read_timeout = std::time::Duration::from_secs(10);
        HttpReportSink { opts }
    }
}

impl ReportSink for HttpReportSink {
    fn send(&mut self, url: &str, body: &[u8]) -> Sent {
        match download::post(url, "application/json", body, MAX_ANSWER_BYTES, &self.opts) {
            Ok(answer) if (200..300).contains(&answer.status) => Sent::Delivered,
            Ok(answer) if matches!(answer.status, 401 | 408 | 429) || answer.status >= 500 => {
                Sent::Retry(format!("{url} answered {}", answer.status))
            }
            Ok(answer) => Sent::Refused(format!(
                "{url} answered {}: {}",
                answer.status,
                shown(&String::from_utf8_lossy(&answer.body))
            )),
            Err(e) => Sent::Retry(e.to_string()),
        }
    }
}

/// Flushes the queue in `state_dir`, trying up to `attempts` times with the backoff between
/// (the first attempt ignores a stored backoff when `force`).
pub fn flush_reports(
    state_dir: &Path,
    token: &str,
    opts: &SourceOptions,
    attempts: u32,
    force: bool,
) -> Result<Flushed> {
    let queue = ReportQueue::new(state_dir);
    let mut sink = HttpReportSink::new(opts, token);
    let mut done = queue.flush(&mut sink, now(), force)?;
    for failures in 1..attempts {
        if done.left == 0 {
            break;
        }
        std::thread::sleep(super::report::backoff(failures));
        let more = queue.flush(&mut sink, now(), true)?;
        done.delivered += more.delivered;
        done.refused += more.refused;
        done.left = more.left;
        done.stopped = more.stopped;
    }
    Ok(done)
}

/// The state directory a host device directory uses by default.
pub fn host_state_dir(device: &Path, state_dir: Option<&Path>) -> PathBuf {
    state_dir.map_or_else(|| device.join("state"), Path::to_path_buf)
}

/// Queues the reports of an update that failed before the engine started (the key file, the
/// first request): a failed download phase and its completion.
pub fn report_failure(
    queue: &ReportQueue,
    device: &DeviceIdentity,
    update: &Update,
    slot: &str,
    error: &Error,
) {
    let reporting = Reporting {
        queue,
        device,
        slot: slot.to_owned(),
    };
    let phases = PhaseReports {
        inner: &NoObserver,
        reporting: &reporting,
        update,
        started: Instant::now(),
        state: Mutex::new((Stage::Metadata, 0)),
    };
    phases.push("download", Err(error), 0);
    phases.push("complete", Err(error), 0);
}

struct NoObserver;

impl Observer for NoObserver {
    fn progress(&self, _: &Progress) {}
}
