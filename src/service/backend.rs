//! The narrow interface between the service and the update engine.
//!
//! The service owns requests, status, listeners and permissions; the engine owns
//! payloads, partitions and slots. Everything the service needs from the engine is the
//! [`UpdateBackend`] trait below, so the engine can be plugged in (or replaced in tests by any
//! other real implementation) without the service knowing its types.

use std::fs::File;

use crate::error::Result;
use crate::service::control::Control;

/// What `abupdated` asks of the update engine. Calls come from Binder threads
/// (`verify_applicable`, `slot_info`, ...) and from the service's worker thread
/// (`apply`), possibly at the same time.
pub trait UpdateBackend: Send + Sync {
    /// Applies a payload to the inactive slot and makes that slot active.
    ///
    /// Runs on the service's worker thread. Reports progress through `progress` (as
    /// often as it likes: the service throttles what it forwards) and calls
    /// [`Control::pause_point`] between operations, which blocks while the update is
    /// suspended and fails with `Cancelled` once it is cancelled. An update that stopped
    /// half-way (cancel, crash, power loss) resumes from the engine's own checkpoint when
    /// the same payload is applied again.
    fn apply(
        &self,
        request: &ApplyRequest,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> Result<()>;

    /// Checks whether a payload whose metadata (header, manifest, metadata signature)
    /// is `metadata` can be applied to this device; the error says why not.
    fn verify_applicable(&self, metadata: &[u8]) -> Result<()>;

    /// The boot control state of every slot.
    fn slot_info(&self) -> Result<SlotInfo>;

    /// Marks the running slot as successfully booted.
    fn mark_boot_successful(&self) -> Result<()>;

    /// The device's rollback index floor per AVB rollback index location.
    fn rollback_floors(&self) -> Result<Vec<RollbackFloor>>;

    /// How far an interrupted update got, from the engine's checkpoint; `None` when
    /// there is nothing to resume.
    fn resume_point(&self) -> Result<Option<ApplyProgress>>;

    /// Forgets the last update: discards the checkpoint and, if an applied update made
    /// the target slot active, makes the running slot active again.
    fn reset(&self) -> Result<()>;

    /// Runs the postinstall program of `partition` again on the applied, not yet booted
    /// update (update_engine's `triggerPostinstall`), on the worker thread like `apply`:
    /// progress as [`ApplyPhase::Finalizing`], suspend and cancel through `control`.
    fn trigger_postinstall(
        &self,
        partition: &str,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> Result<()>;

    /// Finishes what the update the device rebooted from needs afterwards (a Virtual A/B
    /// merge among it, whose progress from 0 to 1 goes to `progress`); called once the
    /// running slot is marked successful (see [`crate::service::cleanup`]). An engine with no
    /// such work has nothing to do.
    fn finish_previous_update(&self, _progress: &mut dyn FnMut(f32)) -> Result<()> {
        Ok(())
    }

    /// Checks the update feed for this device (`crate::feed`): the offer's summary line, or
    /// `NO_UPDATE`. An engine without a running build to compare with cannot (32).
    fn check_for_update(&self, request: &CheckRequest) -> Result<String> {
        crate::bail!(
            Unsupported,
            "this engine cannot check {} for updates",
            crate::error::shown(&request.feed_url)
        )
    }

    /// Checks the update feed as [`Self::check_for_update`] does and, when there is an offer,
    /// the request that applies it (its source a [`PayloadLocation::Feed`]) with the offer's
    /// summary line; `None` when there is no update.
    fn feed_offer(&self, request: &CheckRequest) -> Result<Option<(String, ApplyRequest)>> {
        crate::bail!(
            Unsupported,
            "this engine cannot apply offers of {}",
            crate::error::shown(&request.feed_url)
        )
    }
}

/// The feed offer an `applyFeedOffer` picked, with what it needs to be applied and reported.
#[derive(Clone, Debug)]
pub struct FeedApply {
    /// The offer and its resolved URLs.
    pub update: crate::feed::client::Update,
    /// The device, as the check saw it (for the reports).
    pub device: crate::feed::client::DeviceIdentity,
}

/// One `checkForUpdate` or `applyFeedOffer` request.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    /// The feed's URL.
    pub feed_url: String,
    /// This device's id (rollout bucket, reports).
    pub device_id: String,
    /// The device token for the fleet service; `None` skips the check-in.
    pub token: Option<String>,
}

/// One `applyPayload` request, already parsed.
#[derive(Debug)]
pub struct ApplyRequest {
    /// Where the payload is.
    pub source: PayloadLocation,
    /// Where the payload starts inside the source (an OTA zip holds it stored).
    pub offset: u64,
    /// The payload's length; 0 when the caller did not say.
    pub size: u64,
    /// The `KEY=VALUE` pairs of payload_properties.txt, in the caller's order.
    pub headers: Vec<(String, String)>,
}

/// Where the payload bytes come from.
#[derive(Debug)]
pub enum PayloadLocation {
    /// `http://` or `https://`.
    Url(String),
    /// A file the caller opened and passed over Binder.
    File(File),
    /// The offer of a feed (`applyFeedOffer`), decrypted while streaming when it is encrypted.
    Feed(Box<FeedApply>),
}

/// The phase an update is in, as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyPhase {
    /// Fetching the payload and writing the target partitions.
    Downloading,
    /// Hashing what was written.
    Verifying,
    /// Verity/FEC, slot switch.
    Finalizing,
}

