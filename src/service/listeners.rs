//! Status listeners (the Binder callbacks) and the throttle in front of them.
//!
//! An engine reports progress for every operation, thousands per update; listeners get
//! only useful changes: every state or error change, and progress once it moved by 1%
//! or, while bytes are still being written, once a second.

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
pub struct ListenerId(u64);

/// The registered listeners and what they were last told.
#[derive(Default)]
pub(crate) struct Listeners {
    entries: Vec<(ListenerId, Arc<dyn Listener>)>,
    next_id: u64,
    throttle: Throttle,
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
    pub(crate) fn add(&mut self, listener: Arc<dyn Listener>) -> ListenerId {
        let id = ListenerId(self.next_id);
        self.next_id += 1;
        self.entries.push((id, listener));
        id
    }

    /// Removes a listener; false if it was not registered (any more).
    pub(crate) fn remove(&mut self, id: ListenerId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(i, _)| *i != id);
        self.entries.len() != before
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells one new listener the current status at once.
    pub(crate) fn greet(&mut self, id: ListenerId, status: &Status) {
        let gone = self
            .entries
            .iter()
            .find(|(i, _)| *i == id)
            .is_some_and(|(_, l)| l.on_status(status).is_err());
        if gone {
            self.remove(id);
        }
    }

    /// Forwards `status` if it is a useful change; returns whether it was forwarded.
    #[cfg(test)]
    pub(crate) fn publish(&mut self, status: &Status, now: Instant) -> bool {
        let admitted = self.admits(status, now);
        if admitted {
            self.send(status);
        }
        admitted
    }

    /// Whether `status` is a useful change to forward; if so it counts as forwarded.
    pub(crate) fn admits(&mut self, status: &Status, now: Instant) -> bool {
        self.throttle.admits(status, now)
    }

    /// Forwards `status` to every listener.
    pub(crate) fn send(&mut self, status: &Status) {
        self.deliver(|l| l.on_status(status));
    }

    /// Forwards the end of an update; never throttled.
    pub(crate) fn complete(&mut self, status: &Status, now: Instant) {
        self.throttle.last = Some((status.clone(), now));
        self.deliver(|l| l.on_status(status));
        self.deliver(|l| l.on_complete(status.error_code, &status.error_message));
    }

    fn deliver(&mut self, call: impl Fn(&dyn Listener) -> Result<(), Gone>) {
        let before = self.entries.len();
        self.entries.retain(|(_, l)| call(l.as_ref()).is_ok());
        let dropped = before - self.entries.len();
        if dropped > 0 {
            log::info!("dropped {dropped} unreachable status listener(s)");
        }
    }
}

impl Throttle {
    fn admits(&mut self, status: &Status, now: Instant) -> bool {
        let useful = match &self.last {
            None => true,
            Some((last, at)) => {
                last.state != status.state
                    || last.error_code != status.error_code
                    || last.target_slot != status.target_slot
                    || last.total != status.total
                    || (status.progress() - last.progress()).abs() >= PROGRESS_STEP
                    || (status.done != last.done && now.duration_since(*at) >= HEARTBEAT)
            }
        };
        if useful {
            self.last = Some((status.clone(), now));
        }
        useful
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

    #[test]
    fn small_steps_are_held_back_until_a_second_passed() {
        let mut listeners = Listeners::default();
        let rec = Arc::new(Recorder::default());
        listeners.add(rec.clone());
        let t0 = Instant::now();
        assert!(listeners.publish(&downloading(0), t0));
        assert!(
            !listeners.publish(&downloading(5), t0),
            "0.5% is no useful step"
        );
        assert!(listeners.publish(&downloading(10), t0), "1% is");
        assert!(!listeners.publish(&downloading(11), t0 + Duration::from_millis(500)));
        assert!(
            listeners.publish(&downloading(12), t0 + Duration::from_secs(2)),
            "heartbeat"
        );
        assert!(
            !listeners.publish(&downloading(12), t0 + Duration::from_secs(9)),
            "no motion"
        );
        let verifying = Status {
            state: State::Verifying,
            ..downloading(12)
        };
        assert!(
            listeners.publish(&verifying, t0 + Duration::from_secs(9)),
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
    fn unreachable_listeners_are_dropped() {
        let mut listeners = Listeners::default();
        let alive = Arc::new(Recorder::default());
        let dead = Arc::new(Recorder {
            gone: true,
            ..Recorder::default()
        });
        listeners.add(alive.clone());
        let dead_id = listeners.add(dead.clone());
        listeners.complete(&downloading(1000), Instant::now());
        assert_eq!(listeners.len(), 1);
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
