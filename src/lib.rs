//! abupdate: an A/B over-the-air update engine for Android devices.
//!
//! Layering, dependencies pointing one way only:
//! - formats (`payload`, `verity`, `avb`, `slot`): parse and produce bytes, no I/O;
//! - the engine (`engine`): the apply state machine, fed payload bytes, driving partition writes
//!   through traits;
//! - platform adapters (`device`, `checkpoint` store, boot control backends, HTTP, Binder);
//! - the service and the CLI (binaries).

pub mod error;
pub mod service;

pub use error::{Error, ErrorCode, Result};
