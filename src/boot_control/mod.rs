//! Platform adapter: the [`BootControl`] backends, which open the `misc` partition or talk to
//! the vendor's boot HAL. The record they keep and the rules for changing it are the sans-I/O
//! [`crate::slot`].
//!
//! - [`misc`]: keeps the `bootloader_control` record on the `misc` partition itself
//!   (`/dev/block/by-name/misc`, or `DIR/misc.img` in a host device directory), as AOSP's
//!   libboot_control does;
//! - `aidl` (Android builds with the `aosp` feature only): the vendor's
//!   `android.hardware.boot.IBootControl` service.
//!
//! [`BootControl`]: crate::slot::BootControl

pub mod misc;
pub mod vab_message;

#[cfg(all(target_os = "android", feature = "aosp"))]
pub mod aidl;

pub use misc::MiscBootControl;
