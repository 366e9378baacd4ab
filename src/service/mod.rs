//! The system service `abupdated` and its client library.
//!
//! - [`core::UpdateService`]: the service, independent of Binder, over the
//!   [`backend::UpdateBackend`] trait, which [`updater_backend::UpdaterBackend`] implements with the
//!   update engine;
//! - [`binder_service`]: the `IUpdateService` Binder object, thin methods over the core;
//! - [`binder_adapter`]: the only module that knows whether Binder is the AOSP `binder`
//!   crate (Android) or `rsbinder` (Linux host: kernel driver or RPC over a socket);
//! - [`client`]: what the `abupdate` CLI uses to talk to the service.

pub mod backend;
pub mod binder_adapter;
pub mod binder_service;
pub mod cleanup;
pub mod client;
pub mod control;
pub mod core;
mod dump;
mod listeners;
mod notifier;
pub mod persist;
pub mod redact;
mod refusals;
pub mod reports;
pub mod status;
pub mod update_engine;
pub mod updater_backend;
mod wire;

pub use self::backend::{
    ApplyPhase, ApplyProgress, ApplyRequest, CheckRequest, FeedApply, PayloadLocation,
    RollbackFloor, SlotInfo, SlotState, UpdateBackend,
};
pub use self::control::Control;
pub use self::core::{default_allowed_uids, Caller, Config, UpdateService};
pub use self::listeners::{Gone, Listener, ListenerId, MAX_PER_UID as MAX_LISTENERS_PER_UID};
pub use self::status::{State, Status};
pub use self::updater_backend::{BackendConfig, FeedSettings, UpdaterBackend};

/// The name the service registers under.
pub const SERVICE_NAME: &str = "abupdate";
