//! The service's report sender: a thread that sends the fleet reports queued in the state
//! directory ([`crate::feed::report::ReportQueue`]) to the report URLs the feeds name, retrying
//! after the queue's backoff.
//!
//! Reports are queued by the worker at each phase end and at completion; the sender is woken
//! then, and when a call hands it the device token. The token is kept in memory only (as an
//! `AUTHORIZATION` header is, see [`crate::service::persist`]): after a restart, the reports
//! still queued wait for the next `checkForUpdate` or `applyFeedOffer`, which carries it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::download::SourceOptions;
use crate::feed::client::{now, HttpReportSink};
use crate::feed::report::ReportQueue;

/// Sends the queued reports of one state directory; see the module documentation.
pub struct ReportSender {
    shared: Arc<Shared>,
}

struct Shared {
    queue: ReportQueue,
    options: SourceOptions,
    wanted: Mutex<Wanted>,
    changed: Condvar,
}

#[derive(Default)]
struct Wanted {
    token: Option<String>,
    /// Send now, without waiting for the backoff to end.
    force: bool,
    /// Something changed: look at the queue.
    poked: bool,
    started: bool,
}

impl ReportSender {
    /// A sender for the queue in `state_dir`, posting with `options` (CA, timeouts). Its thread
    /// starts with the first token.
    pub fn new(state_dir: &std::path::Path, options: SourceOptions) -> Self {
        ReportSender {
            shared: Arc::new(Shared {
                queue: ReportQueue::new(state_dir),
                options,
                wanted: Mutex::default(),
                changed: Condvar::new(),
            }),
        }
    }

    /// The queue the sender sends from.
    pub fn queue(&self) -> &ReportQueue {
        &self.shared.queue
    }

    /// Sends with `token` from now on, and at once (a new token is worth trying even while
    /// the old one's failures are being backed off).
    pub fn set_token(&self, token: &str) {
        let mut wanted = self.shared.lock();
        wanted.token = Some(token.to_owned());
        wanted.force = true;
        wanted.poked = true;
        if !wanted.started {
            let shared = Arc::clone(&self.shared);
            let spawned = std::thread::Builder::new()
                .name("abupdate-reports".to_owned())
                .spawn(move || shared.run());
            match spawned {
                Ok(_) => wanted.started = true,
                // The reports stay queued; the next token tries again.
                Err(e) => log::error!("starting the report sender: {e}"),
            }
        }
        self.shared.changed.notify_all();
    }

    /// Reports were queued: send them (after the backoff, if sends are failing).
    pub fn poke(&self) {
        self.shared.lock().poked = true;
        self.shared.changed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Wanted> {
        // Every update under this lock is a few field writes.
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread's body: wait for a poke or the end of the backoff, then flush.
    fn run(&self) {
        let mut retry_at: Option<i64> = None;
        loop {
            let (token, force) = {
                let mut wanted = self.lock();
                while !wanted.poked {
                    match retry_at {
                        None => {
                            wanted = self
                                .changed
                                .wait(wanted)
                                .unwrap_or_else(PoisonError::into_inner);
                        }
                        Some(at) => {
                            let left = at.saturating_sub(now());
                            if left <= 0 {
                                break;
                            }
                            let wait = Duration::from_secs(left.unsigned_abs());
                            wanted = self
                                .changed
                                .wait_timeout(wanted, wait)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                    }
                }
                wanted.poked = false;
                (wanted.token.clone(), std::mem::take(&mut wanted.force))
            };
            let Some(token) = token else {
                retry_at = None;
                continue;
            };
            let mut sink = HttpReportSink::new(&self.options, &token);
            match self.queue.flush(&mut sink, now(), force) {
                Ok(done) if done.delivered + done.refused > 0 || done.left > 0 => log::info!(
                    "reports: {} sent, {} refused, {} queued{}",
                    done.delivered,
                    done.refused,
                    done.left,
                    done.stopped.map(|s| format!(" ({s})")).unwrap_or_default()
                ),
                Ok(_) => {}
                Err(e) => log::warn!("sending reports: {e}"),
            }
            // Not before a second from now: a clock that jumps back must not make this spin.
            retry_at = match self.queue.next_attempt() {
                Ok(at) => at.map(|at| at.max(now().saturating_add(1))),
                Err(e) => {
                    log::warn!("report queue: {e}");
                    None
                }
            };
        }
    }
}
