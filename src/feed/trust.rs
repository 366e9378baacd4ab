//! Whether a fetched feed may be believed: its detached signature against the trusted payload
//! keys (15), its model and channel (17), and its age (16). Only [`verify`] makes a
//! [`VerifiedFeed`], so nothing downstream can pick an offer from an unchecked one.

use std::path::{Path, PathBuf};

use super::model::Feed;
use crate::error::{shown, Result};
use crate::payload::keys::TrustedKeys;
use crate::payload::signature::SignatureSet;
use crate::{bail, state_file};

/// A feed whose signature, target and freshness were checked.
#[derive(Debug)]
pub struct VerifiedFeed(Feed);

impl VerifiedFeed {
    /// The feed whose signature verified.
    pub fn feed(&self) -> &Feed {
        &self.0
    }
}

/// What the device knows that the feed must agree with.
#[derive(Clone, Debug, Default)]
pub struct Expectation<'a> {
    /// The device's model.
    pub model: &'a str,
    /// The device's channel.
    pub channel: &'a str,
    /// The running build's `ro.build.date.utc`.
    pub build_timestamp: Option<i64>,
    /// `generated_at` of the last feed accepted on this channel.
    pub last_accepted: Option<i64>,
}

/// Checks `bytes` (feed.json) against `signature` (feed.json.sig) and the expectation.
pub fn verify(
    bytes: &[u8],
    signature: &[u8],
    keys: &TrustedKeys,
    expect: &Expectation<'_>,
) -> Result<VerifiedFeed> {
    if keys.is_empty() {
        bail!(
            NoTrustedKey,
            "no trusted key to check the update feed's signature with"
        );
    }
    if !SignatureSet::single(signature.to_vec()).verifies_message(keys, bytes) {
        bail!(
            FeedInvalid,
            "the feed's signature does not verify with any trusted key (forged or altered feed)"
        );
    }
    let feed = Feed::parse(bytes)?;
    if feed.model != expect.model || feed.channel != expect.channel {
        bail!(
            FeedNotForDevice,
            "the feed is for {}/{}, this device is {}/{}",
            shown(&feed.model),
            shown(&feed.channel),
            shown(expect.model),
            shown(expect.channel)
        );
    }
    if let Some(built) = expect
        .build_timestamp
        .filter(|built| feed.generated_at < *built)
    {
        bail!(
            FeedStale,
            "the feed was generated at {}, before the running build ({built}): a replayed feed",
            feed.generated_at
        );
    }
    if let Some(last) = expect
        .last_accepted
        .filter(|last| feed.generated_at < *last)
    {
        bail!(
            FeedStale,
            "the feed was generated at {}, before the last feed accepted ({last}): a replayed feed",
            feed.generated_at
        );
    }
    Ok(VerifiedFeed(feed))
}

/// Where the last accepted feed's `generated_at` is kept, per channel.
pub struct AcceptedStore {
    path: PathBuf,
}

impl AcceptedStore {
    /// In `state_dir`; `channel` is a checked name (`[A-Za-z0-9._-]`).
    pub fn new(state_dir: &Path, channel: &str) -> Self {
        AcceptedStore {
            path: state_dir.join(format!("feed-{channel}.accepted")),
        }
    }

    /// The last accepted feed's `generated_at`; `None` before the first.
    pub fn load(&self) -> Result<Option<i64>> {
        let Some(bytes) = state_file::read(&self.path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| crate::err!(DeviceError, "{} holds no timestamp", self.path.display()))
    }

    /// Records an accepted feed; never moves backwards.
    pub fn record(&self, feed: &VerifiedFeed) -> Result<()> {
        let at = feed.feed().generated_at;
        if self.load()?.is_some_and(|last| last >= at) {
            return Ok(());
        }
        state_file::replace(&self.path, format!("{at}\n").as_bytes())
    }
}

// The tests sign feeds: the signer is a host tool.
#[cfg(all(test, feature = "host-tools"))]
pub(crate) mod tests {
    use super::*;
    use crate::feed::model::tests::sample;
    use crate::payload::signature::Signer;
    use crate::ErrorCode;

    /// One of the AOSP test keys in tests/data/avb (generating RSA keys is slow in debug).
    pub(crate) fn test_signer(name: &str) -> Signer {
        let pem = match name {
            "testkey_rsa2048.pem" => include_str!("../../tests/data/avb/testkey_rsa2048.pem"),
            "testkey_rsa4096.pem" => include_str!("../../tests/data/avb/testkey_rsa4096.pem"),
            _ => panic!("no test key {name}"),
        };
        Signer::from_pem(pem).unwrap()
    }

    fn signed(feed: &Feed, signer: &Signer) -> (Vec<u8>, Vec<u8>) {
        let bytes = feed.to_json().unwrap();
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .try_into()
            .unwrap();
        (bytes.clone(), signer.sign_digest(&digest).unwrap())
    }

    #[test]
    fn forged_foreign_and_stale_feeds_are_refused() {
        let signer = test_signer("testkey_rsa2048.pem");
        let mut keys = TrustedKeys::none();
        keys.add_bytes(signer.public_key_pem().unwrap().as_bytes())
            .unwrap();
        let feed = sample();
        let (bytes, sig) = signed(&feed, &signer);
        let expect = Expectation {
            model: "cf_x86_64_phone",
            channel: "stable",
            build_timestamp: Some(feed.generated_at - 10),
            last_accepted: Some(feed.generated_at),
        };
        assert_eq!(verify(&bytes, &sig, &keys, &expect).unwrap().feed(), &feed);

        let code = |bytes: &[u8], sig: &[u8], keys: &TrustedKeys, expect: &Expectation| {
            verify(bytes, sig, keys, expect).unwrap_err().code
        };
        let mut altered = bytes.clone();
        let at = altered.iter().position(|b| *b == b'1').unwrap();
        altered[at] = b'2';
        assert_eq!(code(&altered, &sig, &keys, &expect), ErrorCode::FeedInvalid);
        let other = test_signer("testkey_rsa4096.pem");
        let (_, forged) = signed(&feed, &other);
        assert_eq!(
            code(&bytes, &forged, &keys, &expect),
            ErrorCode::FeedInvalid
        );
        assert_eq!(
            code(&bytes, &sig, &TrustedKeys::none(), &expect),
            ErrorCode::NoTrustedKey
        );
        let elsewhere = Expectation {
            model: "other",
            ..expect.clone()
        };
        assert_eq!(
            code(&bytes, &sig, &keys, &elsewhere),
            ErrorCode::FeedNotForDevice
        );
        let newer_build = Expectation {
            build_timestamp: Some(feed.generated_at + 1),
            ..expect.clone()
        };
        assert_eq!(
            code(&bytes, &sig, &keys, &newer_build),
            ErrorCode::FeedStale
        );
        let seen_newer = Expectation {
            last_accepted: Some(feed.generated_at + 1),
            ..expect.clone()
        };
        assert_eq!(code(&bytes, &sig, &keys, &seen_newer), ErrorCode::FeedStale);
    }

    #[test]
    fn accepted_time_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = AcceptedStore::new(dir.path(), "stable");
        assert_eq!(store.load().unwrap(), None);
        let mut feed = sample();
        store.record(&VerifiedFeed(feed.clone())).unwrap();
        feed.generated_at -= 5;
        store.record(&VerifiedFeed(feed)).unwrap();
        assert_eq!(store.load().unwrap(), Some(1_733_450_000));
    }
}
