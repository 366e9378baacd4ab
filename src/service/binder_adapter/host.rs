//! Linux host side of the adapter: `rsbinder` (kernel driver or RPC over a socket).

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};

use rsbinder::rpc::FileDescriptorTransportMode;
use rsbinder::{DeathRecipient, ExceptionCode, FromIBinder, StatusCode, WIBinder};

pub use rsbinder::{BinderResult, Interface, ParcelFileDescriptor, Status, Strong};

use super::Failure;
use crate::error::{Error, Result};
use crate::service::binder_service::{BinderService, CallbackRelay};
use crate::service::update_engine::{StableService, UeCallbackRelay, UpdateEngineService};

// rsbinder's generated code: undocumented, as AOSP allows for generated code.
#[allow(missing_docs)]
mod generated {
    rsbinder::include_aidl!("abupdate_aidl");
}

/// The AIDL types, at the same paths as on Android.
pub mod aidl {
    pub use super::generated::com::abupdate::IUpdateCallback::{BnUpdateCallback, IUpdateCallback};
    /// `IUpdateService.STATE_*` and `ERROR_*`.
    pub use super::generated::com::abupdate::IUpdateService as consts;
    pub use super::generated::com::abupdate::IUpdateService::{BnUpdateService, IUpdateService};
    pub use super::generated::com::abupdate::{
        RollbackFloor::RollbackFloor, SlotInfo::SlotInfo, SlotState::SlotState,
        UpdateStatus::UpdateStatus,
    };

    /// update_engine's interfaces (`aidl/android/os`), served in `--update-engine-compat` mode.
    pub mod ue {
        pub use super::super::generated::android::os::IUpdateEngine::{
            BnUpdateEngine, IUpdateEngine,
        };
        pub use super::super::generated::android::os::IUpdateEngineCallback::{
            BnUpdateEngineCallback, IUpdateEngineCallback,
        };
        pub use super::super::generated::android::os::IUpdateEngineStable::{
            BnUpdateEngineStable, IUpdateEngineStable,
        };
        pub use super::super::generated::android::os::IUpdateEngineStableCallback::{
            BnUpdateEngineStableCallback, IUpdateEngineStableCallback,
        };
    }
}

/// keystore2's and KeyMint's AIDL types, at the paths of the platform's crates, for the device
/// key (`crate::feed::keystore_key`). A host has no keystore2: these are the subset in
/// `platform_aidl/`, which the host tests serve with a stand-in.
pub mod keystore {
    pub use super::generated::android::hardware::security::keymint;
    pub use super::generated::android::system::keystore2;
}

/// gsid's AIDL types (`android.gsi`), at the paths of the platform's crate, for the COW images
/// on `/data` (`crate::device::image_service`). A host has no gsid: these are the subset in
/// `platform_aidl/`, which the host tests serve with a stand-in.
pub mod gsi {
    pub use super::generated::android::gsi;
}

/// A Binder object of any interface, as served or watched for death.
pub type AnyBinder = rsbinder::SIBinder;

/// Where the service listens and clients connect.
///
/// `binder:/dev/binder` (a kernel Binder device, service manager `rsb_hub`), or any
/// rsbinder URI: `binder://?driver=/dev/binderfs/binder`, `unix:///run/abupdate.sock`,
/// `unix-abstract://abupdate`. RPC endpoints should add `?profile=android13plus`: the
/// older wire cannot carry server-to-client callbacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transport {
    uri: rsbinder::Uri,
    /// As the user spelled it (`binder:/dev/binder`), for messages.
    text: String,
}

impl Transport {
    /// Parses a transport URI (see [`Transport`]); `binder:PATH` is the kernel driver at `PATH`.
    pub fn parse(text: &str) -> Result<Transport> {
        let uri = match text.strip_prefix("binder:") {
            // `binder:/dev/binder`: a device path, the short form for the kernel driver.
            Some(path) if !path.starts_with("//") => {
                if !path.starts_with('/') {
                    crate::bail!(
                        DeviceError,
                        "binder device {path:?} is not an absolute path"
                    );
                }
                rsbinder::Uri::new(rsbinder::entry::KernelEndpoint::default().with_driver(path))
            }
            _ => text
                .parse::<rsbinder::Uri>()
                .map_err(|e| crate::err!(DeviceError, "binder transport {text:?}: {e}"))?,
        };
        if uri.service().is_some() {
            crate::bail!(DeviceError, "binder transport {text:?}: no #service here");
        }
        Ok(Transport {
            uri,
            text: text.to_owned(),
        })
    }

