//! abupdate: an A/B over-the-air update engine for Android devices.
//!
//! Layering, dependencies pointing one way only (format → engine → adapters → service/CLI):
//! - formats, sans I/O (bytes in, typed values or bytes out): `payload`, `verity`, `avb`,
//!   `slot` (the `bootloader_control` record and the boot HAL rules), `lp`, `bsdiff`, `cow`
//!   (libsnapshot's COW images);
//! - the engine (`engine`): the apply state machine, fed payload bytes, reading and writing
//!   partitions and saving its resume state only through traits (`PayloadSource`,
//!   `SlotPartitions`, `CheckpointStore`);
//! - platform adapters, the only modules that open files, devices, sockets or services:
//!   `device` (partitions, `super`, verity of image files), `dm` (device-mapper), `nbd`
//!   (a snapshot's view served as a block device through the kernel's nbd driver, host tool),
//!   `boot_control` (the `misc` record, the boot HAL), `checkpoint_store`, `state_file`,
//!   `rollback_store` (the persisted AVB rollback floors; the policy is `avb::rollback`),
//!   `key_file` (trusted keys), `sysprop`,
//!   `download` and `source` (HTTP, files, descriptors);
//! - `updater`: one device's adapters put together around the engine, with the slot
//!   transitions (what the CLI and the service call);
//! - the service (`service`, Binder) and the CLI (binaries).
//!
//! Three names that sound alike: `engine` applies one payload to partitions it is handed;
//! `updater::Updater` is one device (its partitions, boot control, state directory) around the
//! engine, with the slot transitions; `service::UpdateBackend` is the trait the service calls,
//! which `service::UpdaterBackend` implements over an `Updater`.
//!
//! `build` (payloads, AVB and `super` images) is a host tool over files, used by the demo, the
//! tests and the benchmarks.

// Every public item is documented: Soong's platform lint set (`-D missing-docs`) requires it.
#![deny(missing_docs)]
// The rules of the house, outside tests: no unwrap/expect/panic (fail closed with an error
// instead), and every `unsafe` block says why it is sound.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::undocumented_unsafe_blocks
    )
)]

#[cfg(all(soong, feature = "host-tools"))]
compile_error!("`host-tools` are host tools: the AOSP build (Android.bp) leaves the feature off");

pub mod avb;
pub mod boot_control;
pub mod bsdiff;
#[cfg(feature = "host-tools")]
pub mod build;
pub mod checkpoint_store;
pub mod cow;
pub mod crypto;
pub mod decompress;
pub mod device;
pub mod dm;
pub mod download;
pub mod engine;
pub mod error;
pub mod feed;
pub mod hex;
pub mod key_file;
pub mod lp;
pub mod lz4;
pub mod lz4diff;
pub mod nbd;
pub mod payload;
pub mod postinstall;
pub mod puffin;
pub mod rollback_store;
pub mod service;
pub mod slot;
pub mod snapuserd;
pub mod source;
pub mod state_file;
pub mod sysprop;
pub mod updater;
pub mod verity;
pub mod zucchini;

pub use error::{Error, ErrorCode, Result};
