//! The `IUpdateEngine` and `IUpdateEngineStable` Binder objects: thin methods that name the
//! caller, call [`UpdateService`] and [`Cleanup`], and turn the answers into update_engine's
//! numbers ([`codes`]).

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::codes::{self, error as ue, status as ue_status};
use crate::error::{Error, ErrorCode};
use crate::service::backend::{parse_headers, ApplyRequest, PayloadLocation};
use crate::service::binder_adapter::{
    self as binder, aidl::ue as aidl, AnyBinder, BinderResult, ParcelFileDescriptor, Status, Strong,
};
use crate::service::cleanup::{Cleanup, CleanupListener};
use crate::service::core::{Caller, UpdateService};
use crate::service::listeners::{Gone, Listener, ListenerId};
use crate::service::status::{self, State};

/// `android.os.IUpdateEngine` over the service.
pub struct UpdateEngineService {
    core: Arc<UpdateService>,
    cleanup: Arc<Cleanup>,
    bound: Bindings,
}

/// `android.os.IUpdateEngineStable` over the service: one callback at a time, as
/// update_engine's stable service keeps.
pub struct StableService {
    core: Arc<UpdateService>,
    bound: Bindings,
}

impl UpdateEngineService {
    /// The `IUpdateEngine` face of `core`, with `cleanup`, the previous update's cleanup.
    pub fn new(core: Arc<UpdateService>, cleanup: Arc<Cleanup>) -> Self {
        UpdateEngineService {
            core,
            cleanup,
            bound: Bindings::default(),
        }
    }
}

impl StableService {
    /// The `IUpdateEngineStable` face of `core`.
    pub fn new(core: Arc<UpdateService>) -> Self {
        StableService {
            core,
            bound: Bindings::default(),
        }
    }
}

/// update_engine checks no caller's uid: who may find its services is SELinux's choice.
fn caller() -> Caller {
    Caller::admitted_by_policy(binder::calling_uid())
}

/// update_engine's form of a failure: a security exception for a refused caller, else a
/// service-specific exception with the update_engine code of ours.
fn to_status(e: Error) -> Status {
    match e.code {
        ErrorCode::PermissionDenied => binder::security_status(&e.message),
        code => binder::service_specific_status(codes::error_code(code), &e.message),
    }
}

/// update_engine answers a request that does not fit the state with a generic kError.
fn generic_when_busy(e: Error) -> Status {
    match e.code {
        ErrorCode::Busy => binder::service_specific_status(ue::ERROR, &e.message),
        _ => to_status(e),
    }
}

fn request(
    source: PayloadLocation,
    offset: i64,
    size: i64,
    pairs: &[String],
) -> BinderResult<ApplyRequest> {
    let number = |n: i64, what: &str| {
        u64::try_from(n)
            .map_err(|_| binder::service_specific_status(ue::ERROR, &format!("{what} {n} < 0")))
    };
    Ok(ApplyRequest {
        source,
        offset: number(offset, "offset")?,
        size: number(size, "size")?,
        headers: parse_headers(pairs)
            .map_err(|e| binder::service_specific_status(ue::ERROR, &e.message))?,
    })
}

/// What a URL names: `file://` paths are opened here (update_engine opens them too; SELinux
/// decides which the daemon may read), anything else is fetched by the engine.
fn source_of(url: &str) -> BinderResult<PayloadLocation> {
    let scheme = url.get(..7).filter(|s| s.eq_ignore_ascii_case("file://"));
    let Some(path) = scheme.and_then(|_| url.get(7..)) else {
        return Ok(PayloadLocation::Url(url.to_owned()));
    };
    let path = path.strip_prefix("localhost").unwrap_or(path);
    File::open(path).map(PayloadLocation::File).map_err(|e| {
        binder::service_specific_status(
            ue::DOWNLOAD_TRANSFER_ERROR,
            &format!("opening {path}: {e}"),
        )
    })
}

fn apply_fd(
    core: &Arc<UpdateService>,
    pfd: &ParcelFileDescriptor,
    offset: i64,
    size: i64,
    pairs: &[String],
) -> BinderResult<()> {
    let file = binder::file_of(pfd)
        .map_err(|e| to_status(Error::io("duplicating the payload descriptor", e)))?;
    let request = request(PayloadLocation::File(file), offset, size, pairs)?;
    // update_engine's applyPayloadFd refuses with kError in both busy states.
    core.apply(caller(), request).map_err(generic_when_busy)
}

impl aidl::IUpdateEngine for UpdateEngineService {
    fn applyPayload(
        &self,
        url: &str,
        offset: i64,
        size: i64,
        pairs: &[String],
    ) -> BinderResult<()> {
        let request = request(source_of(url)?, offset, size, pairs)?;
        self.core.apply(caller(), request).map_err(|e| {
            if e.code != ErrorCode::Busy {
                return to_status(e);
            }
            // As update_engine: 66 while an applied update waits for the reboot, 65 while
            // one runs.
            let code = match self.core.status().state {
                State::UpdatedNeedReboot => ue::UPDATE_ALREADY_INSTALLED,
                _ => ue::UPDATE_PROCESSING,
            };
            binder::service_specific_status(code, &e.message)
        })
    }

