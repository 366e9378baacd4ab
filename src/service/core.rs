//! The update service itself, independent of Binder: requests, the worker thread, the
//! status and its persistence, listeners and the permission check.
//!
//! Locks: `inner` (status, job) is held only for quick updates, so `status()` and
//! `cancel()` answer while the engine works; `listeners` serializes deliveries and the
//! state file writes, taken while `inner` is still held so that listeners and the file
//! see changes in the order they happened (always `inner` first, then `listeners`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::service::control::Control;
use crate::service::engine::{
    ApplyRequest, Engine, PayloadSource, Progress, RollbackFloor, SlotInfo,
};
use crate::service::listeners::{Listener, ListenerId, Listeners};
use crate::service::persist::{Record, StateStore, StoredRequest};
use crate::service::status::{State, Status};

/// How the service is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the state file lives (`/data/misc/abupdate` on a device).
    pub state_dir: PathBuf,
    /// UIDs allowed to change anything; everyone may read the status.
    pub allowed_uids: Vec<u32>,
    /// This boot's `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

/// Who is calling, as the transport vouches for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
}

/// The A/B update service. Create it with [`UpdateService::new`]; every method may be
/// called from any thread.
pub struct UpdateService {
    engine: Arc<dyn Engine>,
    allowed_uids: Vec<u32>,
    boot_id: String,
    store: StateStore,
    inner: Mutex<Inner>,
    listeners: Mutex<Listeners>,
}

struct Inner {
    status: Status,
    /// The running update's control; `None` when no worker runs.
    job: Option<Control>,
    /// The state to return to when a suspended update resumes.
    running_state: State,
    /// The URL request of the running or interrupted update, for `resume()`.
    request: Option<StoredRequest>,
}

/// How a change reaches the listeners.
enum Publish {
    /// Only if the throttle finds it useful (progress).
    Throttled,
    /// An update ended.
    Complete,
}

impl UpdateService {
    /// Starts the service from its state file: an update that was running when the
    /// service stopped is `Interrupted`; an applied update stays `UpdatedNeedReboot`
    /// until the device reboots.
    pub fn new(engine: Arc<dyn Engine>, config: Config) -> Result<Arc<Self>> {
        let store = StateStore::new(&config.state_dir);
        let record = match store.load() {
            Ok(record) => record,
            Err(e) => {
                let aside = store.quarantine()?;
                log::error!("{e}; moved it to {} and starting idle", aside.display());
                None
            }
        };
        let (mut status, request) = recover(record, &config.boot_id, engine.as_ref());
        match engine.slot_info() {
            Ok(slots) => status.current_slot = Some(slots.current),
            Err(e) => log::warn!("slot info unavailable: {e}"),
        }
        let service = Arc::new(UpdateService {
            engine,
            allowed_uids: config.allowed_uids,
            boot_id: config.boot_id,
            store,
            inner: Mutex::new(Inner {
                running_state: State::Downloading,
                status,
                job: None,
                request,
            }),
            listeners: Mutex::new(Listeners::default()),
        });
        service.save(&service.lock());
        Ok(service)
    }

    /// Starts applying a payload on the worker thread; returns once it started.
    pub fn apply(self: &Arc<Self>, caller: Caller, request: ApplyRequest) -> Result<()> {
        self.authorize(caller, "apply a payload")?;
        let inner = self.lock();
        if inner.job.is_some() {
            crate::bail!(
                Busy,
                "an update is already running ({})",
                inner.status.state
            );
        }
        if inner.status.state == State::UpdatedNeedReboot {
            crate::bail!(
                Busy,
                "an update was applied: reboot, or resetStatus to discard it"
            );
        }
        let stored = match &request.source {
            PayloadSource::Url(url) => Some(StoredRequest {
                url: url.clone(),
                offset: request.offset,
                size: request.size,
                headers: request.headers.clone(),
            }),
            PayloadSource::File(_) => None,
        };
        self.start(inner, request, stored)
    }

    /// Pauses the running update at its next checkpoint.
    pub fn suspend(&self, caller: Caller) -> Result<()> {
        self.authorize(caller, "suspend the update")?;
        let mut inner = self.lock();
        let control = match (&inner.job, inner.status.state) {
            (Some(control), state) if state != State::Suspended => control.clone(),
            (_, state) => crate::bail!(Busy, "no running update to suspend ({state})"),
        };
        if !control.suspend() {
            crate::bail!(Busy, "the update is being cancelled");
        }
        inner.running_state = inner.status.state;
        inner.status.state = State::Suspended;
        self.publish(inner, Publish::Throttled);
        Ok(())
    }

