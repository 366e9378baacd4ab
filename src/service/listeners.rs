//! Status listeners (the Binder callbacks), their cap, and the throttle in front of them.
//!
//! An engine reports progress for every operation, thousands per update; listeners get
//! only useful changes: every state or error change, and progress once it moved by 1%
//! or, while bytes are still being written, once a second.
//!
//! Any app may register a callback (reading the status is open to everyone), and each one
//! costs the service memory and a oneway call per change: a UID may hold at most
//! [`MAX_PER_UID`] and the service at most [`MAX_TOTAL`]; beyond that a registration is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{ErrorCode, Result};
use crate::service::status::Status;

/// Callbacks one UID may have registered at once.
pub const MAX_PER_UID: usize = 32;
/// Callbacks the service keeps at once.
pub const MAX_TOTAL: usize = 256;

/// Something that wants to hear about status changes: a registered Binder callback.
/// Calls must not block for long (Binder callbacks are oneway).
pub trait Listener: Send + Sync {
    /// The status changed. `Err(Gone)` drops the listener.
    fn on_status(&self, status: &Status) -> Result<(), Gone>;

    /// An update ended with `code` (`Ok` when the target slot is ready).
    fn on_complete(&self, code: ErrorCode, message: &str) -> Result<(), Gone>;
}

/// The listener cannot be reached any more (its process died).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Names a registered listener, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u64);

/// The registered listeners and what they were last told.
///
/// Each change the service publishes carries a sequence number, taken when the change
/// was made. Deliveries happen outside the service's state lock (a slow client must not
/// stall `getStatus`), so a change may arrive here after a newer one: it is then stale
/// and dropped, and a listener greeted with a newer status skips older ones.
#[derive(Default)]
pub(crate) struct Listeners {
    entries: Vec<Entry>,
    /// The newest change forwarded.
    last_seq: u64,
    throttle: Throttle,
    registry: Registry,
}

/// Who holds which listener, shared between the service's Binder threads (which reserve a
/// place before the listener reaches the delivery thread) and the delivery thread (which
/// drops unreachable listeners).
#[derive(Clone, Default)]
pub(crate) struct Registry(Arc<Mutex<HashMap<ListenerId, u32>>>);

impl Registry {
    /// Takes a place for listener `id` of `uid`, unless `uid` or the service has its fill.
    pub(crate) fn reserve(&self, id: ListenerId, uid: u32) -> Result<()> {
        let mut places = self.lock();
        let held = places.values().filter(|&&u| u == uid).count();
        if held >= MAX_PER_UID {
            crate::bail!(
                Busy,
                "uid {uid} has {held} status callbacks registered, the most one uid may have"
            );
        }
        if places.len() >= MAX_TOTAL {
            crate::bail!(
                Busy,
                "{} status callbacks are registered, the most the service keeps",
                places.len()
            );
        }
        places.insert(id, uid);
        Ok(())
    }

    /// Frees listener `id`'s place (no-op if it has none).
    pub(crate) fn release(&self, id: ListenerId) {
        self.lock().remove(&id);
    }

    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ListenerId, u32>> {
        // Every update under this lock is one map operation.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Entry {
    id: ListenerId,
    listener: Arc<dyn Listener>,
    /// The change this listener was greeted with; it gets only newer ones.
    greeted: u64,
}

/// The smallest progress step worth a callback.
const PROGRESS_STEP: f32 = 0.01;
/// How often a slow but moving update is reported anyway.
const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Throttle {
    last: Option<(Status, Instant)>,
}

impl Listeners {
    /// Registers a listener that is about to be greeted with change `seq`.
    pub(crate) fn insert(&mut self, id: ListenerId, listener: Arc<dyn Listener>, seq: u64) {
        self.entries.push(Entry {
            id,
            listener,
            greeted: seq,
        });
    }

    #[cfg(test)]
    fn add(&mut self, listener: Arc<dyn Listener>, seq: u64) -> ListenerId {
        let id = ListenerId(self.entries.len() as u64 + 1000);
        self.registry.reserve(id, 0).unwrap();
        self.insert(id, listener, seq);
        id
    }

    /// Removes a listener; false if it was not registered (any more).
    pub(crate) fn remove(&mut self, id: ListenerId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.registry.release(id);
        self.entries.len() != before
    }

    /// Who holds the listeners, shared with other threads.
    pub(crate) fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Tells one new listener the current status at once.
    pub(crate) fn greet(&mut self, id: ListenerId, status: &Status) {
        let gone = self
            .entries
            .iter()
            .find(|e| e.id == id)
            .is_some_and(|e| e.listener.on_status(status).is_err());
        if gone {
            self.remove(id);
        }
    }

    /// Whether change `seq` should be forwarded: it is not stale, and it is a useful
    /// change (or `force`d). If so it counts as forwarded from now on.
    pub(crate) fn admit(&mut self, seq: u64, status: &Status, now: Instant, force: bool) -> bool {
        if seq <= self.last_seq {
            return false;
        }
        if !self.throttle.admits(status, now) && !force {
            return false;
        }
        self.throttle.last = Some((status.clone(), now));
        self.last_seq = seq;
        true
    }

    /// Forwards change `seq` to every listener not greeted with a newer one.
    pub(crate) fn send(&mut self, seq: u64, status: &Status) {
        self.deliver(|e| e.greeted >= seq || e.listener.on_status(status).is_ok());
    }

    /// Forwards the end of an update to every listener.
    pub(crate) fn complete(&mut self, code: ErrorCode, message: &str) {
        self.deliver(|e| e.listener.on_complete(code, message).is_ok());
    }

