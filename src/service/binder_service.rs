//! The `IUpdateService` Binder object: thin methods that check arguments, name the
//! caller and call [`UpdateService`]; and the callback relay a client registers.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::error::{Error, ErrorCode};
use crate::service::backend::{parse_headers, ApplyRequest, CheckRequest, PayloadLocation};
use crate::service::binder_adapter::{
    self as binder, aidl, BinderResult, ParcelFileDescriptor, Status, Strong,
};
use crate::service::core::{Caller, UpdateService};
use crate::service::listeners::{Gone, Listener, ListenerId};
use crate::service::status;
use crate::service::wire;

/// Serves [`UpdateService`] over Binder. Make the Binder object with
/// [`binder::new_service_binder`].
pub struct BinderService {
    core: Arc<UpdateService>,
    registered: Arc<Mutex<Vec<Registered>>>,
}

struct Registered {
    callback: Strong<dyn aidl::IUpdateCallback>,
    id: ListenerId,
}

impl BinderService {
    /// The Binder face of `core`.
    pub fn new(core: Arc<UpdateService>) -> Self {
        BinderService {
            core,
            registered: Arc::default(),
        }
    }

    /// The `dumpsys` text for the caller of the transaction being served; refused unless it
    /// is allowed (the adapters write the refusal, as Android's services write theirs).
    pub fn dump_text(&self) -> crate::error::Result<String> {
        self.core.dump(caller())
    }

    fn registered(&self) -> std::sync::MutexGuard<'_, Vec<Registered>> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn caller() -> Caller {
    Caller::checked(binder::calling_uid())
}

/// The Binder form of a service error: a security exception for a refused caller, the
/// error code as a service-specific exception otherwise.
fn to_status(e: Error) -> Status {
    match e.code {
        ErrorCode::PermissionDenied => binder::security_status(&e.message),
        code => binder::service_specific_status(code.as_i32(), &e.message),
    }
}

fn request(
    source: PayloadLocation,
    offset: i64,
    size: i64,
    pairs: &[String],
) -> BinderResult<ApplyRequest> {
    let number = |n: i64, what: &str| {
        u64::try_from(n).map_err(|_| binder::illegal_argument_status(&format!("{what} {n} < 0")))
    };
    Ok(ApplyRequest {
        source,
        offset: number(offset, "offset")?,
        size: number(size, "size")?,
        headers: parse_headers(pairs).map_err(|e| binder::illegal_argument_status(&e.message))?,
    })
}

/// A feed request; an empty token means none (no check-in, no report sending).
fn check_request(feed_url: &str, device_id: &str, token: &str) -> CheckRequest {
    CheckRequest {
        feed_url: feed_url.to_owned(),
        device_id: device_id.to_owned(),
        token: (!token.is_empty()).then(|| token.to_owned()),
    }
}

impl aidl::IUpdateService for BinderService {
    fn applyPayload(
        &self,
        url: &str,
        offset: i64,
        size: i64,
        pairs: &[String],
    ) -> BinderResult<()> {
        let request = request(PayloadLocation::Url(url.to_owned()), offset, size, pairs)?;
        self.core.apply(caller(), request).map_err(to_status)
    }

    fn applyPayloadFd(
        &self,
        pfd: &ParcelFileDescriptor,
        offset: i64,
        size: i64,
        pairs: &[String],
    ) -> BinderResult<()> {
        let file = binder::file_of(pfd)
            .map_err(|e| to_status(Error::io("duplicating the payload descriptor", e)))?;
        let request = request(PayloadLocation::File(file), offset, size, pairs)?;
        self.core.apply(caller(), request).map_err(to_status)
    }

    fn suspend(&self) -> BinderResult<()> {
        self.core.suspend(caller()).map_err(to_status)
    }

    fn resume(&self) -> BinderResult<()> {
        self.core.resume(caller()).map_err(to_status)
    }

    fn cancel(&self) -> BinderResult<()> {
        self.core.cancel(caller()).map_err(to_status)
    }

    fn resetStatus(&self) -> BinderResult<()> {
        self.core.reset_status(caller()).map_err(to_status)
    }

    fn getStatus(&self) -> BinderResult<aidl::UpdateStatus> {
        Ok(wire::status_to_aidl(&self.core.status()))
    }

    fn registerCallback(&self, callback: &Strong<dyn aidl::IUpdateCallback>) -> BinderResult<()> {
        let remote = Arc::new(RemoteListener {
            callback: callback.clone(),
            death: Mutex::default(),
        });
        let id = self
            .core
            .add_listener(caller(), remote.clone())
            .map_err(to_status)?;
        let core = Arc::downgrade(&self.core);
        let registered = Arc::downgrade(&self.registered);
        let link =
            binder::link_to_death(callback, Box::new(move || forget(&core, &registered, id)));
        match link {
            Ok(link) => {
                // Watched for as long as the core keeps the listener.
                *remote.death.lock().unwrap_or_else(PoisonError::into_inner) = Some(link);
                self.registered().push(Registered {
                    callback: callback.clone(),
                    id,
                });
                Ok(())
            }
            Err(e) => {
                // Died before we could watch it: nothing to keep.
                log::info!("callback gone while registering: {e}");
                self.core.remove_listener(id);
                Ok(())
            }
        }
    }

