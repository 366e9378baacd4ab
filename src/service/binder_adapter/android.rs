//! Android side of the adapter: the platform's `binder` crate and the AIDL crate that
//! `aidl_interface { name: "com.abupdate" }` generates (Android.bp). Built by Soong only.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::sync::Mutex;

pub use binder::{Interface, ParcelFileDescriptor, Status, Strong};

use binder::{BinderFeatures, DeathRecipient, ExceptionCode, FromIBinder, StatusCode};

use super::Failure;
use crate::error::{Error, Result};
use crate::service::binder_service::{BinderService, CallbackRelay};
use crate::service::update_engine::{StableService, UeCallbackRelay, UpdateEngineService};

/// `Result` of a Binder method, as the generated traits spell it.
pub type BinderResult<T> = binder::Result<T>;

/// The AIDL types, at the same paths as on the host.
pub mod aidl {
    pub use com_abupdate::aidl::com::abupdate::IUpdateCallback::{
        BnUpdateCallback, IUpdateCallback,
    };
    /// `IUpdateService.STATE_*` and `ERROR_*`.
    pub use com_abupdate::aidl::com::abupdate::IUpdateService as consts;
    pub use com_abupdate::aidl::com::abupdate::IUpdateService::{BnUpdateService, IUpdateService};
    pub use com_abupdate::aidl::com::abupdate::{
        RollbackFloor::RollbackFloor, SlotInfo::SlotInfo, SlotState::SlotState,
        UpdateStatus::UpdateStatus,
    };

    /// update_engine's interfaces, from `aidl_interface { name: "abupdate.update_engine" }`.
    pub mod ue {
        pub use abupdate_update_engine::aidl::android::os::IUpdateEngine::{
            BnUpdateEngine, IUpdateEngine,
        };
        pub use abupdate_update_engine::aidl::android::os::IUpdateEngineCallback::{
            BnUpdateEngineCallback, IUpdateEngineCallback,
        };
        pub use abupdate_update_engine::aidl::android::os::IUpdateEngineStable::{
            BnUpdateEngineStable, IUpdateEngineStable,
        };
        pub use abupdate_update_engine::aidl::android::os::IUpdateEngineStableCallback::{
            BnUpdateEngineStableCallback, IUpdateEngineStableCallback,
        };
    }
}

/// keystore2's and KeyMint's AIDL types, from the platform's crates
/// (`android.system.keystore2-V4-rust`, `android.hardware.security.keymint-V3-rust`), for the
/// device key (`crate::feed::keystore_key`). Only with the `keystore` feature: see README, "The
/// device key on Android".
#[cfg(feature = "keystore")]
pub mod keystore {
    pub use android_hardware_security_keymint::aidl::android::hardware::security::keymint;
    pub use android_system_keystore2::aidl::android::system::keystore2;
}

/// gsid's AIDL types, from `abupdate.gsi-rust` (Android.bp), for the COW
/// images on `/data` (`crate::device::image_service`). Only with the `gsid` feature.
#[cfg(feature = "gsid")]
pub mod gsi {
    pub use abupdate_gsi::aidl::android::gsi;
}

/// A Binder object of any interface, as served or watched for death.
pub type AnyBinder = binder::SpIBinder;

/// On Android there is one transport: `/dev/binder` and the platform's servicemanager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport;

impl Transport {
    /// Accepts `binder:/dev/binder` (the default of `--binder`) and nothing else.
    pub fn parse(text: &str) -> Result<Transport> {
        match text {
            "binder:/dev/binder" => Ok(Transport),
            _ => crate::bail!(
                DeviceError,
                "on Android the transport is binder:/dev/binder, not {text:?}"
            ),
        }
    }

    /// Always true: the kernel driver.
    pub fn is_kernel(&self) -> bool {
        true
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("binder:/dev/binder")
    }
}

/// A registered service; its threads belong to the process.
pub struct Served(());

impl Served {
    /// Does nothing: the threads run until the process exits.
    pub fn stop(self) {}
}

