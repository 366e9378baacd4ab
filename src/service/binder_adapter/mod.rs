//! The one place that knows which Binder implementation is in use.
//!
//! - On Android (`target_os = "android"`, built by Soong): the platform's `binder` crate
//!   and the `com.abupdate` AIDL crate made by `aidl_interface` in Android.bp.
//! - On a Linux host: the `rsbinder` crates with the code that `build/aidl.rs` generates,
//!   over the kernel driver (`binder:/dev/binder`) or RPC over a unix socket
//!   (`unix:///run/abupdate.sock?profile=android13plus`), picked at run time from a URI.
//!
//! Both sides export the same names: the AIDL types in [`aidl`], `Strong`, `Status`,
//! `BinderResult`, `ParcelFileDescriptor`, `Transport`, and the functions below. The
//! service (`binder_service`), the client and the daemon use only these.

#[cfg(target_os = "android")]
mod android;
#[cfg(target_os = "android")]
pub use self::android::*;

#[cfg(not(target_os = "android"))]
mod host;
#[cfg(not(target_os = "android"))]
pub use self::host::*;

/// What a failed Binder call means to us, whichever crate reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The service answered with one of its `ERROR_*` codes.
    ServiceSpecific(i32, String),
    /// The service refused the caller (`EX_SECURITY`).
    Security(String),
    /// The peer is gone.
    DeadObject,
    /// Anything else: transport errors, other exceptions.
    Other(String),
}
