//! Status listeners (the Binder callbacks) and the throttle in front of them.
//!
//! An engine reports progress for every operation, thousands per update; listeners get
//! only useful changes: every state or error change, and progress once it moved by 1%
//! or, while bytes are still being written, once a second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::ErrorCode;
use crate::service::status::Status;

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
    count: Arc<AtomicUsize>,
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
        self.count.store(self.entries.len(), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn add(&mut self, listener: Arc<dyn Listener>, seq: u64) -> ListenerId {
        let id = ListenerId(self.entries.len() as u64 + 1000);
        self.insert(id, listener, seq);
        id
    }

    /// Removes a listener; false if it was not registered (any more).
    pub(crate) fn remove(&mut self, id: ListenerId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.count.store(self.entries.len(), Ordering::Relaxed);
        self.entries.len() != before
    }

    /// The number of listeners, readable from other threads.
    pub(crate) fn count(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.count)
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
        self.entries.retain(|e| keep(e));
        self.count.store(self.entries.len(), Ordering::Relaxed);
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
        let count = listeners.count();
        assert!(listeners.admit(1, &downloading(1000), Instant::now(), true));
        listeners.send(1, &downloading(1000));
        listeners.complete(ErrorCode::Ok, "");
        assert_eq!(count.load(Ordering::Relaxed), 1);
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