/// Registers `service` as `name` with the service manager and starts up to `threads` Binder
/// threads.
pub fn serve(
    _transport: &Transport,
    name: &str,
    service: Strong<dyn aidl::IUpdateService>,
    threads: u32,
) -> Result<Served> {
    serve_all(
        _transport,
        vec![(name.to_owned(), service.as_binder())],
        threads,
    )
}

/// Registers each `(name, object)` with the service manager and starts the thread pool.
pub fn serve_all(
    _transport: &Transport,
    services: Vec<(String, AnyBinder)>,
    threads: u32,
) -> Result<Served> {
    binder::ProcessState::set_thread_pool_max_thread_count(threads);
    binder::ProcessState::start_thread_pool();
    for (name, object) in services {
        binder::add_service(&name, object)
            .map_err(|e| binder_error(&format!("registering {name}"), e))?;
    }
    Ok(Served(()))
}

/// Blocks the calling thread serving Binder requests; returns only when the pool ends.
pub fn join(_served: Served) -> Result<()> {
    binder::ProcessState::join_thread_pool();
    crate::bail!(DeviceError, "the binder thread pool ended")
}

/// The `IUpdateService` Binder object for `service`.
pub fn new_service_binder(service: BinderService) -> Strong<dyn aidl::IUpdateService> {
    aidl::BnUpdateService::new_binder(service, BinderFeatures::default())
}

/// A callback Binder object for `relay`.
pub fn new_callback_binder(relay: CallbackRelay) -> Strong<dyn aidl::IUpdateCallback> {
    aidl::BnUpdateCallback::new_binder(relay, BinderFeatures::default())
}

/// A client's connection to `IUpdateService`.
pub struct Connection {
    /// The service's proxy.
    pub service: Strong<dyn aidl::IUpdateService>,
}

/// Waits for the service `name` and connects to it, ready to receive callbacks.
pub fn connect(_transport: &Transport, name: &str) -> Result<Connection> {
    // Callbacks arrive as incoming transactions: they need threads of our own.
    binder::ProcessState::start_thread_pool();
    let service = binder::wait_for_interface::<dyn aidl::IUpdateService>(name)
        .map_err(|e| binder_error(&format!("looking up {name}"), e))?;
    Ok(Connection { service })
}

/// A client's connection to a service of any interface.
pub struct Session<T: FromIBinder + ?Sized> {
    /// The service's proxy.
    pub service: Strong<T>,
}

/// Waits for the service `name` of interface `T` and connects to it, ready to receive
/// callbacks.
pub fn connect_to<T: FromIBinder + ?Sized>(
    _transport: &Transport,
    name: &str,
) -> Result<Session<T>> {
    binder::ProcessState::start_thread_pool();
    let service = binder::wait_for_interface::<T>(name)
        .map_err(|e| binder_error(&format!("looking up {name}"), e))?;
    Ok(Session { service })
}

/// The caller of the transaction being served.
pub fn calling_uid() -> u32 {
    binder::ThreadState::get_calling_uid()
}

/// A service-specific error status carrying one of the `ERROR_*` codes.
pub fn service_specific_status(code: i32, message: &str) -> Status {
    Status::new_service_specific_error_str(code, Some(message))
}

/// An `EX_SECURITY` status: the caller may not do this.
pub fn security_status(message: &str) -> Status {
    Status::new_exception_str(ExceptionCode::SECURITY, Some(message))
}

/// An `EX_ILLEGAL_ARGUMENT` status.
pub fn illegal_argument_status(message: &str) -> Status {
    Status::new_exception_str(ExceptionCode::ILLEGAL_ARGUMENT, Some(message))
}

/// Sorts a failed call's status.
pub fn failure(status: &Status) -> Failure {
    match status.exception_code() {
        ExceptionCode::SERVICE_SPECIFIC => {
            Failure::ServiceSpecific(status.service_specific_error(), status.get_description())
        }
        ExceptionCode::SECURITY => Failure::Security(status.get_description()),
        _ if status.transaction_error() == StatusCode::DEAD_OBJECT => Failure::DeadObject,
        _ => Failure::Other(status.get_description()),
    }
}

/// A duplicate of the caller's file descriptor, owned by us.
pub fn file_of(pfd: &ParcelFileDescriptor) -> std::io::Result<File> {
    let owned: &std::os::fd::OwnedFd = pfd.as_ref();
    Ok(File::from(owned.try_clone()?))
}

