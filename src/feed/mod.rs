//! The update feed: what a device maker publishes (a signed `feed.json` per model and channel,
//! payloads beside it, possibly encrypted) and how a device picks and fetches its update.
//!
//! Formats and decisions without I/O: [`model`] (the JSON), [`trust`] (signature, target,
//! freshness), [`choice`] (which offer, rollout buckets), [`crypt`] (encrypted payload chunks and
//! wrapped keys), [`report`] (report records and the retry schedule). Adapters: [`decrypt`]
//! (the engine's payload source over an encrypted payload), [`device_key`] (the device's
//! X25519 key; on Android in the platform keystore, `keystore_key`), [`client`] (fetching over
//! HTTP(S), the report queue on disk) and [`publish`]
//! (writing a feed directory, a host tool).

pub mod choice;
pub mod client;

pub mod crypt;
pub mod decrypt;
pub mod device_key;
// The device key in keystore2: on Android only with the platform's AIDL crates (the `keystore`
// feature), on hosts against the stand-in AIDL of platform_aidl/.
#[cfg(any(not(target_os = "android"), feature = "keystore"))]
pub mod keystore_key;
pub mod model;
// Publishing signs feeds and encrypts payloads: a host tool.
#[cfg(feature = "host-tools")]
pub mod publish;

pub mod report;
pub mod trust;
