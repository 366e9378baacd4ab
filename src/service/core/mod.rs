//! The update service itself, independent of Binder: requests, the worker thread, the
//! status and its persistence, listeners and the permission check.
//!
//! Who may do what: every method that changes something, `verifyPayloadApplicable` (it reads
//! partitions and costs the device work) and the dump need a caller in the allow-list;
//! reading the status, the slots and the rollback floors and registering a callback (capped
//! per UID, see `service::listeners`) are open to every app. Refusals are logged at
//! most once per UID per ten seconds. URLs leave the daemon (log, dump, status) without
//! credentials or query; `AUTHORIZATION` is never written to the state file.
//!
//! `inner` (status, job) is locked only for quick updates, so `status()` and `cancel()`
//! answer while the engine works. Listeners are called from a thread of their own (a
//! stuck client delays no one else). Every change carries a sequence number taken under
//! `inner`, so a change that reaches the state file or the listeners after a newer one
//! is dropped instead of undoing it.

mod recovery;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::error::{Error, ErrorCode, Result};
use crate::service::backend::{
    ApplyRequest, CheckRequest, PayloadLocation, RollbackFloor, SlotInfo, UpdateBackend,
};
use crate::service::control::Control;
use crate::service::listeners::{Listener, ListenerId};
use crate::service::notifier::Notifier;
use crate::service::persist::{Record, StateStore, StoredRequest};
use crate::service::refusals::RefusalLog;
use crate::service::status::{State, Status};

/// How the service is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the state file lives (`/data/misc/abupdate` on a device).
    pub state_dir: PathBuf,
    /// UIDs allowed to change anything, verify payloads and dump; everyone may read the
    /// status. See [`default_allowed_uids`].
    pub allowed_uids: Vec<u32>,
    /// This boot's `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

/// Who is calling, as the transport vouches for it, and whether the service checks its uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling uid.
    pub uid: u32,
    /// Whether [`Config::allowed_uids`] decides what this caller may do. `com.abupdate`'s
    /// callers are checked; update_engine's faces are not, as update_engine checks no uid and
    /// leaves the choice of callers to SELinux (who may find its services).
    pub uid_checked: bool,
}

impl Caller {
    /// A caller whose uid must be in [`Config::allowed_uids`] to change anything.
    pub const fn checked(uid: u32) -> Caller {
        Caller {
            uid,
            uid_checked: true,
        }
    }

    /// A caller of update_engine's faces: the platform's policy already chose who reaches
    /// them (system_server, GMS, Settings), so the uid is not checked, as in update_engine.
    pub const fn admitted_by_policy(uid: u32) -> Caller {
        Caller {
            uid,
            uid_checked: false,
        }
    }
}

/// The A/B update service. Create it with [`UpdateService::new`]; every method may be
/// called from any thread.
pub struct UpdateService {
    engine: Arc<dyn UpdateBackend>,
    allowed_uids: Vec<u32>,
    boot_id: String,
    store: StateStore,
    inner: Mutex<Inner>,
    notifier: Notifier,
    next_listener: AtomicU64,
    writer: Mutex<Writer>,
    refusals: RefusalLog,
}

/// The UIDs `abupdated` allows when not told otherwise. On Android: root, `system` (the
/// platform's updater apps) and `shell` (`adb shell abupdate ...`, as update_engine_client is
/// used); a device that does not want `adb` to update it passes `--allowed-uids 0,1000`.
/// Elsewhere: the daemon's own UID only, so that a host daemon started by a user does not
/// take orders from root, system or shell UIDs it has nothing to do with.
pub fn default_allowed_uids() -> Vec<u32> {
    if cfg!(target_os = "android") {
        vec![0, 1000, 2000]
    } else {
        // SAFETY: geteuid takes nothing, touches no memory of ours and cannot fail.
        vec![unsafe { nix::libc::geteuid() }]
    }
}

/// What the state file last got, to keep it in order and to pace progress writes.
#[derive(Default)]
struct Writer {
    seq: u64,
    last: Option<(State, ErrorCode, Instant)>,
}

/// Progress alone is written at most this often; state and error changes at once.
const PROGRESS_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