    fn applyPayloadFd(
        &self,
        pfd: &ParcelFileDescriptor,
        offset: i64,
        size: i64,
        pairs: &[String],
    ) -> BinderResult<()> {
        apply_fd(&self.core, pfd, offset, size, pairs)
    }

    fn bind(&self, callback: &Strong<dyn aidl::IUpdateEngineCallback>) -> BinderResult<bool> {
        Ok(self
            .bound
            .bind(&self.core, Box::new(callback.clone()), false))
    }

    fn unbind(&self, callback: &Strong<dyn aidl::IUpdateEngineCallback>) -> BinderResult<bool> {
        Ok(self.bound.unbind(&self.core, &callback.as_binder()))
    }

    fn suspend(&self) -> BinderResult<()> {
        self.core.suspend(caller()).map_err(generic_when_busy)
    }

    fn resume(&self) -> BinderResult<()> {
        self.core.resume(caller()).map_err(generic_when_busy)
    }

    fn cancel(&self) -> BinderResult<()> {
        self.core.cancel(caller()).map_err(generic_when_busy)
    }

    fn resetStatus(&self) -> BinderResult<()> {
        self.core.reset_status(caller()).map_err(generic_when_busy)
    }

    /// abupdate switches the slot at the end of every update: after one, there is nothing
    /// left to switch; before, there is nothing verified to switch to.
    fn setShouldSwitchSlotOnReboot(&self, _metadata: &str) -> BinderResult<()> {
        match self.core.status().state {
            State::UpdatedNeedReboot => Ok(()),
            state => Err(binder::service_specific_status(
                ue::ERROR,
                &format!(
                    "no applied update to switch to ({state}): abupdate switches the slot at \
                     the end of each update"
                ),
            )),
        }
    }

    /// Keeps the running slot active after an applied update (as resetStatus does here).
    fn resetShouldSwitchSlotOnReboot(&self) -> BinderResult<()> {
        match self.core.status().state {
            State::UpdatedNeedReboot => self.core.reset_status(caller()).map_err(generic_when_busy),
            _ => Ok(()),
        }
    }

    fn verifyPayloadApplicable(&self, metadata_file: &str) -> BinderResult<bool> {
        let metadata = super::read_metadata(Path::new(metadata_file), 0).map_err(to_status)?;
        self.core
            .verify_applicable(caller(), &metadata)
            .map_err(to_status)?;
        Ok(true)
    }

    /// Non-Virtual-A/B updates write the other slot in place: no space to allocate once the
    /// metadata parses. (Whether the dynamic partitions fit in super is checked when the
    /// update starts, 37 → kNotEnoughSpace.)
    fn allocateSpaceForPayload(&self, metadata_file: &str, pairs: &[String]) -> BinderResult<i64> {
        parse_headers(pairs).map_err(|e| binder::service_specific_status(ue::ERROR, &e.message))?;
        super::read_metadata(Path::new(metadata_file), 0).map_err(to_status)?;
        Ok(0)
    }

    fn cleanupSuccessfulUpdate(
        &self,
        callback: &Strong<dyn aidl::IUpdateEngineCallback>,
    ) -> BinderResult<()> {
        self.cleanup.subscribe(Arc::new(CleanupCallback {
            callback: callback.clone(),
        }));
        Ok(())
    }

    fn triggerPostinstall(&self, partition: &str) -> BinderResult<()> {
        if self.core.status().state.is_running() {
            return Err(binder::service_specific_status(
                ue::UPDATE_PROCESSING,
                "Already processing an update, cancel it first.",
            ));
        }
        self.core
            .trigger_postinstall(caller(), partition)
            .map_err(generic_when_busy)
    }
}

impl aidl::IUpdateEngineStable for StableService {
    fn applyPayloadFd(
        &self,
        pfd: &ParcelFileDescriptor,
        offset: i64,
        size: i64,
        pairs: &[String],
    ) -> BinderResult<()> {
        apply_fd(&self.core, pfd, offset, size, pairs)
    }

    fn bind(&self, callback: &Strong<dyn aidl::IUpdateEngineStableCallback>) -> BinderResult<bool> {
        Ok(self
            .bound
            .bind(&self.core, Box::new(callback.clone()), true))
    }

    fn unbind(
        &self,
        callback: &Strong<dyn aidl::IUpdateEngineStableCallback>,
    ) -> BinderResult<bool> {
        Ok(self.bound.unbind(&self.core, &callback.as_binder()))
    }
}

