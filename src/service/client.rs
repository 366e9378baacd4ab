//! The client library: what the `abupdate` CLI uses to drive `abupdated` over Binder.

use std::fs::File;

use crate::error::{Error, ErrorCode, Result};
use crate::service::backend::{RollbackFloor, SlotInfo};
use crate::service::binder_adapter::{
    self as binder, aidl, BinderResult, Failure, Strong, Transport,
};
use crate::service::binder_service::CallbackRelay;
pub use crate::service::binder_service::Event;
use crate::service::status::Status;
use crate::service::wire;
use crate::service::SERVICE_NAME;

/// A connection to `abupdated`.
pub struct UpdateClient {
    connection: binder::Connection,
}

/// A registered callback; dropping it unregisters.
pub struct Watch {
    service: Strong<dyn aidl::IUpdateService>,
    callback: Strong<dyn aidl::IUpdateCallback>,
}

impl UpdateClient {
    /// Connects to the service registered as `abupdate` at `transport`.
    pub fn connect(transport: &Transport) -> Result<UpdateClient> {
        Ok(UpdateClient {
            connection: binder::connect(transport, SERVICE_NAME)?,
        })
    }

    /// `checkForUpdate`: the offer's summary line or `NO_UPDATE`; `token` may be empty.
    pub fn check_for_update(&self, feed_url: &str, device_id: &str, token: &str) -> Result<String> {
        call(self.service().checkForUpdate(feed_url, device_id, token))
    }

    /// `applyFeedOffer`: checks the feed and starts applying this device's offer; the offer's
    /// summary line, or `NO_UPDATE` when nothing started. `token` may be empty.
    pub fn apply_feed_offer(&self, feed_url: &str, device_id: &str, token: &str) -> Result<String> {
        call(self.service().applyFeedOffer(feed_url, device_id, token))
    }

    /// Starts applying the payload at `url`; `headers` are `KEY=VALUE` strings.
    pub fn apply(&self, url: &str, offset: u64, size: u64, headers: &[String]) -> Result<()> {
        let (offset, size) = (long(offset, "offset")?, long(size, "size")?);
        call(self.service().applyPayload(url, offset, size, headers))
    }

    /// Starts applying the payload in `file` (the service reads it through the descriptor).
    pub fn apply_file(&self, file: File, offset: u64, size: u64, headers: &[String]) -> Result<()> {
        let (offset, size) = (long(offset, "offset")?, long(size, "size")?);
        let pfd = binder::ParcelFileDescriptor::new(file);
        call(self.service().applyPayloadFd(&pfd, offset, size, headers))
    }

    /// `getStatus`: the service's state, progress and last error.
    pub fn status(&self) -> Result<Status> {
        wire::status_from_aidl(&call(self.service().getStatus())?)
    }

    /// `suspend`: pauses the running update between operations.
    pub fn suspend(&self) -> Result<()> {
        call(self.service().suspend())
    }

    /// `resume`: continues a suspended or interrupted update.
    pub fn resume(&self) -> Result<()> {
        call(self.service().resume())
    }

    /// `cancel`: stops the running update (it ends with 38).
    pub fn cancel(&self) -> Result<()> {
        call(self.service().cancel())
    }

    /// `resetStatus`: forgets the last update (its error, resume point and slot switch).
    pub fn reset(&self) -> Result<()> {
        call(self.service().resetStatus())
    }

    /// `getSlotInfo`: the slots' boot control state.
    pub fn slots(&self) -> Result<SlotInfo> {
        wire::slots_from_aidl(&call(self.service().getSlotInfo())?)
    }

    /// `getRollbackFloors`: the device's rollback index floors.
    pub fn rollback_floors(&self) -> Result<Vec<RollbackFloor>> {
        wire::floors_from_aidl(&call(self.service().getRollbackFloors())?)
    }

    /// `markBootSuccessful`: marks the running slot as booted successfully.
    pub fn mark_successful(&self) -> Result<()> {
        call(self.service().markBootSuccessful())
    }

    /// Asks whether a payload with this metadata can be applied here.
    pub fn verify(&self, metadata: &[u8]) -> Result<()> {
        call(self.service().verifyPayloadApplicable(metadata))
    }

    /// Calls `on_event` with the current status at once, then with every useful change
    /// and each update's end, on a Binder thread, until the [`Watch`] is dropped.
    pub fn watch(&self, on_event: impl Fn(Event) + Send + Sync + 'static) -> Result<Watch> {
        let callback = binder::new_callback_binder(CallbackRelay::new(on_event));
        call(self.service().registerCallback(&callback))?;
        Ok(Watch {
            service: self.service().clone(),
            callback,
        })
    }

    fn service(&self) -> &Strong<dyn aidl::IUpdateService> {
        &self.connection.service
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Err(e) = call(self.service.unregisterCallback(&self.callback)) {
            log::debug!("unregistering a callback: {e}");
        }
    }
}

/// The service's answer as our error type: its `ERROR_*` code, `PermissionDenied` for a
/// security exception, `DeviceError` when the service cannot be reached.
fn call<T>(result: BinderResult<T>) -> Result<T> {
    result.map_err(|status| match binder::failure(&status) {
        Failure::ServiceSpecific(code, message) => match ErrorCode::from_i32(code) {
            Some(code) => Error::new(code, message),
            None => crate::err!(
                DeviceError,
                "abupdated failed with unknown code {code}: {message}"
            ),
        },
        Failure::Security(message) => Error::new(ErrorCode::PermissionDenied, message),
        Failure::DeadObject => crate::err!(DeviceError, "abupdated is gone (died or restarted)"),
        Failure::Other(message) => crate::err!(DeviceError, "calling abupdated: {message}"),
    })
}

fn long(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| crate::err!(DeviceError, "{what} {n} does not fit a Binder long"))
}
