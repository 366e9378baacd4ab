//! The [`UpdateBackend`] that `abupdated` runs: abupdate's update engine, through [`Updater`].
//!
//! A request becomes a [`Source`] (its URL, or the caller's file as `fd://N`; offset and
//! size), its header pairs become the payload properties, the HTTP headers they name
//! (`USER_AGENT`, `AUTHORIZATION`) and the network to download over (`NETWORK_ID`), and the
//! service's [`Control`] steers both the download (a suspend closes the connection at once)
//! and the engine's operation loop (a suspend holds it between operations, a cancel stops it
//! there). The engine's stages become the service's phases: writing is `Downloading` (payload
//! bytes applied), then `Verifying` (partition bytes hashed, verity data written), then
//! `Finalizing` (AVB checks, the switch).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::download::{header_for_property, SourceOptions, TransferControl};
use crate::engine::checkpoint::Phase as CheckpointPhase;
use crate::engine::metadata::Metadata;
use crate::engine::{self, ApplyOptions, Observer, Stage};
use crate::error::Result;
use crate::feed::client::{self, DeviceIdentity, Reporting, Update};
use crate::feed::device_key::DeviceKey;
use crate::payload::keys::TrustedKeys;
use crate::payload::properties::PayloadProperties;
use crate::payload::HEADER_SIZE;
use crate::service::backend::{
    ApplyPhase, ApplyProgress, ApplyRequest, CheckRequest, FeedApply, PayloadLocation,
    RollbackFloor, SlotInfo, SlotState, UpdateBackend,
};
use crate::service::control::Control;
use crate::service::reports::ReportSender;
use crate::slot::Slot;
use crate::source::Source;
use crate::updater::Updater;

/// What the service's engine is configured with besides the device.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Keys payloads must be signed with (Android: `/system/etc/security/otacerts.zip`).
    /// Empty: unsigned payloads are accepted, as on engineering builds.
    pub keys: TrustedKeys,
    /// Threads decoding operations.
    pub threads: usize,
    /// An extra CA certificate (PEM) trusted for `https://` besides the system store.
    pub pinned_ca: Option<PathBuf>,
    /// What `checkForUpdate` compares the feed with.
    pub feed: FeedSettings,
}

/// The running build and where feed state is kept, for `checkForUpdate`.
#[derive(Clone, Debug, Default)]
pub struct FeedSettings {
    /// The service's state directory (the last accepted feed, the report queue); `None`:
    /// this engine does not check feeds.
    pub state_dir: Option<PathBuf>,
    /// `ro.product.name`.
    pub model: Option<String>,
    /// The update channel; empty means `stable`.
    pub channel: String,
    /// `ro.build.fingerprint`.
    pub fingerprint: Option<String>,
    /// `ro.build.date.utc`.
    pub build_timestamp: Option<i64>,
}

impl FeedSettings {
    /// The settings a build's properties give, state in `state_dir`.
    pub fn from_properties(
        props: &dyn crate::sysprop::Properties,
        state_dir: PathBuf,
        channel: &str,
    ) -> Result<Self> {
        let get = |name: &str| -> Result<Option<String>> {
            Ok(props.get(name)?.filter(|v| !v.is_empty()))
        };
        let build_timestamp = match get("ro.build.date.utc")? {
            Some(v) => Some(v.trim().parse().map_err(|_| {
                crate::err!(DeviceError, "ro.build.date.utc={v:?} is not a timestamp")
            })?),
            None => None,
        };
        Ok(FeedSettings {
            state_dir: Some(state_dir),
            model: get("ro.product.name")?,
            channel: channel.to_owned(),
            fingerprint: get("ro.build.fingerprint")?,
            build_timestamp,
        })
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            keys: TrustedKeys::none(),
            threads: ApplyOptions::default().threads,
            pinned_ca: None,
            feed: FeedSettings::default(),
        }
    }
}

/// The update engine behind the service: one device's [`Updater`].
pub struct UpdaterBackend {
    updater: Updater,
    config: BackendConfig,
    /// Unwraps the content keys of encrypted feed offers.
    device_key: Option<Box<dyn DeviceKey>>,
    /// Sends the feed reports queued in the state directory.
    reports: Option<ReportSender>,
}

impl UpdaterBackend {
    /// The backend over `updater`.
    pub fn new(updater: Updater, config: BackendConfig) -> Self {
        let reports = config.feed.state_dir.as_deref().map(|dir| {
            ReportSender::new(
                dir,
                SourceOptions {
                    pinned_ca: config.pinned_ca.clone(),
                    ..SourceOptions::default()
                },
            )
        });
        UpdaterBackend {
            updater,
            config,
            device_key: None,
            reports,
        }
    }