    /// Continues a suspended update, or restarts an interrupted URL update (the engine
    /// resumes it from its checkpoint).
    pub fn resume(self: &Arc<Self>, caller: Caller) -> Result<()> {
        self.authorize(caller, "resume the update")?;
        let mut inner = self.lock();
        match (inner.status.state, &inner.job) {
            (State::Suspended, Some(control)) => {
                if !control.resume() {
                    crate::bail!(Busy, "the update is being cancelled");
                }
                inner.status.state = inner.running_state;
                self.publish(inner, Publish::Throttled);
                Ok(())
            }
            (State::Interrupted, None) => {
                let Some(stored) = inner.request.clone() else {
                    crate::bail!(
                        Busy,
                        "the interrupted update read its payload from a file descriptor: apply it again"
                    );
                };
                let request = ApplyRequest {
                    source: PayloadSource::Url(stored.url.clone()),
                    offset: stored.offset,
                    size: stored.size,
                    headers: stored.headers.clone(),
                };
                self.start(inner, request, Some(stored))
            }
            (state, _) => crate::bail!(Busy, "nothing to resume ({state})"),
        }
    }

    /// Cancels the running update (it completes with `Cancelled` shortly after), or
    /// gives up an interrupted one.
    pub fn cancel(&self, caller: Caller) -> Result<()> {
        self.authorize(caller, "cancel the update")?;
        let mut inner = self.lock();
        if let Some(control) = &inner.job {
            control.cancel();
            return Ok(());
        }
        if inner.status.state != State::Interrupted {
            crate::bail!(Busy, "no update to cancel ({})", inner.status.state);
        }
        inner.status.state = State::Idle;
        inner.status.set_error(Some(&crate::err!(
            Cancelled,
            "the interrupted update was cancelled"
        )));
        inner.request = None;
        self.publish(inner, Publish::Complete);
        Ok(())
    }

    /// Forgets the last update: its error, its resume point, and an applied update's
    /// slot switch.
    pub fn reset_status(&self, caller: Caller) -> Result<()> {
        self.authorize(caller, "reset the status")?;
        let mut inner = self.lock();
        if inner.job.is_some() {
            crate::bail!(
                Busy,
                "an update is running ({}): cancel it first",
                inner.status.state
            );
        }
        self.engine.reset()?;
        let current_slot = inner.status.current_slot;
        inner.status = Status {
            current_slot,
            ..Status::default()
        };
        inner.request = None;
        self.publish(inner, Publish::Throttled);
        Ok(())
    }

    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// Registers a listener and tells it the current status at once.
    pub fn add_listener(&self, listener: Arc<dyn Listener>) -> ListenerId {
        let inner = self.lock();
        let status = inner.status.clone();
        let mut listeners = self.lock_listeners();
        drop(inner);
        let id = listeners.add(listener);
        listeners.greet(id, &status);
        id
    }