    /// Whether this is the kernel driver (not RPC).
    pub fn is_kernel(&self) -> bool {
        self.uri.endpoint().is_kernel()
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A running server; dropping it does not stop a kernel server (its threads belong to
/// the process), an RPC server stops with [`Served::stop`].
pub struct Served {
    guard: Option<rsbinder::ServerGuard>,
}

impl Served {
    /// Stops an RPC server and waits for its threads.
    pub fn stop(mut self) {
        if let Some(guard) = self.guard.take() {
            guard.stop_and_join();
        }
    }
}

/// Registers `service` as `name` and serves it with `threads` Binder threads, in the
/// background.
pub fn serve(
    transport: &Transport,
    name: &str,
    service: Strong<dyn aidl::IUpdateService>,
    threads: u32,
) -> Result<Served> {
    serve_all(
        transport,
        vec![(name.to_owned(), service.as_binder())],
        threads,
    )
}

/// Registers each `(name, object)` and serves them all with `threads` Binder threads, in the
/// background (one RPC endpoint, or the kernel's service manager).
pub fn serve_all(
    transport: &Transport,
    services: Vec<(String, AnyBinder)>,
    threads: u32,
) -> Result<Served> {
    let server = match transport.uri.endpoint() {
        // Kernel Binder: the process-wide thread pool is sized when `serve` opens the
        // driver, so the count goes into the endpoint, not the options.
        rsbinder::Endpoint::Kernel(kernel) => {
            let mut endpoint = rsbinder::entry::KernelEndpoint::default().with_threads(threads);
            if let Some(driver) = kernel.driver() {
                endpoint = endpoint.with_driver(driver);
            }
            rsbinder::serve(rsbinder::Uri::new(endpoint))
        }
        endpoint => {
            // `applyPayloadFd` carries a descriptor: unix sockets can pass it (SCM_RIGHTS).
            let fds = endpoint.supports_fd_passing();
            rsbinder::serve(transport.uri.clone()).map(|s| {
                s.with(|o| {
                    o.threads = Some(threads);
                    if fds {
                        o.fd_modes = Some(vec![FileDescriptorTransportMode::Unix]);
                    }
                })
            })
        }
    };
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    let names = names.join(", ");
    let mut server = server.map_err(|e| binder_error(&format!("serving on {transport}"), e))?;
    for (name, binder) in services {
        server = server
            .add(&name, binder)
            .map_err(|e| binder_error(&format!("registering {name} on {transport}"), e))?;
    }
    let guard = server
        .spawn()
        .map_err(|e| binder_error(&format!("serving {names} on {transport}"), e))?;
    Ok(Served { guard: Some(guard) })
}

/// Blocks the calling thread serving Binder requests (kernel) or forever (RPC, whose
/// threads run on their own).
pub fn join(served: Served) -> Result<()> {
    if served.guard.as_ref().is_some_and(|g| g.server().is_some()) {
        loop {
            std::thread::park();
        }
    }
    rsbinder::ProcessState::join_thread_pool()
        .map_err(|e| binder_error("joining the binder thread pool", e))
}

/// The `IUpdateService` Binder object for `service`.
pub fn new_service_binder(service: BinderService) -> Strong<dyn aidl::IUpdateService> {
    aidl::BnUpdateService::new_binder(service)
}

/// A callback Binder object for `relay`.
pub fn new_callback_binder(relay: CallbackRelay) -> Strong<dyn aidl::IUpdateCallback> {
    aidl::BnUpdateCallback::new_binder(relay)
}

/// A client's connection; keeps the RPC session open.
pub struct Connection {
    /// The service's proxy.
    pub service: Strong<dyn aidl::IUpdateService>,
    _client: rsbinder::Client,
}

/// Connects to the service `name`, ready to receive callbacks.
pub fn connect(transport: &Transport, name: &str) -> Result<Connection> {
    let client = rsbinder::Client::open_with(transport.uri.clone(), |o, endpoint| {
        if !endpoint.is_kernel() {
            // The server's oneway callbacks travel over a connection the client offers.
            o.incoming_connections = Some(1);
        }
        if endpoint.supports_fd_passing() {
            o.fd_mode = Some(FileDescriptorTransportMode::Unix);
        }
    })
    .map_err(|e| binder_error(&format!("connecting to {transport}"), e))?;
    if transport.is_kernel() {
        // Callbacks arrive as incoming transactions: they need threads of our own.
        rsbinder::ProcessState::start_thread_pool();
    }
    let service = client
        .get::<dyn aidl::IUpdateService>(name)
        .map_err(|e| binder_error(&format!("looking up {name} at {transport}"), e))?;
    Ok(Connection {
        service,
        _client: client,
    })
}

/// A client's connection to a service of any interface; keeps the RPC session open.
pub struct Session<T: FromIBinder + ?Sized> {
    /// The service's proxy.
    pub service: Strong<T>,
    _client: rsbinder::Client,
}

/// Connects to the service `name` of interface `T`, ready to receive callbacks.
pub fn connect_to<T: FromIBinder + ?Sized>(
    transport: &Transport,
    name: &str,
) -> Result<Session<T>> {
    let client = rsbinder::Client::open_with(transport.uri.clone(), |o, endpoint| {
        if !endpoint.is_kernel() {
            o.incoming_connections = Some(1);
        }
        if endpoint.supports_fd_passing() {
            o.fd_mode = Some(FileDescriptorTransportMode::Unix);
        }
    })
    .map_err(|e| binder_error(&format!("connecting to {transport}"), e))?;
    if transport.is_kernel() {
        rsbinder::ProcessState::start_thread_pool();
    }
    let service = client
        .get::<T>(name)
        .map_err(|e| binder_error(&format!("looking up {name} at {transport}"), e))?;
    Ok(Session {
        service,
        _client: client,
    })
}

/// The caller of the transaction being served.
pub fn calling_uid() -> u32 {
    rsbinder::get_calling_uid()
}

/// A service-specific error status carrying one of the `ERROR_*` codes.
pub fn service_specific_status(code: i32, message: &str) -> Status {
    Status::new_service_specific_error(code, Some(message.to_owned()))
}

/// An `EX_SECURITY` status: the caller may not do this.
pub fn security_status(message: &str) -> Status {
    Status::from((ExceptionCode::Security, message))
}

/// An `EX_ILLEGAL_ARGUMENT` status.
pub fn illegal_argument_status(message: &str) -> Status {
    Status::from((ExceptionCode::IllegalArgument, message))
}

/// Sorts a failed call's status.
pub fn failure(status: &Status) -> Failure {
    let message = status.message().unwrap_or_default().to_owned();
    match status.exception_code() {
        ExceptionCode::ServiceSpecific => {
            Failure::ServiceSpecific(status.service_specific_error(), message)
        }
        ExceptionCode::Security => Failure::Security(message),
        _ if status.transaction_error() == StatusCode::DeadObject => Failure::DeadObject,
        code => Failure::Other(format!("{code}: {status:?}")),
    }
}

/// A duplicate of the caller's file descriptor, owned by us.
pub fn file_of(pfd: &ParcelFileDescriptor) -> std::io::Result<File> {
    Ok(File::from(pfd.as_fd().try_clone_to_owned()?))
}

/// Whether two callback handles name the same Binder object.
pub fn same_callback(
    a: &Strong<dyn aidl::IUpdateCallback>,
    b: &Strong<dyn aidl::IUpdateCallback>,
) -> bool {
    a.as_binder() == b.as_binder()
}

/// Runs `on_death` once when the process behind `callback` dies. The notification is
/// live while the returned link is kept.
pub fn link_to_death(
    callback: &Strong<dyn aidl::IUpdateCallback>,
    on_death: Box<dyn Fn() + Send + Sync>,
) -> Result<DeathLink> {
    link_binder_to_death(&callback.as_binder(), on_death)
}

/// Runs `on_death` once when the process behind `binder` dies, while the link is kept.
pub fn link_binder_to_death(
    binder: &AnyBinder,
    on_death: Box<dyn Fn() + Send + Sync>,
) -> Result<DeathLink> {
    let recipient = Arc::new(Obituary {
        on_death: Mutex::new(Some(on_death)),
    });
    binder
        .link_to_death_arc(&recipient)
        .map_err(|e| binder_error("linking to a callback's death", e))?;
    Ok(DeathLink {
        _recipient: recipient,
    })
}

/// Keeps a death notification alive.
pub struct DeathLink {
    _recipient: Arc<Obituary>,
}

struct Obituary {
    on_death: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl DeathRecipient for Obituary {
    fn binder_died(&self, _who: &WIBinder) {
        let on_death = self
            .on_death
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(on_death) = on_death {
            on_death();
        }
    }
}

impl Interface for BinderService {
    fn dump(&self, writer: &mut dyn std::io::Write, _args: &[String]) -> rsbinder::Result<()> {
        let (text, refused) = match self.dump_text() {
            Ok(text) => (text, false),
            Err(e) => (format!("Permission Denial: {}\n", e.message), true),
        };
        writer
            .write_all(text.as_bytes())
            .map_err(|_| StatusCode::FailedTransaction)?;
        if refused {
            return Err(StatusCode::PermissionDenied);
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
    aidl::ue::BnUpdateEngine::new_binder(service)
}

/// The `IUpdateEngineStable` Binder object for `service`.
pub fn new_stable_binder(service: StableService) -> Strong<dyn aidl::ue::IUpdateEngineStable> {
    aidl::ue::BnUpdateEngineStable::new_binder(service)
}

/// An `IUpdateEngineCallback` Binder object for `relay`.
pub fn new_ue_callback_binder(
    relay: UeCallbackRelay,
) -> Strong<dyn aidl::ue::IUpdateEngineCallback> {
    aidl::ue::BnUpdateEngineCallback::new_binder(relay)
}

/// An `IUpdateEngineStableCallback` Binder object for `relay`.
pub fn new_stable_callback_binder(
    relay: UeCallbackRelay,
) -> Strong<dyn aidl::ue::IUpdateEngineStableCallback> {
    aidl::ue::BnUpdateEngineStableCallback::new_binder(relay)
}

fn binder_error(what: &str, code: StatusCode) -> Error {
    crate::err!(DeviceError, "{what}: binder error {code:?}")
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info), URLs redacted.
pub fn init_logging(_tag: &str) {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let level = logger.filter();
    // Fails only if a logger is installed already, which then stays.
    let _ = crate::service::redact::install_logger(logger, level);
}

#[cfg(test)]
mod tests {
    /// The stand-in gsid AIDL (`platform_aidl/android/gsi`) numbers its methods as AOSP 15's
    /// `IGsiService` (`openImageService` is its 23rd method) and `IImageService`: a method moved
    /// or dropped there would call another method of the real gsid.
    #[test]
    fn gsid_transaction_codes_are_the_platforms() {
        use super::generated::android::gsi::{
            IGsiService::transactions as service, IImageService::transactions as image,
        };
        let first = rsbinder::FIRST_CALL_TRANSACTION;
        assert_eq!(service::r#commitGsiChunkFromStream, first);
        assert_eq!(service::r#zeroPartition, first + 21);
        assert_eq!(service::r#openImageService, first + 22);
        assert_eq!(service::r#suggestScratchSize, first + 25);
        assert_eq!(
            vec![
                image::r#createBackingImage,
                image::r#deleteBackingImage,
                image::r#mapImageDevice,
                image::r#unmapImageDevice,
                image::r#backingImageExists,
                image::r#isImageMapped,
                image::r#getAvbPublicKey,
                image::r#getAllBackingImages,
                image::r#zeroFillNewImage,
                image::r#removeAllImages,
                image::r#disableImage,
                image::r#removeDisabledImages,
                image::r#isImageDisabled,
                image::r#getMappedImageDevice,
            ],
            (0..14).map(|i| first + i).collect::<Vec<_>>()
        );
    }

    /// The stand-in keystore2 AIDL (`platform_aidl/`) numbers its methods as the platform's:
    /// AIDL gives each method `FIRST_CALL_TRANSACTION` plus its index in the interface, and these
    /// are the indexes of AOSP's `IKeystoreService` (V4: `getNumberOfEntries` 7 and
    /// `listEntriesBatched` 8), `IKeystoreSecurityLevel` and `IKeystoreOperation`. A method moved
    /// or dropped in `platform_aidl/` would call another method on a device.
    #[test]
    fn keystore2_transaction_codes_are_the_platforms() {
        use super::generated::android::system::keystore2::{
            IKeystoreOperation::transactions as operation,
            IKeystoreSecurityLevel::transactions as level,
            IKeystoreService::transactions as service,
        };
        let codes = |n: u32| {
            (0..n)
                .map(|i| rsbinder::FIRST_CALL_TRANSACTION + i)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            vec![
                service::r#getSecurityLevel,
                service::r#getKeyEntry,
                service::r#updateSubcomponent,
                service::r#listEntries,
                service::r#deleteKey,
                service::r#grant,
                service::r#ungrant,
                service::r#getNumberOfEntries,
                service::r#listEntriesBatched,
            ],
            codes(9)
        );
        assert_eq!(
            vec![
                level::r#createOperation,
                level::r#generateKey,
                level::r#importKey,
                level::r#importWrappedKey,
                level::r#convertStorageKeyToEphemeral,
                level::r#deleteKey,
            ],
            codes(6)
        );
        assert_eq!(
            vec![
                operation::r#updateAad,
                operation::r#update,
                operation::r#finish,
                operation::r#abort,
            ],
            codes(4)
        );
    }
}