    /// Decrypts encrypted feed offers with `key` (without one they fail with 20).
    pub fn set_device_key(&mut self, key: Box<dyn DeviceKey>) {
        self.device_key = Some(key);
    }

    /// The device's updater.
    pub fn updater(&self) -> &Updater {
        &self.updater
    }

    /// The feed check both `checkForUpdate` and `applyFeedOffer` make: the device as the
    /// check saw it, and its offer if there is one. A token given is handed to the report
    /// sender, which sends what is queued.
    fn check_feed(&self, request: &CheckRequest) -> Result<(DeviceIdentity, Option<Update>)> {
        let feed = &self.config.feed;
        let Some(state_dir) = &feed.state_dir else {
            crate::bail!(Unsupported, "this service has no update feed settings");
        };
        let Some(model) = &feed.model else {
            crate::bail!(
                DeviceError,
                "ro.product.name is not set: no model to check the feed for"
            );
        };
        let identity = DeviceIdentity {
            feed_url: checked_url(&request.feed_url)?.to_owned(),
            model: model.clone(),
            channel: match feed.channel.as_str() {
                "" => "stable".to_owned(),
                channel => channel.to_owned(),
            },
            device_id: request.device_id.clone(),
            token: request.token.clone(),
            fingerprint: feed.fingerprint.clone(),
            build_timestamp: feed.build_timestamp,
        };
        let options = SourceOptions {
            pinned_ca: self.config.pinned_ca.clone(),
            ..SourceOptions::default()
        };
        let update = client::check(&identity, &self.config.keys, state_dir, &options)?;
        if let (Some(reports), Some(token)) = (&self.reports, &request.token) {
            reports.set_token(token);
        }
        Ok((identity, update))
    }

