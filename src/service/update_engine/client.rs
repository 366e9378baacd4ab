//! The client side of update_engine's callbacks, and a connection to
//! "android.os.UpdateEngineService", for `abupdate update-engine-client` and the tests.

use crate::error::Result;
use crate::service::binder_adapter::{self as binder, aidl::ue as aidl, BinderResult, Transport};

/// What an update_engine callback hears, in update_engine's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UeEvent {
    /// `onStatusUpdate(status, percent)`.
    Status(i32, f32),
    /// `onPayloadApplicationComplete(errorCode)`.
    Complete(i32),
}

/// Implements both callback interfaces by handing each call to a function.
pub struct UeCallbackRelay {
    on_event: Box<dyn Fn(UeEvent) + Send + Sync>,
}

impl UeCallbackRelay {
    /// A relay handing each event to `on_event`.
    pub fn new(on_event: impl Fn(UeEvent) + Send + Sync + 'static) -> Self {
        UeCallbackRelay {
            on_event: Box::new(on_event),
        }
    }
}

impl aidl::IUpdateEngineCallback for UeCallbackRelay {
    fn onStatusUpdate(&self, status: i32, percent: f32) -> BinderResult<()> {
        (self.on_event)(UeEvent::Status(status, percent));
        Ok(())
    }

    fn onPayloadApplicationComplete(&self, code: i32) -> BinderResult<()> {
        (self.on_event)(UeEvent::Complete(code));
        Ok(())
    }
}

impl aidl::IUpdateEngineStableCallback for UeCallbackRelay {
    fn onStatusUpdate(&self, status: i32, percent: f32) -> BinderResult<()> {
        (self.on_event)(UeEvent::Status(status, percent));
        Ok(())
    }

    fn onPayloadApplicationComplete(&self, code: i32) -> BinderResult<()> {
        (self.on_event)(UeEvent::Complete(code));
        Ok(())
    }
}

/// A connection to "android.os.UpdateEngineService" at `transport`.
pub fn connect(transport: &Transport) -> Result<binder::Session<dyn aidl::IUpdateEngine>> {
    binder::connect_to(transport, super::UPDATE_ENGINE_SERVICE)
}

/// A connection to "android.os.UpdateEngineStableService" at `transport`.
pub fn connect_stable(
    transport: &Transport,
) -> Result<binder::Session<dyn aidl::IUpdateEngineStable>> {
    binder::connect_to(transport, super::STABLE_SERVICE)
}