    fn unregisterCallback(&self, callback: &Strong<dyn aidl::IUpdateCallback>) -> BinderResult<()> {
        let mut registered = self.registered();
        let Some(at) = registered
            .iter()
            .position(|r| binder::same_callback(&r.callback, callback))
        else {
            return Err(binder::illegal_argument_status(
                "callback is not registered",
            ));
        };
        let entry = registered.remove(at);
        drop(registered);
        self.core.remove_listener(entry.id);
        Ok(())
    }

    fn verifyPayloadApplicable(&self, metadata: &[u8]) -> BinderResult<()> {
        self.core
            .verify_applicable(caller(), metadata)
            .map_err(to_status)
    }

    fn getSlotInfo(&self) -> BinderResult<aidl::SlotInfo> {
        self.core
            .slot_info()
            .map(|s| wire::slots_to_aidl(&s))
            .map_err(to_status)
    }

    fn markBootSuccessful(&self) -> BinderResult<()> {
        self.core.mark_boot_successful(caller()).map_err(to_status)
    }

    fn getRollbackFloors(&self) -> BinderResult<Vec<aidl::RollbackFloor>> {
        self.core
            .rollback_floors()
            .map(|f| wire::floors_to_aidl(&f))
            .map_err(to_status)
    }

    fn checkForUpdate(&self, feed_url: &str, device_id: &str, token: &str) -> BinderResult<String> {
        self.core
            .check_for_update(caller(), &check_request(feed_url, device_id, token))
            .map_err(to_status)
    }

    fn applyFeedOffer(&self, feed_url: &str, device_id: &str, token: &str) -> BinderResult<String> {
        self.core
            .apply_feed_offer(caller(), &check_request(feed_url, device_id, token))
            .map_err(to_status)
    }
}

/// Drops a dead client's listener.
fn forget(core: &Weak<UpdateService>, registered: &Weak<Mutex<Vec<Registered>>>, id: ListenerId) {
    if let Some(registered) = registered.upgrade() {
        registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|r| r.id != id);
    }
    if let Some(core) = core.upgrade() {
        log::info!("a client with a status callback died");
        core.remove_listener(id);
    }
}

/// A registered client callback, as the core sees it.
struct RemoteListener {
    callback: Strong<dyn aidl::IUpdateCallback>,
    death: Mutex<Option<binder::DeathLink>>,
}

impl Listener for RemoteListener {
    fn on_status(&self, status: &status::Status) -> Result<(), Gone> {
        self.callback
            .onStatusUpdate(&wire::status_to_aidl(status))
            .map_err(undeliverable)
    }

    fn on_complete(&self, code: ErrorCode, message: &str) -> Result<(), Gone> {
        self.callback
            .onPayloadApplicationComplete(code.as_i32(), message)
            .map_err(undeliverable)
    }
}

// A oneway call fails only when the peer cannot take it; it will not get better.
fn undeliverable(status: Status) -> Gone {
    log::info!("callback undeliverable: {:?}", binder::failure(&status));
    Gone
}

/// What a client's callback receives.
#[derive(Debug)]
pub enum Event {
    /// The status changed.
    Status(status::Status),
    /// An update ended: `Ok` when the target slot is ready.
    Complete(Result<(), Error>),
}

/// The client side of `IUpdateCallback`: hands each event to a function.
pub struct CallbackRelay {
    on_event: Box<dyn Fn(Event) + Send + Sync>,
}

impl CallbackRelay {
    /// A relay handing each event to `on_event`.
    pub fn new(on_event: impl Fn(Event) + Send + Sync + 'static) -> Self {
        CallbackRelay {
            on_event: Box::new(on_event),
        }
    }
}

impl aidl::IUpdateCallback for CallbackRelay {
    fn onStatusUpdate(&self, status: &aidl::UpdateStatus) -> BinderResult<()> {
        match wire::status_from_aidl(status) {
            Ok(status) => (self.on_event)(Event::Status(status)),
            Err(e) => log::warn!("ignoring a status update: {e}"),
        }
        Ok(())
    }

    fn onPayloadApplicationComplete(&self, code: i32, message: &str) -> BinderResult<()> {
        let result = match wire::error_code(code) {
            Ok(ErrorCode::Ok) => Ok(()),
            Ok(code) => Err(Error::new(code, message)),
            Err(e) => Err(e),
        };
        (self.on_event)(Event::Complete(result));
        Ok(())
    }
}
