//! update_engine's Binder faces over the same service: `android.os.IUpdateEngine` as
//! "android.os.UpdateEngineService" and `android.os.IUpdateEngineStable` as
//! "android.os.UpdateEngineStableService", registered next to `abupdate` by
//! `abupdated --update-engine-compat`, so that android.os.UpdateEngine (system_server, GMS,
//! updater apps), Settings' UpdateEngineStable, update_engine_client and update_device.py
//! drive abupdate unchanged. One [`UpdateService`](crate::service::UpdateService) serves
//! every face: there is one update at a time whichever interface started it.
//!
//! The faces speak update_engine's numbers ([`codes`]): its UpdateStatus in callbacks, its
//! ErrorCode in completions and service-specific exceptions, thrown where update_engine's
//! UpdateAttempterAndroid throws them (66 applying after an applied update, 65 applying during
//! one, 1 for suspend/resume/cancel/reset with nothing to act on or bad headers).

pub mod client;
pub mod codes;
mod faces;
mod metadata_file;

pub use self::client::{UeCallbackRelay, UeEvent};
pub use self::faces::{StableService, UpdateEngineService};
pub use self::metadata_file::read_metadata;

/// The names update_engine's services register under.
pub const UPDATE_ENGINE_SERVICE: &str = "android.os.UpdateEngineService";
/// The stable interface's service name.
pub const STABLE_SERVICE: &str = "android.os.UpdateEngineStableService";

// The generated code is read from build.rs's OUT_DIR: Cargo builds only.
#[cfg(all(test, not(soong)))]
mod transaction_numbers;