/// A progress report: `done` of `total` bytes of the current phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyProgress {
    /// The phase.
    pub phase: ApplyPhase,
    /// Bytes done in the phase.
    pub done: u64,
    /// 0 while unknown.
    pub total: u64,
}

/// The slots of an A/B device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot running now.
    pub current: u32,
    /// The slot the bootloader boots next.
    pub active: u32,
    /// One entry per slot, in slot order.
    pub slots: Vec<SlotState>,
}

/// The boot control state of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// The slot's number (0 is `_a`).
    pub slot: u32,
    /// `_a`, `_b`, ...
    pub suffix: String,
    /// Whether the slot is marked bootable.
    pub bootable: bool,
    /// Whether the slot has booted successfully (marked by `markBootSuccessful`).
    pub successful: bool,
    /// Boot attempts left before the bootloader gives up on the slot.
    pub tries_remaining: u32,
}

/// The lowest rollback index a slot may carry at one AVB rollback index location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollbackFloor {
    /// The AVB rollback index location.
    pub location: u32,
    /// The lowest rollback index allowed there.
    pub index: u64,
}

impl SlotInfo {
    /// The slot an update writes: the other one on a two-slot device.
    pub fn target(&self) -> Option<u32> {
        let count = u32::try_from(self.slots.len()).ok()?;
        (count >= 2).then(|| (self.current + 1) % count)
    }

    /// The suffix of `slot`, for messages.
    pub fn suffix(&self, slot: u32) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.slot == slot)
            .map(|s| s.suffix.as_str())
    }
}

/// Parses `KEY=VALUE` strings as `applyPayload` receives them. The key must be
/// non-empty; the value may hold further `=` (base64 hashes do).
pub fn parse_headers(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
                Ok((key.to_owned(), value.to_owned()))
            }
            _ => Err(crate::err!(
                MalformedPayload,
                "header {pair:?} is not KEY=VALUE"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_split_at_first_equals() {
        let pairs = vec!["FILE_HASH=abc==".to_owned(), "FILE_SIZE=12".to_owned()];
        let parsed = parse_headers(&pairs).unwrap();
        assert_eq!(parsed[0], ("FILE_HASH".to_owned(), "abc==".to_owned()));
        assert_eq!(parsed[1], ("FILE_SIZE".to_owned(), "12".to_owned()));
    }

    #[test]
    fn headers_without_key_are_refused() {
        for bad in ["=x", "NOEQUALS", "A KEY=x"] {
            let err = parse_headers(&[bad.to_owned()]).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::MalformedPayload, "{bad}");
        }
    }

    #[test]
    fn target_is_the_other_slot() {
        let slot = |n: u32, suffix: &str| SlotState {
            slot: n,
            suffix: suffix.to_owned(),
            bootable: true,
            successful: true,
            tries_remaining: 0,
        };
        let mut info = SlotInfo {
            current: 1,
            active: 1,
            slots: vec![slot(0, "_a"), slot(1, "_b")],
        };
        assert_eq!(info.target(), Some(0));
        assert_eq!(info.suffix(0), Some("_a"));
        info.slots.truncate(1);
        assert_eq!(info.target(), None);
    }
}
