//! `feed.json`: what it holds, and the one parser that turns its bytes into checked types.
//!
//! The JSON shape is fixed by the server contract (README, "Update feed"). Everything a device
//! later relies on is checked here once: format version, sizes and counts within limits, ids,
//! URLs and properties well formed, a rollout percentage of at most 100, an encryption scheme
//! this build knows. A [`Feed`] that exists is one that passed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{shown, Result};
use crate::payload::properties::PayloadProperties;
use crate::{bail, err};

/// The one format this build reads and writes.
pub const FORMAT: u32 = 1;
/// The scheme of encrypted payloads (see [`crate::feed::crypt`]).
pub const ENCRYPTION_SCHEME: &str = "abupdate-aes256gcm-x25519-v1";
/// The most bytes of `feed.json` a device fetches.
pub const MAX_FEED_BYTES: u64 = 1 << 20;
const MAX_OFFERS: usize = 256;
const MAX_TEXT: usize = 2048;
const MAX_NOTES: usize = 16 * 1024;
const MAX_PROPERTIES: usize = 32;
/// Encryption chunks: large enough to cost little, small enough to hold one in memory.
pub const MIN_CHUNK: u32 = 4096;
/// The largest encryption chunk, in bytes.
pub const MAX_CHUNK: u32 = 4 << 20;

/// One model's and channel's `feed.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// Format version: [`FORMAT`].
    pub format: u32,
    /// The device model the offers are for (`ro.product.name`).
    pub model: String,
    /// The update channel (`stable`, `beta`, ...).
    pub channel: String,
    /// Unix seconds.
    pub generated_at: i64,
    /// Where devices send their reports (the server's report endpoint), if anywhere.
    #[serde(default)]
    pub report_url: Option<String>,
    /// Where devices check in for their rollout percentages (needs a device token), if anywhere.
    #[serde(default)]
    pub checkin_url: Option<String>,
    /// The updates offered.
    pub offers: Vec<Offer>,
}

/// One update offered: a payload and the build it installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Unique within the feed: `[A-Za-z0-9._-]{1,64}`.
    pub id: String,
    /// The build the payload installs.
    pub build: TargetBuild,
    /// `None`: a full payload for any running build; else a delta for exactly this build.
    pub source_fingerprint: Option<String>,
    /// Where the payload is, and how to apply it.
    pub payload: PayloadRef,
    /// The share of devices (0-100) that take it; see the rollout rule in the README.
    pub rollout_percent: u8,
    /// Release notes shown to the user.
    #[serde(default)]
    pub notes: String,
}

/// The build an offer installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBuild {
    /// Its `ro.build.fingerprint`.
    pub fingerprint: String,
    /// The build's `ro.build.date.utc`.
    pub timestamp: i64,
    /// Its `ro.build.version.security_patch`, if given.
    #[serde(default)]
    pub security_patch: Option<String>,
    /// AVB rollback index location -> index.
    #[serde(default)]
    pub rollback_indexes: BTreeMap<String, u64>,
}

/// The payload of an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadRef {
    /// Absolute, or relative to the feed's URL.
    pub url: String,
    /// Where the payload starts in that file (a payload inside an OTA zip); 0 when encrypted.
    pub offset: u64,
    /// The payload's (plaintext) size: `FILE_SIZE`.
    pub size: u64,
    /// `payload_properties.txt` lines.
    pub properties: Vec<String>,
    /// How the payload is encrypted, if it is.
    pub encryption: Option<Encryption>,
}

/// An offer's payload encryption.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// Must be [`ENCRYPTION_SCHEME`].
    pub scheme: String,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// The wrapped content keys, absolute or relative to the feed's URL.
    pub key_url: String,
}

impl Feed {
    /// Parses and checks `feed.json` (15 when it is not a feed this build can use).
    pub fn parse(bytes: &[u8]) -> Result<Feed> {
        if bytes.len() as u64 > MAX_FEED_BYTES {
            bail!(
                FeedInvalid,
                "feed of {} bytes exceeds {MAX_FEED_BYTES}",
                bytes.len()
            );
        }
        let feed: Feed = serde_json::from_slice(bytes)
            .map_err(|e| err!(FeedInvalid, "feed.json is not a valid feed: {e}"))?;
        feed.check()?;
        Ok(feed)
    }

    /// The feed as published: pretty JSON, checked first.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        self.check()?;
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| err!(FeedInvalid, "serialising the feed: {e}"))?;
        out.push(b'\n');
        Ok(out)
    }

    fn check(&self) -> Result<()> {
        if self.format != FORMAT {
            bail!(FeedInvalid, "feed format {} is not {FORMAT}", self.format);
        }
        name("model", &self.model)?;
        name("channel", &self.channel)?;
        for url in [&self.report_url, &self.checkin_url].into_iter().flatten() {
            text("service URL", url, MAX_TEXT)?;
        }
        if self.offers.len() > MAX_OFFERS {
            bail!(
                FeedInvalid,
                "{} offers exceed {MAX_OFFERS}",
                self.offers.len()
            );
        }
        for (i, offer) in self.offers.iter().enumerate() {
            offer.check()?;
            if self.offers[..i].iter().any(|o| o.id == offer.id) {
                bail!(FeedInvalid, "offer id {} appears twice", shown(&offer.id));
            }
        }
        Ok(())
    }
}

