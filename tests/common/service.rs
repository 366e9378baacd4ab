//! Shared parts of the service tests: the real engine on a device directory, a served
//! `UpdateService`, and waiting helpers.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abupdate::service::binder_adapter::{self as binder, Served, Transport};
use abupdate::service::binder_service::{BinderService, Event};
use abupdate::service::{
    BackendConfig, Config, UpdateBackend, UpdateService, UpdaterBackend, SERVICE_NAME,
};
use abupdate::slot::Slot;
use abupdate::updater::{HostOptions, Updater};

/// abupdate's engine on the host device directory `device`, trusting `cert`, running
/// `current` (default: what misc.img says).
pub fn engine(device: &Path, cert: &Path, current: Option<Slot>) -> Arc<UpdaterBackend> {
    let updater = Updater::open_host(
        device,
        &HostOptions {
            current,
            ..HostOptions::default()
        },
    )
    .unwrap();
    let config = BackendConfig {
        keys: abupdate::key_file::load(cert).unwrap(),
        threads: 2,
        pinned_ca: None,
        ..BackendConfig::default()
    };
    Arc::new(UpdaterBackend::new(updater, config))
}

/// A service with its RPC endpoint on a unix socket in `dir`.
pub struct Server {
    pub core: Arc<UpdateService>,
    pub transport: Transport,
    served: Option<Served>,
}

impl Server {
    pub fn start(dir: &Path, engine: Arc<dyn UpdateBackend>, allowed_uids: Vec<u32>) -> Server {
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let config = Config {
            state_dir,
            allowed_uids,
            boot_id: "test-boot".to_owned(),
        };
        let core = UpdateService::new(engine, config).unwrap();
        let uri = format!(
            "unix://{}?profile=android13plus",
            dir.join("abupdate.sock").display()
        );
        let transport = Transport::parse(&uri).unwrap();
        let binder = binder::new_service_binder(BinderService::new(core.clone()));
        let served = binder::serve(&transport, SERVICE_NAME, binder, 4).unwrap();
        Server {
            core,
            transport,
            served: Some(served),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop();
        }
    }
}

/// This process's uid, as the service sees it over a unix socket.
pub fn my_uid() -> u32 {
    // /proc/self belongs to the process's effective uid, which SO_PEERCRED reports.
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap())
}

/// Waits for the first event that `want` accepts, failing after `limit`.
pub fn wait_for(events: &Receiver<Event>, limit: Duration, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if want(&event) => return event,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("no such event within {limit:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("event channel closed"),
        }
    }
}

/// Polls `check` until it holds, failing after `limit`.
pub fn eventually(limit: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