    fn deliver(&mut self, keep: impl Fn(&Entry) -> bool) {
        let before = self.entries.len();
        let registry = &self.registry;
        self.entries.retain(|e| {
            let kept = keep(e);
            if !kept {
                registry.release(e.id);
            }
            kept
        });
        let dropped = before - self.entries.len();
        if dropped > 0 {
            log::info!("dropped {dropped} unreachable status listener(s)");
        }
    }
}

impl Throttle {
    fn admits(&self, status: &Status, now: Instant) -> bool {
        match &self.last {
            None => true,
            Some((last, at)) => {
                last.state != status.state
                    || last.error_code != status.error_code
                    || last.target_slot != status.target_slot
                    || last.total != status.total
                    || (status.progress() - last.progress()).abs() >= PROGRESS_STEP
                    || (status.done != last.done && now.duration_since(*at) >= HEARTBEAT)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::status::State;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<String>>,
        gone: bool,
    }

    impl Listener for Recorder {
        fn on_status(&self, status: &Status) -> Result<(), Gone> {
            self.seen
                .lock()
                .unwrap()
                .push(format!("{} {}", status.state, status.done));
            if self.gone {
                Err(Gone)
            } else {
                Ok(())
            }
        }

        fn on_complete(&self, code: ErrorCode, _message: &str) -> Result<(), Gone> {
            self.seen
                .lock()
                .unwrap()
                .push(format!("complete {}", code.name()));
            if self.gone {
                Err(Gone)
            } else {
                Ok(())
            }
        }
    }

    fn downloading(done: u64) -> Status {
        Status {
            state: State::Downloading,
            done,
            total: 1000,
            ..Status::default()
        }
    }

    /// Admits and sends like the service does.
    fn publish(listeners: &mut Listeners, seq: u64, status: &Status, now: Instant) -> bool {
        let admitted = listeners.admit(seq, status, now, false);
        if admitted {
            listeners.send(seq, status);
        }
        admitted
    }

    #[test]
    fn small_steps_are_held_back_until_a_second_passed() {
        let mut listeners = Listeners::default();
        let rec = Arc::new(Recorder::default());
        listeners.add(rec.clone(), 0);
        let t0 = Instant::now();
        let mut seq = 0;
        let mut offer = |status: Status, at: Instant| {
            seq += 1;
            publish(&mut listeners, seq, &status, at)
        };
        assert!(offer(downloading(0), t0));
        assert!(!offer(downloading(5), t0), "0.5% is no useful step");
        assert!(offer(downloading(10), t0), "1% is");
        assert!(!offer(downloading(11), t0 + Duration::from_millis(500)));
        assert!(
            offer(downloading(12), t0 + Duration::from_secs(2)),
            "heartbeat"
        );
        assert!(
            !offer(downloading(12), t0 + Duration::from_secs(9)),
            "no motion"
        );
        let verifying = Status {
            state: State::Verifying,
            ..downloading(12)
        };
        assert!(
            offer(verifying, t0 + Duration::from_secs(9)),
            "state change"
        );
        assert_eq!(
            *rec.seen.lock().unwrap(),
            [
                "DOWNLOADING 0",
                "DOWNLOADING 10",
                "DOWNLOADING 12",
                "VERIFYING 12"
            ]
        );
    }

    #[test]
    fn registrations_are_capped_per_uid_and_in_all() {
        let registry = Registry::default();
        for n in 0..MAX_PER_UID as u64 {
            registry.reserve(ListenerId(n), 10_001).unwrap();
        }
        let refused = registry.reserve(ListenerId(999_999), 10_001).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        assert!(refused.message.contains("uid 10001"), "{refused}");
        // Another UID still gets a place, and a freed place is free again.
        registry.reserve(ListenerId(1_000_000), 10_002).unwrap();
        registry.release(ListenerId(0));
        registry.reserve(ListenerId(999_999), 10_001).unwrap();
        // The service as a whole is capped too, however many UIDs ask.
        let mut id = 2_000_000;
        for uid in 20_000.. {
            id += 1;
            if registry.reserve(ListenerId(id), uid).is_err() {
                break;
            }
        }
        assert_eq!(registry.count(), MAX_TOTAL);
    }

    #[test]
    fn stale_changes_are_dropped() {
        let mut listeners = Listeners::default();
        let old = Arc::new(Recorder::default());
        listeners.add(old.clone(), 0);
        let now = Instant::now();
        assert!(publish(&mut listeners, 2, &downloading(500), now));
        assert!(
            !publish(&mut listeners, 1, &downloading(100), now),
            "older than the last"
        );
        // Greeted with change 4: change 3 (still on its way) must not reach it.
        let new = Arc::new(Recorder::default());
        listeners.add(new.clone(), 4);
        assert!(publish(&mut listeners, 3, &downloading(700), now));
        assert_eq!(
            *old.seen.lock().unwrap(),
            ["DOWNLOADING 500", "DOWNLOADING 700"]
        );
        assert!(new.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn unreachable_listeners_are_dropped() {
        let mut listeners = Listeners::default();
        let alive = Arc::new(Recorder::default());
        let dead = Arc::new(Recorder {
            gone: true,
            ..Recorder::default()
        });
        listeners.add(alive.clone(), 0);
        let dead_id = listeners.add(dead.clone(), 0);
        let registry = listeners.registry();
        assert!(listeners.admit(1, &downloading(1000), Instant::now(), true));
        listeners.send(1, &downloading(1000));
        listeners.complete(ErrorCode::Ok, "");
        assert_eq!(registry.count(), 1);
        assert!(!listeners.remove(dead_id));
        assert_eq!(
            *alive.seen.lock().unwrap(),
            ["DOWNLOADING 1000", "complete OK"]
        );
        assert_eq!(
            dead.seen.lock().unwrap().len(),
            1,
            "nothing after the failed delivery"
        );
    }
}