    /// Applies a feed offer: its payload (decrypted while streaming when it is encrypted) as
    /// `apply` applies a URL, with a report queued at each phase end and at completion.
    fn apply_feed(
        &self,
        feed: &FeedApply,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> Result<()> {
        let Some(reports) = &self.reports else {
            crate::bail!(Unsupported, "this service has no update feed settings");
        };
        let update = &feed.update;
        let transfer = TransferControl::new();
        control.steer(transfer.clone());
        let download = SourceOptions {
            pinned_ca: self.config.pinned_ca.clone(),
            control: transfer,
            ..SourceOptions::default()
        };
        let reporting = Reporting {
            queue: reports.queue(),
            device: &feed.device,
            slot: self
                .updater
                .device()
                .target_slot()
                .suffix()
                .trim_start_matches('_')
                .to_owned(),
        };
        let relay = Relay {
            progress,
            control,
            reports: Some(reports),
            phase: Mutex::default(),
        };
        // The key file is fetched and unwrapped before anything is written: a wrong device key
        // fails here (20), reported as a failed download.
        let prepared = update.offer.properties().and_then(|properties| {
            let source = client::payload_source(update, self.device_key.as_deref(), &download)?;
            Ok((properties, source))
        });
        let outcome = match prepared {
            Ok((properties, mut source)) => {
                let options = ApplyOptions {
                    keys: self.config.keys.clone(),
                    properties,
                    threads: self.config.threads,
                    ..ApplyOptions::default()
                };
                client::apply(
                    &self.updater,
                    update,
                    &mut source,
                    &options,
                    &relay,
                    &reporting,
                )
            }
            Err(e) => {
                if update.report_url.is_some() {
                    client::report_failure(
                        reporting.queue,
                        &feed.device,
                        update,
                        &reporting.slot,
                        &e,
                    );
                }
                Err(e)
            }
        };
        reports.poke();
        let outcome = outcome?;
        log::info!("applied offer {}: {outcome}", update.offer.id);
        progress(ApplyProgress {
            phase: ApplyPhase::Finalizing,
            done: 1,
            total: 1,
        });
        Ok(())
    }

    fn source(
        &self,
        request: &ApplyRequest,
        properties: &PayloadProperties,
        transfer: TransferControl,
    ) -> Result<Source> {
        let mut options = SourceOptions {
            pinned_ca: self.config.pinned_ca.clone(),
            network: properties.network_id,
            control: transfer,
            ..SourceOptions::default()
        };
        options.headers = http_headers(properties);
        let location = match &request.source {
            PayloadLocation::Url(url) => checked_url(url)?.to_owned(),
            // The download duplicates the descriptor; `request` keeps the file open until
            // `apply` returns.
            PayloadLocation::File(file) => format!("fd://{}", file.as_raw_fd()),
            PayloadLocation::Feed(feed) => crate::bail!(
                InstallFailed,
                "offer {} is not a plain payload source",
                feed.update.offer.id
            ),
        };
        let size = match request.size {
            0 => properties.file_size,
            size => Some(size),
        };
        Ok(Source::new(&location, request.offset, size, options))
    }
}

impl UpdateBackend for UpdaterBackend {
    fn apply(
        &self,
        request: &ApplyRequest,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> Result<()> {
        if let PayloadLocation::Feed(feed) = &request.source {
            return self.apply_feed(feed, progress, control);
        }
        let properties = properties(&request.headers)?;
        let transfer = TransferControl::new();
        control.steer(transfer.clone());
        let mut source = self.source(request, &properties, transfer)?;
        let options = ApplyOptions {
            keys: self.config.keys.clone(),
            properties,
            threads: self.config.threads,
            ..ApplyOptions::default()
        };
        let relay = Relay {
            progress,
            control,
            reports: None,
            phase: Mutex::default(),
        };
        let outcome = self.updater.apply(&mut source, &options, &relay)?;
        log::info!("applied {outcome}");
        progress(ApplyProgress {
            phase: ApplyPhase::Finalizing,
            done: 1,
            total: 1,
        });
        Ok(())
    }

    fn check_for_update(&self, request: &CheckRequest) -> Result<String> {
        let (_, update) = self.check_feed(request)?;
        Ok(update.map_or_else(|| "NO_UPDATE".to_owned(), |u| u.summary()))
    }

    fn feed_offer(&self, request: &CheckRequest) -> Result<Option<(String, ApplyRequest)>> {
        let (mut device, update) = self.check_feed(request)?;
        let Some(update) = update else {
            return Ok(None);
        };
        // The reports go with the sender's token; the request keeps none.
        device.token = None;
        let summary = update.summary();
        let size = update.offer.payload.size;
        let request = ApplyRequest {
            source: PayloadLocation::Feed(Box::new(FeedApply { update, device })),
            offset: 0,
            size,
            headers: Vec::new(),
        };
        Ok(Some((summary, request)))
    }

    fn verify_applicable(&self, metadata: &[u8]) -> Result<()> {
        // Callers may pass more than the metadata (the payload's first kilobytes, say): the
        // payload's identity is the hash of the metadata alone.
        let header = metadata.get(..HEADER_SIZE).ok_or_else(|| {
            crate::err!(
                MalformedPayload,
                "{} bytes are too few for a payload header",
                metadata.len()
            )
        })?;
        let needed = usize::try_from(Metadata::needed(header, None)?)
            .map_err(|_| crate::err!(MalformedPayload, "metadata too large"))?;
        let bytes = metadata.get(..needed).ok_or_else(|| {
            crate::err!(
                MalformedPayload,
                "the metadata is {needed} bytes, only {} given",
                metadata.len()
            )
        })?;
        let verified = Metadata::verify(
            bytes.to_vec(),
            None,
            &PayloadProperties::new(),
            &self.config.keys,
        )?;
        self.updater.check_applicable(&verified)
    }

    fn slot_info(&self) -> Result<SlotInfo> {
        let slots = self.updater.with_boot(|b| b.slots())?;
        let current = self.updater.device().current_slot();
        let active = slots.iter().find(|s| s.active).map_or(current, |s| s.slot);
        Ok(SlotInfo {
            current: index(current),
            active: index(active),
            slots: slots
                .iter()
                .map(|s| SlotState {
                    slot: index(s.slot),
                    suffix: s.slot.suffix().to_owned(),
                    bootable: s.bootable,
                    successful: s.successful,
                    tries_remaining: s.tries_remaining.map_or(0, u32::from),
                })
                .collect(),
        })
    }

    fn mark_boot_successful(&self) -> Result<()> {
        self.updater.mark_boot_successful()
    }

    fn finish_previous_update(&self, progress: &mut dyn FnMut(f32)) -> Result<()> {
        self.updater.finish_previous_update_with(progress)
    }

    fn rollback_floors(&self) -> Result<Vec<RollbackFloor>> {
        if !self.updater.avb_required() {
            return Ok(Vec::new());
        }
        let floors = self.updater.rollback_floors()?;
        Ok(floors
            .as_array()
            .iter()
            .zip(0u32..)
            .filter(|(index, _)| **index > 0)
            .map(|(&index, location)| RollbackFloor { location, index })
            .collect())
    }

    fn resume_point(&self) -> Result<Option<ApplyProgress>> {
        let Some(cp) = self.updater.store().load()? else {
            return Ok(None);
        };
        let total = cp.payload_size.unwrap_or(0);
        // The checkpoint counts data bytes; the payload's metadata before them is re-read
        // on every resume, so it is not counted as done.
        Ok(Some(match cp.phase {
            CheckpointPhase::Writing => ApplyProgress {
                phase: ApplyPhase::Downloading,
                done: cp.next_data_offset,
                total,
            },
            CheckpointPhase::Verifying => ApplyProgress {
                phase: ApplyPhase::Verifying,
                done: 0,
                total: 0,
            },
            CheckpointPhase::Done => ApplyProgress {
                phase: ApplyPhase::Finalizing,
                done: 0,
                total: 1,
            },
        }))
    }

    fn reset(&self) -> Result<()> {
        self.updater.reset()
    }

    fn trigger_postinstall(
        &self,
        partition: &str,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> Result<()> {
        let relay = Relay {
            progress,
            control,
            reports: None,
            phase: Mutex::default(),
        };
        self.updater.trigger_postinstall(partition, &relay)
    }
}

/// The engine's observer: forwards progress as the service's phases, and stops or holds
/// the operation loop as the service's [`Control`] says.
struct Relay<'a> {
    progress: &'a (dyn Fn(ApplyProgress) + Sync),
    control: &'a Control,
    /// Woken at each stage change of a feed offer's apply: the phase's report is queued by
    /// then.
    reports: Option<&'a ReportSender>,
    /// The phase of the last progress, to notice stage changes.
    phase: Mutex<Option<ApplyPhase>>,
}

impl Observer for Relay<'_> {
    fn progress(&self, p: &engine::Progress) {
        let (phase, done, total) = match p.stage {
            Stage::Metadata | Stage::Writing => {
                (ApplyPhase::Downloading, p.bytes_done, p.bytes_total)
            }
            Stage::Verifying => (ApplyPhase::Verifying, p.bytes_done, p.bytes_total),
            // update_engine reports postinstall as FINALIZING with the programs' progress.
            Stage::Postinstall => (ApplyPhase::Finalizing, p.bytes_done, p.bytes_total),
            Stage::Done => (ApplyPhase::Finalizing, 0, 1),
        };
        if let Some(reports) = self.reports {
            let mut last = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
            if last.replace(phase).is_some_and(|last| last != phase) {
                reports.poke();
            }
        }
        (self.progress)(ApplyProgress { phase, done, total });
    }

