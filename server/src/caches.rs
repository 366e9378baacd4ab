//! Small in-memory caches that take two database reads off every check-in: token → device
//! (tokens are never reissued to another device, so a hit stays true) and the rollout
//! percentages of a model and channel for one second (an operator's change on this instance
//! clears them at once; other instances behind the same database see it within a second).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const PERCENTS_TTL: Duration = Duration::from_secs(1);
/// Past this many devices the token cache starts over (memory stays bounded).
const MAX_DEVICES: usize = 1_000_000;

type Percents = Arc<HashMap<String, i64>>;

#[derive(Default)]
pub struct Caches {
    devices: Mutex<HashMap<String, String>>,
    percents: Mutex<HashMap<(String, String), (Instant, Percents)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Entries are inserted whole: a panic elsewhere cannot leave one half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Caches {
    pub fn device(&self, token_hash: &str) -> Option<String> {
        lock(&self.devices).get(token_hash).cloned()
    }

    pub fn remember_device(&self, token_hash: String, device: &str) {
        let mut map = lock(&self.devices);
        if map.len() >= MAX_DEVICES {
            map.clear();
        }
        map.insert(token_hash, device.to_string());
    }

    pub fn percents(&self, model: &str, channel: &str) -> Option<Percents> {
        let map = lock(&self.percents);
        let (at, p) = map.get(&(model.to_string(), channel.to_string()))?;
        (at.elapsed() < PERCENTS_TTL).then(|| p.clone())
    }

    pub fn remember_percents(&self, model: &str, channel: &str, p: Percents) {
        lock(&self.percents).insert(
            (model.to_string(), channel.to_string()),
            (Instant::now(), p),
        );
    }

    pub fn forget_percents(&self) {
        lock(&self.percents).clear();
    }
}