impl Offer {
    fn check(&self) -> Result<()> {
        name("offer id", &self.id)?;
        text("fingerprint", &self.build.fingerprint, MAX_TEXT)?;
        if let Some(source) = &self.source_fingerprint {
            text("source fingerprint", source, MAX_TEXT)?;
        }
        if let Some(spl) = &self.build.security_patch {
            text("security patch", spl, 32)?;
        }
        for location in self.build.rollback_indexes.keys() {
            location
                .parse::<u32>()
                .map_err(|_| err!(FeedInvalid, "rollback index location {}", shown(location)))?;
        }
        if self.rollout_percent > 100 {
            bail!(
                FeedInvalid,
                "offer {}: rollout {}% > 100",
                self.id,
                self.rollout_percent
            );
        }
        if self.notes.len() > MAX_NOTES {
            bail!(
                FeedInvalid,
                "offer {}: notes exceed {MAX_NOTES} bytes",
                self.id
            );
        }
        let payload = &self.payload;
        text("payload URL", &payload.url, MAX_TEXT)?;
        if payload.offset.checked_add(payload.size).is_none() || payload.size == 0 {
            bail!(FeedInvalid, "offer {}: bad payload offset or size", self.id);
        }
        self.properties()?;
        if let Some(enc) = &payload.encryption {
            if enc.scheme != ENCRYPTION_SCHEME {
                bail!(
                    FeedInvalid,
                    "unknown encryption scheme {}",
                    shown(&enc.scheme)
                );
            }
            if !(MIN_CHUNK..=MAX_CHUNK).contains(&enc.chunk_size) {
                bail!(FeedInvalid, "chunk size {} out of range", enc.chunk_size);
            }
            if payload.offset != 0 {
                bail!(FeedInvalid, "an encrypted payload starts its file");
            }
            text("key URL", &enc.key_url, MAX_TEXT)?;
        }
        Ok(())
    }

    /// The payload's properties, parsed; `FILE_SIZE`, when given, must be the offer's size.
    pub fn properties(&self) -> Result<PayloadProperties> {
        if self.payload.properties.len() > MAX_PROPERTIES {
            bail!(FeedInvalid, "offer {}: too many properties", self.id);
        }
        let mut props = PayloadProperties::new();
        for pair in &self.payload.properties {
            props
                .set_pair(pair)
                .map_err(|e| err!(FeedInvalid, "offer {}: {}", self.id, e.message))?;
        }
        if props
            .file_size
            .is_some_and(|size| size != self.payload.size)
        {
            bail!(
                FeedInvalid,
                "offer {}: FILE_SIZE differs from its size",
                self.id
            );
        }
        Ok(props)
    }

    /// Whether the offer is a delta (it names a source build).
    pub fn is_delta(&self) -> bool {
        self.source_fingerprint.is_some()
    }
}

/// Ids, models, channels: `[A-Za-z0-9._-]{1,64}`, safe in paths, URLs and logs.
fn name(what: &str, value: &str) -> Result<()> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !value.starts_with('.');
    if !ok {
        bail!(
            FeedInvalid,
            "{what} {} is not [A-Za-z0-9._-]{{1,64}}",
            shown(value)
        );
    }
    Ok(())
}

/// Printable ASCII without spaces, non-empty, at most `max` bytes.
fn text(what: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            FeedInvalid,
            "{what} {} is not printable ASCII of 1-{max} bytes",
            shown(value)
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Feed {
        Feed {
            format: FORMAT,
            model: "cf_x86_64_phone".into(),
            channel: "stable".into(),
            generated_at: 1_733_450_000,
            report_url: Some("https://ota.example/v1/report".into()),
            checkin_url: None,
            offers: vec![Offer {
                id: "full-v2".into(),
                build: TargetBuild {
                    fingerprint: "vendor/cf/cf:15/V2/2:user/release-keys".into(),
                    timestamp: 1_733_400_000,
                    security_patch: Some("2026-12-05".into()),
                    rollback_indexes: BTreeMap::from([("0".into(), 2)]),
                },
                source_fingerprint: None,
                payload: PayloadRef {
                    url: "payload.bin".into(),
                    offset: 0,
                    size: 1000,
                    properties: vec!["FILE_SIZE=1000".into()],
                    encryption: None,
                },
                rollout_percent: 100,
                notes: "fixes".into(),
            }],
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_cannot_use() {
        let feed = sample();
        let json = feed.to_json().unwrap();
        assert_eq!(Feed::parse(&json).unwrap(), feed);

        let refused = |edit: &dyn Fn(&mut Feed)| {
            let mut bad = sample();
            edit(&mut bad);
            let json = serde_json::to_vec(&bad).unwrap();
            Feed::parse(&json).unwrap_err()
        };
        for e in [
            refused(&|f| f.format = 2),
            refused(&|f| f.model = "../x".into()),
            refused(&|f| f.offers[0].rollout_percent = 101),
            refused(&|f| f.offers.push(f.offers[0].clone())),
            refused(&|f| f.offers[0].payload.properties = vec!["FILE_SIZE=7".into()]),
            refused(&|f| f.offers[0].payload.url = "a b".into()),
            refused(&|f| {
                f.offers[0].payload.encryption = Some(Encryption {
                    scheme: "rot13".into(),
                    chunk_size: 65536,
                    key_url: "k".into(),
                })
            }),
        ] {
            assert_eq!(e.code, crate::ErrorCode::FeedInvalid, "{e}");
        }
        let unknown =
            br#"{"format":1,"model":"m","channel":"c","generated_at":1,"offers":[],"x":1}"#;
        assert_eq!(
            Feed::parse(unknown).unwrap_err().code,
            crate::ErrorCode::FeedInvalid
        );
        assert!(Feed::parse(b"[]").is_err());
    }
}