    /// Blocks while the update is suspended.
    fn is_cancelled(&self) -> bool {
        self.control.pause_point().is_err()
    }

    fn is_suspended(&self) -> bool {
        self.control.is_suspended()
    }

    fn is_cancelled_now(&self) -> bool {
        self.control.is_cancelled()
    }
}

/// The payload properties a request's header pairs set.
pub fn properties(headers: &[(String, String)]) -> Result<PayloadProperties> {
    let mut properties = PayloadProperties::new();
    for (key, value) in headers {
        properties.set_pair(&format!("{key}={value}"))?;
    }
    Ok(properties)
}

/// The HTTP request headers that `USER_AGENT` and `AUTHORIZATION` ask for.
pub fn http_headers(properties: &PayloadProperties) -> Vec<(String, String)> {
    [
        ("USER_AGENT", &properties.user_agent),
        ("AUTHORIZATION", &properties.authorization),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((header_for_property(key)?.to_owned(), value.clone()?)))
    .collect()
}

/// A client names payloads by `http(s)://` URL only: a path, `file://` or `fd://N` would make
/// the service open its own files or descriptors (a FIFO, a device) on the caller's behalf.
/// Local payloads come as descriptors the caller opened (`applyPayloadFd`).
fn checked_url(url: &str) -> Result<&str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if ["http://", "https://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
    {
        Ok(url)
    } else {
        crate::bail!(
            DownloadFailed,
            "payload URL {} is not http:// or https:// (pass a local file as a descriptor)",
            crate::error::shown(url)
        )
    }
}

fn index(slot: Slot) -> u32 {
    // Two slots: the index is 0 or 1.
    slot.index() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_name_payloads() {
        for ok in ["http://h/p.bin", "HTTPS://h/p.bin"] {
            assert!(checked_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/data/payload.bin",
            "fd://3",
            "ftp://h/p",
            "",
            "file:",
            "file:///data/ota_package/payload.bin",
            "FILE:///tmp/payload.fifo",
        ] {
            let e = checked_url(bad).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::DownloadFailed, "{bad}");
        }
    }

    #[test]
    fn header_pairs_set_properties_and_http_headers() {
        let pairs = [
            ("FILE_SIZE", "1234"),
            ("USER_AGENT", "abupdate-test"),
            ("AUTHORIZATION", "Bearer x=="),
            ("SWITCH_SLOT_ON_REBOOT", "0"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let props = properties(&pairs).unwrap();
        assert_eq!(props.file_size, Some(1234));
        assert!(!props.switch_slot_on_reboot);
        assert_eq!(
            http_headers(&props),
            [
                ("User-Agent".to_owned(), "abupdate-test".to_owned()),
                ("Authorization".to_owned(), "Bearer x==".to_owned())
            ]
        );
        let bad = properties(&[("FILE_SIZE".to_owned(), "many".to_owned())]).unwrap_err();
        assert_eq!(bad.code, crate::ErrorCode::MalformedPayload);
    }
}
