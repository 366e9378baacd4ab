//! The update's worker thread: starting it, and what it reports back.
//!
//! Whatever the engine does, the worker ends the update: a panic in the engine becomes an
//! `InstallFailed` error and the service is idle again, not busy forever. (Device builds use
//! `panic=abort`, where a panic ends the daemon instead and the restarted service reports the
//! update `Interrupted`; catching it is the safety net for host and debug builds.)

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, MutexGuard};

use super::{Inner, Publish, UpdateService};
use crate::error::{Error, Result};
use crate::service::backend::{ApplyProgress, ApplyRequest, PayloadLocation};
use crate::service::control::Control;
use crate::service::persist::StoredRequest;
use crate::service::redact;
use crate::service::status::{State, Status};

/// What a worker thread does.
pub(super) enum Job {
    /// Applies a payload.
    Apply(ApplyRequest),
    /// Runs one partition's postinstall program again on the applied update.
    Postinstall(String),
}

impl UpdateService {
    pub(super) fn start(
        self: &Arc<Self>,
        mut inner: MutexGuard<'_, Inner>,
        job: Job,
        stored: Option<StoredRequest>,
    ) -> Result<()> {
        let control = Control::new();
        let (total, state) = match &job {
            Job::Apply(request) => (request.size, State::Downloading),
            Job::Postinstall(_) => (0, State::Finalizing),
        };
        let worker = {
            let service = Arc::clone(self);
            let control = control.clone();
            std::thread::Builder::new()
                .name("abupdate-worker".to_owned())
                .spawn(move || service.run(&job, &control))
                .map_err(|e| Error::io("starting the update worker", e))?
        };
        drop(worker); // The worker reports its own end through `finish`.
        let target_slot = self.engine.slot_info().ok().and_then(|s| s.target());
        let current_slot = inner.status.current_slot;
        inner.status = Status {
            state,
            total,
            current_slot,
            target_slot,
            ..Status::default()
        };
        inner.running_state = state;
        inner.job = Some(control);
        inner.request = stored;
        self.publish(inner, Publish::Throttled);
        Ok(())
    }

    /// The worker thread's body.
    fn run(&self, job: &Job, control: &Control) {
        match job {
            Job::Apply(request) => {
                log::info!("update started from {}", describe(&request.source));
            }
            Job::Postinstall(partition) => log::info!("postinstall of {partition} triggered"),
        }
        // The engine shares nothing with the service but `control` and the progress
        // callback, both of which stay consistent whatever point a panic left them at.
        let result = catch_unwind(AssertUnwindSafe(|| match job {
            Job::Apply(request) => self.engine.apply(request, &|p| self.progress(p), control),
            Job::Postinstall(partition) => {
                self.engine
                    .trigger_postinstall(partition, &|p| self.progress(p), control)
            }
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("no message");
            Err(crate::err!(
                InstallFailed,
                "the update engine failed unexpectedly (panic: {what})"
            ))
        });
        // A failed apply leaves nothing applied; a failed postinstall run leaves the update
        // it ran on applied (its slot was switched when that update completed).
        let failed_state = match job {
            Job::Apply(_) => State::Idle,
            Job::Postinstall(_) => State::UpdatedNeedReboot,
        };
        self.finish(result, failed_state);
    }

    fn progress(&self, progress: ApplyProgress) {
        let mut inner = self.lock();
        let state = State::of_phase(progress.phase);
        inner.running_state = state;
        if inner.status.state != State::Suspended {
            inner.status.state = state;
        }
        inner.status.done = progress.done;
        inner.status.total = progress.total;
        self.publish(inner, Publish::Throttled);
    }

    fn finish(&self, result: Result<()>, failed_state: State) {
        // Error messages quote URLs (the payload's, a redirect's): they reach the log, the
        // state file and every app that reads the status, without credentials.
        let result = result.map_err(|e| Error::new(e.code, redact::urls_in(&e.message)));
        let mut inner = self.lock();
        inner.job = None;
        inner.request = None;
        match &result {
            Ok(()) => {
                log::info!("update applied; the target slot runs after a reboot");
                inner.status.state = State::UpdatedNeedReboot;
                inner.status.done = inner.status.total;
            }
            Err(e) => {
                log::error!("update failed: {e}");
                inner.status.state = failed_state;
            }
        }
        inner.status.set_error(result.as_ref().err());
        self.publish(inner, Publish::Complete);
    }
}

fn describe(source: &PayloadLocation) -> String {
    match source {
        PayloadLocation::Url(url) => redact::url(url),
        PayloadLocation::File(_) => "a file descriptor".to_owned(),
        PayloadLocation::Feed(feed) => format!(
            "offer {} at {}",
            feed.update.offer.id,
            redact::url(&feed.update.payload_url)
        ),
    }
}
