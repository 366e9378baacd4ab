//! The feed directory as the server sees it: `<model>/<channel>/feed.json` (the signed document
//! the `abupdate publish` command writes). The server does not check the signature (the
//! directory is the operator's own); it reads the offers to know which rollouts exist and
//! applies the device's offer rule so the dashboard can count devices offered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Deserialize)]
pub struct Feed {
    pub model: String,
    pub channel: String,
    pub offers: Vec<Offer>,
}

#[derive(Debug, Deserialize)]
pub struct Offer {
    pub id: String,
    pub build: Build,
    pub source_fingerprint: Option<String>,
    pub rollout_percent: u8,
}

#[derive(Debug, Deserialize)]
pub struct Build {
    pub fingerprint: String,
    pub timestamp: i64,
}

/// Model, channel and offer names: what may appear in a feed path or a URL segment.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The device's rollout bucket for an offer (SERVER_API.md): the first 8 bytes of
/// SHA-256("abupdate-rollout\0" || offer id || "\0" || device id), big-endian, mod 100.
pub fn bucket(offer_id: &str, device_id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"abupdate-rollout\0");
    h.update(offer_id.as_bytes());
    h.update(b"\0");
    h.update(device_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % 100
}

/// The offer a device running `running_fp` (built at `running_ts`) takes: a delta from its
/// build if one is in its rollout, else a full offer in its rollout; the newest build wins;
/// nothing if no offer is newer than (and other than) the running build. This is the device's
/// rule (src/feed/choice.rs on the device side). `percent` gives the server's
/// (overriding) rollout percentage per offer id.
pub fn choose<'a>(
    feed: &'a Feed,
    percent: impl Fn(&Offer) -> i64,
    device_id: &str,
    running_fp: &str,
    running_ts: i64,
) -> Option<&'a Offer> {
    let eligible = || {
        feed.offers.iter().filter(|o| {
            o.build.timestamp > running_ts
                && o.build.fingerprint != running_fp
                && i64::try_from(bucket(&o.id, device_id)).is_ok_and(|b| b < percent(o))
        })
    };
    eligible()
        .filter(|o| o.source_fingerprint.as_deref() == Some(running_fp))
        .max_by_key(|o| o.build.timestamp)
        .or_else(|| {
            eligible()
                .filter(|o| o.source_fingerprint.is_none())
                .max_by_key(|o| o.build.timestamp)
        })
}

struct Cached {
    modified: SystemTime,
    len: u64,
    feed: Arc<Feed>,
}

/// Parsed feeds, re-read when the file's modification time or size changes (`abupdate publish`
/// rewrites it in place).
pub struct FeedCache {
    dir: PathBuf,
    feeds: Mutex<HashMap<(String, String), Arc<Cached>>>,
}

/// A feed and whether it was (re)read just now (the caller then syncs its offers to the DB).
pub struct Loaded {
    pub feed: Arc<Feed>,
    pub fresh: bool,
}

impl FeedCache {
    pub fn new(dir: PathBuf) -> Self {
        FeedCache {
            dir,
            feeds: Mutex::new(HashMap::new()),
        }
    }

    /// The feed for a model and channel; `Ok(None)` if there is none.
    pub async fn get(&self, model: &str, channel: &str) -> anyhow::Result<Option<Loaded>> {
        if !valid_name(model) || !valid_name(channel) {
            return Ok(None);
        }
        let path = self.dir.join(model).join(channel).join("feed.json");
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        let modified = meta.modified()?;
        let key = (model.to_string(), channel.to_string());
        if let Some(c) = self.lock().get(&key) {
            if c.modified == modified && c.len == meta.len() {
                return Ok(Some(Loaded {
                    feed: c.feed.clone(),
                    fresh: false,
                }));
            }
        }
        let bytes = tokio::fs::read(&path).await?;
        let feed: Feed = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if feed.model != model || feed.channel != channel {
            anyhow::bail!(
                "{}: names model {:?} channel {:?}",
                path.display(),
                feed.model,
                feed.channel
            );
        }
        if let Some(o) = feed
            .offers
            .iter()
            .find(|o| !valid_name(&o.id) || o.rollout_percent > 100)
        {
            anyhow::bail!(
                "{}: offer {:?} has a bad id or rollout_percent",
                path.display(),
                o.id
            );
        }
        let feed = Arc::new(feed);
        let entry = Arc::new(Cached {
            modified,
            len: meta.len(),
            feed: feed.clone(),
        });
        self.lock().insert(key, entry);
        Ok(Some(Loaded { feed, fresh: true }))
    }

    /// Drops a cached feed so the next request reads it again.
    pub fn forget(&self, model: &str, channel: &str) {
        self.lock()
            .remove(&(model.to_string(), channel.to_string()));
    }

    /// Every feed in the directory (two levels: model, channel).
    pub async fn scan(&self) -> anyhow::Result<Vec<Loaded>> {
        let mut out = Vec::new();
        let mut models = match tokio::fs::read_dir(&self.dir).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(m) = models.next_entry().await? {
            let Ok(model) = m.file_name().into_string() else {
                continue;
            };
            if !m.file_type().await?.is_dir() {
                continue;
            }
            let mut channels = tokio::fs::read_dir(m.path()).await?;
            while let Some(c) = channels.next_entry().await? {
                let Ok(channel) = c.file_name().into_string() else {
                    continue;
                };
                if let Some(loaded) = self.get(&model, &channel).await? {
                    out.push(loaded);
                }
            }
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Cached>>> {
        // A poisoned lock only means another request panicked mid-insert of a whole entry.
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, ts: i64, source: Option<&str>, pct: u8) -> Offer {
        Offer {
            id: id.into(),
            build: Build {
                fingerprint: format!("fp-{id}"),
                timestamp: ts,
            },
            source_fingerprint: source.map(Into::into),
            rollout_percent: pct,
        }
    }

    #[test]
    fn bucket_is_stable_and_spread() {
        // Independent computation of the contract's formula for one pair.
        let mut h = Sha256::new();
        h.update(b"abupdate-rollout\0o1\0dev-7");
        let d = h.finalize();
        let want = u64::from_be_bytes(d[..8].try_into().unwrap()) % 100;
        assert_eq!(bucket("o1", "dev-7"), want);
        let mut seen = [0u32; 100];
        for i in 0..10_000 {
            seen[bucket("o1", &format!("dev-{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn delta_beats_full_and_rollout_gates() {
        let feed = Feed {
            model: "m".into(),
            channel: "c".into(),
            offers: vec![
                offer("full", 200, None, 100),
                offer("delta", 200, Some("fp-old"), 100),
            ],
        };
        let all = |o: &Offer| i64::from(o.rollout_percent);
        assert_eq!(
            choose(&feed, all, "d", "fp-old", 100).map(|o| o.id.as_str()),
            Some("delta")
        );
        assert_eq!(
            choose(&feed, all, "d", "fp-other", 100).map(|o| o.id.as_str()),
            Some("full")
        );
        assert!(
            choose(&feed, all, "d", "fp-old", 200).is_none(),
            "nothing newer than running"
        );
        let paused = |_: &Offer| 0;
        assert!(choose(&feed, paused, "d", "fp-old", 100).is_none());
        // At 50% about half the devices are in.
        let half = |_: &Offer| 50;
        let n = (0..1000)
            .filter(|i| choose(&feed, half, &format!("d{i}"), "x", 0).is_some())
            .count();
        assert!((400..600).contains(&n), "{n}");
    }
}