/// Whether two callback handles name the same Binder object.
pub fn same_callback(
    a: &Strong<dyn aidl::IUpdateCallback>,
    b: &Strong<dyn aidl::IUpdateCallback>,
) -> bool {
    a.as_binder() == b.as_binder()
}

/// Runs `on_death` once when the process behind `callback` dies, while the returned link is
/// kept.
pub fn link_to_death(
    callback: &Strong<dyn aidl::IUpdateCallback>,
    on_death: Box<dyn Fn() + Send + Sync>,
) -> Result<DeathLink> {
    link_binder_to_death(&callback.as_binder(), on_death)
}

/// Runs `on_death` once when the process behind `object` dies, while the returned link is kept.
pub fn link_binder_to_death(
    object: &AnyBinder,
    on_death: Box<dyn Fn() + Send + Sync>,
) -> Result<DeathLink> {
    let mut recipient = DeathRecipient::new(move || on_death());
    object
        .clone()
        .link_to_death(&mut recipient)
        .map_err(|e| binder_error("linking to a callback's death", e))?;
    Ok(DeathLink {
        _recipient: Mutex::new(recipient),
    })
}

/// Keeps a death notification alive: dropping the recipient unlinks it.
pub struct DeathLink {
    _recipient: Mutex<DeathRecipient>,
}

impl Interface for BinderService {
    // The allow-list, not `android.permission.DUMP`: the Rust binder crate has no permission
    // check, and the UIDs that run `dumpsys` (shell, and root/system for bug reports) are in
    // the default list.
    fn dump(&self, writer: &mut dyn std::io::Write, _args: &[&CStr]) -> BinderResult<()> {
        let (text, refused) = match self.dump_text() {
            Ok(text) => (text, false),
            Err(e) => (format!("Permission Denial: {}\n", e.message), true),
        };
        writer
            .write_all(text.as_bytes())
            .map_err(|_| Status::from(StatusCode::FAILED_TRANSACTION))?;
        if refused {
            return Err(Status::from(StatusCode::PERMISSION_DENIED));
        }
        Ok(())
    }
}

impl Interface for CallbackRelay {}
impl Interface for UpdateEngineService {}
impl Interface for StableService {}
impl Interface for UeCallbackRelay {}

/// The `IUpdateEngine` Binder object for `service`.
pub fn new_update_engine_binder(
    service: UpdateEngineService,
) -> Strong<dyn aidl::ue::IUpdateEngine> {
    aidl::ue::BnUpdateEngine::new_binder(service, BinderFeatures::default())
}

/// The `IUpdateEngineStable` Binder object for `service`.
pub fn new_stable_binder(service: StableService) -> Strong<dyn aidl::ue::IUpdateEngineStable> {
    aidl::ue::BnUpdateEngineStable::new_binder(service, BinderFeatures::default())
}

/// An `IUpdateEngineCallback` Binder object for `relay`.
pub fn new_ue_callback_binder(
    relay: UeCallbackRelay,
) -> Strong<dyn aidl::ue::IUpdateEngineCallback> {
    aidl::ue::BnUpdateEngineCallback::new_binder(relay, BinderFeatures::default())
}

/// An `IUpdateEngineStableCallback` Binder object for `relay`.
pub fn new_stable_callback_binder(
    relay: UeCallbackRelay,
) -> Strong<dyn aidl::ue::IUpdateEngineStableCallback> {
    aidl::ue::BnUpdateEngineStableCallback::new_binder(relay, BinderFeatures::default())
}

/// Logs to logcat under `tag`, URLs redacted.
pub fn init_logging(tag: &str) {
    let logger = android_logger::AndroidLogger::new(
        android_logger::Config::default()
            .with_tag(tag)
            .with_max_level(log::LevelFilter::Info),
    );
    // Fails only if a logger is installed already, which then stays.
    let _ = crate::service::redact::install_logger(logger, log::LevelFilter::Info);
}

fn binder_error(what: &str, code: StatusCode) -> Error {
    crate::err!(DeviceError, "{what}: binder error {code:?}")
}