/// Either callback interface: both carry (status, percent) and the completion code.
trait UeCallback: Send + Sync {
    fn status(&self, status: i32, percent: f32) -> BinderResult<()>;
    fn complete(&self, code: i32) -> BinderResult<()>;
    fn object(&self) -> AnyBinder;
}

impl UeCallback for Strong<dyn aidl::IUpdateEngineCallback> {
    fn status(&self, status: i32, percent: f32) -> BinderResult<()> {
        self.onStatusUpdate(status, percent)
    }
    fn complete(&self, code: i32) -> BinderResult<()> {
        self.onPayloadApplicationComplete(code)
    }
    fn object(&self) -> AnyBinder {
        self.as_binder()
    }
}

impl UeCallback for Strong<dyn aidl::IUpdateEngineStableCallback> {
    fn status(&self, status: i32, percent: f32) -> BinderResult<()> {
        self.onStatusUpdate(status, percent)
    }
    fn complete(&self, code: i32) -> BinderResult<()> {
        self.onPayloadApplicationComplete(code)
    }
    fn object(&self) -> AnyBinder {
        self.as_binder()
    }
}

/// The callbacks bound to one face, each a listener of the core.
#[derive(Clone, Default)]
struct Bindings(Arc<Mutex<Vec<(AnyBinder, ListenerId)>>>);

impl Bindings {
    /// Binds `callback` (the stable face keeps only one): it hears the current status at
    /// once. False when the service keeps no more callbacks or the caller is gone.
    fn bind(
        &self,
        core: &Arc<UpdateService>,
        callback: Box<dyn UeCallback>,
        only_one: bool,
    ) -> bool {
        let object = callback.object();
        let mut bound = self.lock();
        if only_one && !bound.is_empty() {
            log::info!("IUpdateEngineStable: a callback is bound already");
            return false;
        }
        let listener = Arc::new(UeListener {
            callback,
            death: Mutex::default(),
        });
        let id = match core.add_listener(caller(), listener.clone()) {
            Ok(id) => id,
            Err(e) => {
                log::info!("bind refused: {e}");
                return false;
            }
        };
        let weak_core = Arc::downgrade(core);
        let weak_self = Arc::downgrade(&self.0);
        let on_death = Box::new(move || forget(&weak_core, &weak_self, id));
        match binder::link_binder_to_death(&object, on_death) {
            Ok(link) => {
                *listener
                    .death
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(link);
                bound.push((object, id));
                true
            }
            Err(e) => {
                log::info!("callback gone while binding: {e}");
                core.remove_listener(id);
                false
            }
        }
    }

    fn unbind(&self, core: &UpdateService, object: &AnyBinder) -> bool {
        let mut bound = self.lock();
        let Some(at) = bound.iter().position(|(o, _)| o == object) else {
            log::info!("unbind: the callback is not bound");
            return false;
        };
        let (_, id) = bound.remove(at);
        drop(bound);
        core.remove_listener(id);
        true
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(AnyBinder, ListenerId)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn forget(
    core: &Weak<UpdateService>,
    bound: &Weak<Mutex<Vec<(AnyBinder, ListenerId)>>>,
    id: ListenerId,
) {
    if let Some(bound) = bound.upgrade() {
        bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, i)| *i != id);
    }
    if let Some(core) = core.upgrade() {
        log::info!("a bound update_engine client died");
        core.remove_listener(id);
    }
}

/// A bound callback as the core sees it.
struct UeListener {
    callback: Box<dyn UeCallback>,
    death: Mutex<Option<binder::DeathLink>>,
}

impl Listener for UeListener {
    fn on_status(&self, status: &status::Status) -> Result<(), Gone> {
        self.callback
            .status(codes::update_status(status.state), status.progress())
            .map_err(undeliverable)
    }

    fn on_complete(&self, code: ErrorCode, _message: &str) -> Result<(), Gone> {
        self.callback
            .complete(codes::error_code(code))
            .map_err(undeliverable)
    }
}

/// A `cleanupSuccessfulUpdate` callback.
struct CleanupCallback {
    callback: Strong<dyn aidl::IUpdateEngineCallback>,
}

impl CleanupListener for CleanupCallback {
    fn on_progress(&self, progress: f32) -> Result<(), Gone> {
        self.callback
            .onStatusUpdate(ue_status::CLEANUP_PREVIOUS_UPDATE, progress)
            .map_err(undeliverable)
    }

    fn on_complete(&self, result: &crate::Result<()>) {
        let code = match result {
            Ok(()) => ue::SUCCESS,
            Err(e) => codes::error_code(e.code),
        };
        if let Err(status) = self.callback.onPayloadApplicationComplete(code) {
            undeliverable(status);
        }
    }
}

fn undeliverable(status: Status) -> Gone {
    log::info!(
        "update_engine callback undeliverable: {:?}",
        binder::failure(&status)
    );
    Gone
}
