//! A minimal Binder service manager for a Linux kernel's Binder driver, for the VM test
//! (tests/vm/): it becomes the driver's context manager (handle 0) and keeps a name →
//! binder map, answering the Android 16 `IServiceManager` calls that `rsbinder` clients
//! and servers make: add, get/check, list, unregister, debug info. Like a test hub it
//! checks no permissions and knows no declared or lazy services; callbacks for
//! registration notices are refused. Built with the rest of the crate, it replaces
//! building `rsb_hub` (rsbinder-tools) for the test.
//!
//! usage: service_manager [/dev/binder]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rsbinder::hub::android_16::android::os::{Service, ServiceWithMetadata};
use rsbinder::hub::android_16::{
    BnServiceManager, ConnectionInfo, IClientCallback, IServiceCallback, IServiceManager,
    ServiceDebugInfo,
};
use rsbinder::{BinderResult, ExceptionCode, Interface, ProcessState, SIBinder, Status, Strong};

fn main() -> ExitCode {
    let driver = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/binder".to_owned());
    match run(&driver) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("service_manager: {driver}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(driver: &str) -> Result<(), Box<dyn std::error::Error>> {
    // One thread, as Android's servicemanager: every call is a quick map operation.
    ProcessState::init(driver, 0)?;
    let manager = BnServiceManager::new_binder(Registry::default());
    ProcessState::as_self().become_context_manager(manager.as_binder())?;
    // Tests wait for this line before starting services.
    eprintln!("service_manager: serving on {driver}");
    Ok(ProcessState::join_thread_pool()?)
}

/// The registered services by name.
#[derive(Default)]
struct Registry {
    services: Mutex<BTreeMap<String, SIBinder>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, SIBinder>> {
        // A map insert or remove cannot be left half done.
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find(&self, name: &str) -> Option<SIBinder> {
        self.lock().get(name).cloned()
    }

    fn typed(&self, name: &str) -> Service::Service {
        Service::Service::ServiceWithMetadata(ServiceWithMetadata::ServiceWithMetadata {
            service: self.find(name),
            isLazyService: false,
        })
    }
}

impl Interface for Registry {}

impl IServiceManager for Registry {
    fn getService(&self, name: &str) -> BinderResult<Option<SIBinder>> {
        Ok(self.find(name))
    }

    fn getService2(&self, name: &str) -> BinderResult<Service::Service> {
        Ok(self.typed(name))
    }

    fn checkService(&self, name: &str) -> BinderResult<Option<SIBinder>> {
        Ok(self.find(name))
    }

    fn checkService2(&self, name: &str) -> BinderResult<Service::Service> {
        Ok(self.typed(name))
    }

    /// A service registering again (a restarted daemon) replaces its old entry.
    fn addService(
        &self,
        name: &str,
        service: &SIBinder,
        _allow_isolated: bool,
        _dump_priority: i32,
    ) -> BinderResult<()> {
        let valid = !name.is_empty()
            && name.len() <= 127
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./@".contains(&b));
        if !valid {
            return Err(Status::from(ExceptionCode::IllegalArgument));
        }
        eprintln!("service_manager: {name} registered");
        self.lock().insert(name.to_owned(), service.clone());
        Ok(())
    }

    fn listServices(&self, _dump_priority: i32) -> BinderResult<Vec<String>> {
        Ok(self.lock().keys().cloned().collect())
    }

    fn registerForNotifications(
        &self,
        _name: &str,
        _callback: &Strong<dyn IServiceCallback>,
    ) -> BinderResult<()> {
        Err(unsupported("registration notices"))
    }

    fn unregisterForNotifications(
        &self,
        _name: &str,
        _callback: &Strong<dyn IServiceCallback>,
    ) -> BinderResult<()> {
        Err(unsupported("registration notices"))
    }

    fn isDeclared(&self, _name: &str) -> BinderResult<bool> {
        Ok(false)
    }

    fn getDeclaredInstances(&self, _interface: &str) -> BinderResult<Vec<String>> {
        Ok(Vec::new())
    }

    fn updatableViaApex(&self, _name: &str) -> BinderResult<Option<String>> {
        Ok(None)
    }

    fn getUpdatableNames(&self, _apex_name: &str) -> BinderResult<Vec<String>> {
        Ok(Vec::new())
    }

    fn getConnectionInfo(&self, _name: &str) -> BinderResult<Option<ConnectionInfo>> {
        Ok(None)
    }

    fn registerClientCallback(
        &self,
        _name: &str,
        _service: &SIBinder,
        _callback: &Strong<dyn IClientCallback>,
    ) -> BinderResult<()> {
        Err(unsupported("lazy services"))
    }

    fn tryUnregisterService(&self, name: &str, service: &SIBinder) -> BinderResult<()> {
        let mut services = self.lock();
        match services.get(name) {
            Some(registered) if registered == service => {
                services.remove(name);
                Ok(())
            }
            _ => Err(Status::from(ExceptionCode::IllegalState)),
        }
    }

    fn getServiceDebugInfo(&self) -> BinderResult<Vec<ServiceDebugInfo>> {
        Ok(self
            .lock()
            .keys()
            .map(|name| ServiceDebugInfo {
                name: name.clone(),
                debugPid: 0,
            })
            .collect())
    }
}

fn unsupported(what: &str) -> Status {
    Status::from((
        ExceptionCode::UnsupportedOperation,
        format!("this service manager has no {what}").as_str(),
    ))
}