struct Inner {
    /// Numbers the changes, in the order they were made.
    seq: u64,
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
    pub fn new(engine: Arc<dyn UpdateBackend>, config: Config) -> Result<Arc<Self>> {
        let store = StateStore::new(&config.state_dir);
        let record = match store.load() {
            Ok(record) => record,
            Err(e) => {
                let aside = store.quarantine()?;
                log::error!("{e}; moved it to {} and starting idle", aside.display());
                None
            }
        };
        let (mut status, request) = recovery::recover(record, &config.boot_id, engine.as_ref());
        match engine.slot_info() {
            Ok(slots) => status.current_slot = Some(slots.current),
            Err(e) => log::warn!("slot info unavailable: {e}"),
        }
        let notifier =
            Notifier::start().map_err(|e| Error::io("starting the listener thread", e))?;
        let service = Arc::new(UpdateService {
            engine,
            allowed_uids: config.allowed_uids,
            boot_id: config.boot_id,
            store,
            inner: Mutex::new(Inner {
                seq: 0,
                running_state: State::Downloading,
                status,
                job: None,
                request,
            }),
            notifier,
            next_listener: AtomicU64::new(0),
            writer: Mutex::default(),
            refusals: RefusalLog::default(),
        });
        service.save(&service.lock());
        Ok(service)
    }

    /// Starts applying a payload on the worker thread; returns once it started.
    pub fn apply(self: &Arc<Self>, caller: Caller, request: ApplyRequest) -> Result<()> {
        self.authorize(caller, "apply a payload")?;
        let inner = self.lock();
        Self::ready_to_apply(&inner)?;
        let stored = match &request.source {
            PayloadLocation::Url(url) => Some(StoredRequest::new(
                url,
                request.offset,
                request.size,
                &request.headers,
            )),
            PayloadLocation::File(_) | PayloadLocation::Feed(_) => None,
        };
        self.start(inner, worker::Job::Apply(request), stored)
    }

    /// `applyFeedOffer`: checks the feed (as [`Self::check_for_update`]) and starts applying
    /// this device's offer on the worker thread; returns the offer's summary line once it
    /// started, or `NO_UPDATE` (nothing started).
    pub fn apply_feed_offer(
        self: &Arc<Self>,
        caller: Caller,
        request: &CheckRequest,
    ) -> Result<String> {
        self.authorize(caller, "apply a feed offer")?;
        // Refused before the network is asked anything; asked again once the feed answered.
        Self::ready_to_apply(&self.lock())?;
        let Some((summary, apply)) = self.engine.feed_offer(request)? else {
            return Ok("NO_UPDATE".to_owned());
        };
        let inner = self.lock();
        Self::ready_to_apply(&inner)?;
        self.start(inner, worker::Job::Apply(apply), None)?;
        Ok(summary)
    }

    /// Whether a new update may start: none runs, and none waits for its reboot.
    fn ready_to_apply(inner: &Inner) -> Result<()> {
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
        Ok(())
    }

