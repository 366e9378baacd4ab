//! Which offer of a verified feed this device takes: a delta made for its running build if one
//! is in its rollout, else a full payload in its rollout; the newest build among them; nothing
//! that is not newer than what runs.

use std::collections::BTreeMap;

use super::model::Offer;
use super::trust::VerifiedFeed;

/// What the device runs, and who it is.
#[derive(Clone, Debug, Default)]
pub struct Running<'a> {
    /// The running `ro.build.fingerprint`, when known.
    pub fingerprint: Option<&'a str>,
    /// `ro.build.date.utc`.
    pub timestamp: Option<i64>,
    /// The stable per-device id the rollout bucket is computed from.
    pub device_id: &'a str,
}

/// The device's bucket for `offer_id`, 0-99: the first 8 bytes (big-endian) of
/// SHA-256("abupdate-rollout\0" || offer id || "\0" || device id), modulo 100. Each offer
/// draws its own buckets, so the same devices are not always first.
pub fn rollout_bucket(offer_id: &str, device_id: &str) -> u8 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"abupdate-rollout\0");
    ctx.update(offer_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(device_id.as_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    // < 100, so the cast keeps the value.
    (u64::from_be_bytes(first) % 100) as u8
}

/// The offer for this device, if any. `rollout` overrides offers' percentages (the service's
/// current ones: an operator pauses a rollout with 0 without re-signing the feed).
pub fn choose<'a>(
    feed: &'a VerifiedFeed,
    running: &Running<'_>,
    rollout: &BTreeMap<String, u8>,
) -> Option<&'a Offer> {
    let eligible = |offer: &&'a Offer| {
        let percent = rollout
            .get(&offer.id)
            .copied()
            .unwrap_or(offer.rollout_percent)
            .min(100);
        let newer = running
            .timestamp
            .map_or(true, |now| offer.build.timestamp > now);
        let other_build = running.fingerprint != Some(offer.build.fingerprint.as_str());
        newer && other_build && rollout_bucket(&offer.id, running.device_id) < percent
    };
    let newest = |offers: Vec<&'a Offer>| offers.into_iter().max_by_key(|o| o.build.timestamp);
    let offers = &feed.feed().offers;
    let deltas = offers
        .iter()
        .filter(|o| {
            o.source_fingerprint.is_some() && o.source_fingerprint.as_deref() == running.fingerprint
        })
        .filter(eligible)
        .collect();
    newest(deltas).or_else(|| {
        newest(
            offers
                .iter()
                .filter(|o| o.source_fingerprint.is_none())
                .filter(eligible)
                .collect(),
        )
    })
}

// The tests sign feeds: the signer is a host tool.
#[cfg(all(test, feature = "host-tools"))]
mod tests {
    use super::*;
    use crate::feed::model::tests::sample;
    use crate::feed::trust::{verify, Expectation};

    #[test]
    fn bucket_is_stable_and_spread() {
        assert_eq!(rollout_bucket("a", "dev1"), rollout_bucket("a", "dev1"));
        let buckets: Vec<u8> = (0..1000)
            .map(|i| rollout_bucket("offer", &format!("device-{i}")))
            .collect();
        let under_half = buckets.iter().filter(|b| **b < 50).count();
        assert!((400..600).contains(&under_half), "{under_half}");
        // The value the contract defines, computed independently.
        let digest = ring::digest::digest(&ring::digest::SHA256, b"abupdate-rollout\0o1\0d1");
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        assert_eq!(
            u64::from(rollout_bucket("o1", "d1")),
            u64::from_be_bytes(first) % 100
        );
    }

    fn feed_with(offers: Vec<Offer>) -> VerifiedFeed {
        let signer = crate::feed::trust::tests::test_signer("testkey_rsa2048.pem");
        let mut keys = crate::payload::keys::TrustedKeys::none();
        keys.add_bytes(signer.public_key_pem().unwrap().as_bytes())
            .unwrap();
        let mut feed = sample();
        feed.offers = offers;
        let bytes = feed.to_json().unwrap();
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .try_into()
            .unwrap();
        let sig = signer.sign_digest(&digest).unwrap();
        let expect = Expectation {
            model: &feed.model,
            channel: &feed.channel,
            ..Expectation::default()
        };
        verify(&bytes, &sig, &keys, &expect).unwrap()
    }

    #[test]
    fn delta_for_the_running_build_else_newest_full() {
        let base = sample().offers[0].clone();
        let offer = |id: &str, ts: i64, source: Option<&str>, percent: u8| Offer {
            id: id.into(),
            build: crate::feed::model::TargetBuild {
                fingerprint: format!("fp-{id}"),
                timestamp: ts,
                ..base.build.clone()
            },
            source_fingerprint: source.map(str::to_owned),
            rollout_percent: percent,
            ..base.clone()
        };
        let feed = feed_with(vec![
            offer("full2", 200, None, 100),
            offer("full3", 300, None, 100),
            offer("delta", 300, Some("fp-v1"), 100),
            offer("paused", 400, None, 0),
        ]);
        let none = BTreeMap::new();
        let pick = |fp: &str, ts: i64, rollout: &BTreeMap<String, u8>| {
            let running = Running {
                fingerprint: Some(fp),
                timestamp: Some(ts),
                device_id: "dev",
            };
            choose(&feed, &running, rollout).map(|o| o.id.clone())
        };
        assert_eq!(pick("fp-v1", 100, &none).as_deref(), Some("delta"));
        assert_eq!(pick("fp-other", 100, &none).as_deref(), Some("full3"));
        assert_eq!(pick("fp-full3", 300, &none), None);
        // The service's percentages win over the feed's.
        let overrides = BTreeMap::from([("paused".to_owned(), 100), ("delta".to_owned(), 0)]);
        assert_eq!(pick("fp-v1", 100, &overrides).as_deref(), Some("paused"));
        // A partial rollout takes exactly the devices below it.
        let half = feed_with(vec![offer("half", 200, None, 50)]);
        for i in 0..50 {
            let id = format!("device-{i}");
            let running = Running {
                fingerprint: None,
                timestamp: Some(100),
                device_id: &id,
            };
            let got = choose(&half, &running, &none).is_some();
            assert_eq!(got, rollout_bucket("half", &id) < 50);
        }
    }
}