    /// False if the listener was not (or no longer) registered.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.lock_listeners().remove(id)
    }

    pub fn verify_applicable(&self, metadata: &[u8]) -> Result<()> {
        self.engine.verify_applicable(metadata)
    }

    pub fn slot_info(&self) -> Result<SlotInfo> {
        self.engine.slot_info()
    }

    pub fn mark_boot_successful(&self, caller: Caller) -> Result<()> {
        self.authorize(caller, "mark the boot successful")?;
        self.engine.mark_boot_successful()
    }

    pub fn rollback_floors(&self) -> Result<Vec<RollbackFloor>> {
        self.engine.rollback_floors()
    }

    /// The `dumpsys` text: state, slots, last error, listeners, configuration.
    pub fn dump(&self) -> String {
        let (status, url) = {
            let inner = self.lock();
            (
                inner.status.clone(),
                inner.request.as_ref().map(|r| r.url.clone()),
            )
        };
        let listeners = self.lock_listeners().len();
        crate::service::dump::render(&crate::service::dump::DumpInput {
            status: &status,
            url: url.as_deref(),
            slots: self.engine.slot_info(),
            floors: self.engine.rollback_floors(),
            listeners,
            allowed_uids: &self.allowed_uids,
            state_file: &self.store.path(),
            boot_id: &self.boot_id,
        })
    }

    fn authorize(&self, caller: Caller, what: &str) -> Result<()> {
        if self.allowed_uids.contains(&caller.uid) {
            return Ok(());
        }
        log::warn!("uid {} may not {what}", caller.uid);
        crate::bail!(PermissionDenied, "uid {} may not {what}", caller.uid)
    }

    fn start(
        self: &Arc<Self>,
        mut inner: MutexGuard<'_, Inner>,
        request: ApplyRequest,
        stored: Option<StoredRequest>,
    ) -> Result<()> {
        let control = Control::new();
        let total = request.size;
        let worker = {
            let service = Arc::clone(self);
            let control = control.clone();
            std::thread::Builder::new()
                .name("abupdate-worker".to_owned())
                .spawn(move || service.run(&request, &control))
                .map_err(|e| Error::io("starting the update worker", e))?
        };
        drop(worker); // The worker reports its own end through `finish`.
        let target_slot = self.engine.slot_info().ok().and_then(|s| s.target());
        let current_slot = inner.status.current_slot;
        inner.status = Status {
            state: State::Downloading,
            total,
            current_slot,
            target_slot,
            ..Status::default()
        };
        inner.running_state = State::Downloading;
        inner.job = Some(control);
        inner.request = stored;
        self.publish(inner, Publish::Throttled);
        Ok(())
    }

    /// The worker thread's body.
    fn run(&self, request: &ApplyRequest, control: &Control) {
        log::info!("update started from {}", describe(&request.source));
        let result = self
            .engine
            .apply(request, &mut |p| self.progress(p), control);
        self.finish(result);
    }

    fn progress(&self, progress: Progress) {
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

    fn finish(&self, result: Result<()>) {
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
                inner.status.state = State::Idle;
            }
        }
        inner.status.set_error(result.as_ref().err());
        self.publish(inner, Publish::Complete);
    }

    /// Hands a change to the listeners and, if it was worth telling, the state file.
    fn publish(&self, inner: MutexGuard<'_, Inner>, how: Publish) {
        let status = inner.status.clone();
        let record = self.record(&inner);
        let mut listeners = self.lock_listeners();
        drop(inner);
        let now = Instant::now();
        // The file first: a listener that hears of a change may act on it (reboot, say)
        // before this process gets to write anything more.
        match how {
            Publish::Throttled => {
                if listeners.admits(&status, now) {
                    self.write(&record);
                    listeners.send(&status);
                }
            }
            Publish::Complete => {
                self.write(&record);
                listeners.complete(&status, now);
            }
        }
    }

    fn save(&self, inner: &Inner) {
        self.write(&self.record(inner));
    }

    fn record(&self, inner: &Inner) -> Record {
        Record {
            status: inner.status.clone(),
            boot_id: self.boot_id.clone(),
            request: inner.request.clone(),
        }
    }

    // A failed write must not fail the update; the log says the file is stale.
    fn write(&self, record: &Record) {
        if let Err(e) = self.store.save(record) {
            log::error!("state file not updated: {e}");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update under this lock is a few field writes that leave it consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_listeners(&self) -> MutexGuard<'_, Listeners> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a restarted service reports, from its state file and the engine's checkpoint.
fn recover(
    record: Option<Record>,
    boot_id: &str,
    engine: &dyn Engine,
) -> (Status, Option<StoredRequest>) {
    let Some(Record {
        mut status,
        boot_id: then,
        request,
    }) = record
    else {
        return (Status::default(), None);
    };
    match status.state {
        state if state.is_running() || state == State::Interrupted => {
            status.state = State::Interrupted;
            match engine.resume_point() {
                Ok(Some(point)) => {
                    status.done = point.done;
                    status.total = point.total;
                }
                Ok(None) => {}
                Err(e) => log::warn!("resume point unavailable: {e}"),
            }
            (status, request)
        }
        State::UpdatedNeedReboot if then == boot_id => (status, None),
        State::UpdatedNeedReboot => {
            log::info!("rebooted since the update was applied");
            (Status::default(), None)
        }
        _ => (
            Status {
                done: 0,
                total: 0,
                ..status
            },
            None,
        ),
    }
}

fn describe(source: &PayloadSource) -> String {
    match source {
        PayloadSource::Url(url) => url.clone(),
        PayloadSource::File(_) => "a file descriptor".to_owned(),
    }
}