    /// Runs `partition`'s postinstall program again on the applied update, on the worker
    /// thread (update_engine's `triggerPostinstall`): the status goes to FINALIZING with the
    /// program's progress, and back to UPDATED_NEED_REBOOT when it ends, whatever its result
    /// (the applied update stays applied; a failure is reported as the last error).
    pub fn trigger_postinstall(self: &Arc<Self>, caller: Caller, partition: &str) -> Result<()> {
        self.authorize(caller, "run a postinstall program")?;
        let inner = self.lock();
        if inner.job.is_some() {
            crate::bail!(
                Busy,
                "an update is already running ({})",
                inner.status.state
            );
        }
        if inner.status.state != State::UpdatedNeedReboot {
            crate::bail!(
                Busy,
                "no applied update to run postinstall on ({})",
                inner.status.state
            );
        }
        self.start(inner, worker::Job::Postinstall(partition.to_owned()), None)
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
                        "the interrupted update read its payload from a file descriptor or was a \
                         feed offer: apply it again (it resumes from its checkpoint)"
                    );
                };
                if stored.had_authorization {
                    crate::bail!(
                        Busy,
                        "the interrupted update sent an AUTHORIZATION, which is not kept across \
                         restarts: apply it again with its headers (it resumes from its checkpoint)"
                    );
                }
                let request = ApplyRequest {
                    source: PayloadLocation::Url(stored.url.clone()),
                    offset: stored.offset,
                    size: stored.size,
                    headers: stored.headers.clone(),
                };
                self.start(inner, worker::Job::Apply(request), Some(stored))
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

    /// The current status.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// Registers `caller`'s listener and tells it the current status at once. Refused
    /// (`Busy`) when the caller or the service has as many as it may.
    pub fn add_listener(&self, caller: Caller, listener: Arc<dyn Listener>) -> Result<ListenerId> {
        let id = ListenerId(self.next_listener.fetch_add(1, Ordering::Relaxed));
        let inner = self.lock();
        // Queued under `inner`: changes queued later are newer than the greeting.
        self.notifier
            .add(id, caller.uid, listener, inner.seq, inner.status.clone())
            .inspect_err(|_| {
                // Paced like every refusal: an app looping on registerCallback must not
                // flood the log either.
                let what = "register more status callbacks";
                if let Some(line) = self.refusals.note(caller.uid, what, Instant::now()) {
                    log::warn!("{line}");
                }
            })?;
        Ok(id)
    }

    /// Drops a listener (no-op if it is gone already).
    pub fn remove_listener(&self, id: ListenerId) {
        self.notifier.remove(id);
    }

    /// Whether a payload with this metadata could be applied; reads the source partitions
    /// of a delta, hence only for allowed callers.
    pub fn verify_applicable(&self, caller: Caller, metadata: &[u8]) -> Result<()> {
        self.authorize(caller, "verify a payload")?;
        self.engine.verify_applicable(metadata)
    }

    /// `checkForUpdate`: fetches the update feed (network, state), for allowed callers only.
    pub fn check_for_update(&self, caller: Caller, request: &CheckRequest) -> Result<String> {
        self.authorize(caller, "check for updates")?;
        self.engine.check_for_update(request)
    }

    /// The slots' boot control state.
    pub fn slot_info(&self) -> Result<SlotInfo> {
        self.engine.slot_info()
    }

    /// Marks the running slot as booted successfully, if `caller` may.
    pub fn mark_boot_successful(&self, caller: Caller) -> Result<()> {
        self.authorize(caller, "mark the boot successful")?;
        self.engine.mark_boot_successful()
    }

    /// The device's rollback index floors.
    pub fn rollback_floors(&self) -> Result<Vec<RollbackFloor>> {
        self.engine.rollback_floors()
    }

    /// The `dumpsys` text: state, slots, last error, listeners, configuration; for allowed
    /// callers only.
    pub fn dump(&self, caller: Caller) -> Result<String> {
        self.authorize(caller, "dump the service state")?;
        let (status, url) = {
            let inner = self.lock();
            (
                inner.status.clone(),
                inner.request.as_ref().map(|r| super::redact::url(&r.url)),
            )
        };
        let listeners = self.notifier.count();
        Ok(crate::service::dump::render(
            &crate::service::dump::DumpInput {
                status: &status,
                url: url.as_deref(),
                slots: self.engine.slot_info(),
                floors: self.engine.rollback_floors(),
                listeners,
                allowed_uids: &self.allowed_uids,
                state_file: &self.store.path(),
                boot_id: &self.boot_id,
            },
        ))
    }

    fn authorize(&self, caller: Caller, what: &str) -> Result<()> {
        if !caller.uid_checked || self.allowed_uids.contains(&caller.uid) {
            return Ok(());
        }
        if let Some(line) = self.refusals.note(caller.uid, what, Instant::now()) {
            log::warn!("{line}");
        }
        crate::bail!(PermissionDenied, "uid {} may not {what}", caller.uid)
    }

    /// Hands a change to the state file, then to the listeners.
    fn publish(&self, mut inner: MutexGuard<'_, Inner>, how: Publish) {
        inner.seq += 1;
        let seq = inner.seq;
        let status = inner.status.clone();
        let record = self.record(&inner);
        drop(inner);
        let complete = matches!(how, Publish::Complete);
        // The file first: a listener that hears of a change may act on it (reboot, say)
        // before this process gets to write anything more.
        self.persist(seq, &record, complete);
        self.notifier.change(seq, status, complete);
    }

    fn persist(&self, seq: u64, record: &Record, force: bool) {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if seq <= writer.seq {
            return; // A newer change is on disk already.
        }
        let s = &record.status;
        let now = Instant::now();
        let progress_only = writer.last.is_some_and(|(state, code, at)| {
            state == s.state
                && code == s.error_code
                && now.duration_since(at) < PROGRESS_WRITE_INTERVAL
        });
        if progress_only && !force {
            return;
        }
        self.write(record);
        *writer = Writer {
            seq,
            last: Some((s.state, s.error_code, now)),
        };
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
}
