//! abupdate: an A/B over-the-air update engine for Android devices.
//!
//! Layering, dependencies pointing one way only:
//! - formats (`payload`, `verity`, `avb`, `slot`, `lp`): parse and produce bytes, no I/O;
//! - the engine (`engine`): the apply state machine, fed payload bytes, driving partition writes
//!   through traits;
//! - platform adapters (`device`, `dm` device-mapper, `checkpoint` store, boot control backends,
//!   HTTP, Binder, system properties);
//! - the service and the CLI (binaries).

pub mod avb;
pub mod bsdiff;
pub mod build;
pub mod device;
pub mod dm;
pub mod download;
pub mod engine;
pub mod error;
pub mod lp;
pub mod payload;
pub mod puffin;
pub mod rollback;
pub mod service;
pub mod slot;
pub mod source;
pub mod state_file;
pub mod sysprop;
pub mod updater;
pub mod verity;

pub use error::{Error, ErrorCode, Result};
