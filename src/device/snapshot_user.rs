//! Platform adapter: a Virtual A/B snapshot's view for postinstall, served by snapuserd through
//! a dm-user device, as update_engine gets it on Android (whose kernels have dm-user and no
//! nbd; [`super::snapshot_mount`] is the nbd backend for other systems).
//!
//! What libsnapshot does, and so this module (AOSP system/core `fs_mgr/libsnapshot/`):
//!
//! - update_engine's postinstall maps every snapshot (`postinstall_runner_action.cc`
//!   `PerformAction` → `DynamicPartitionControlAndroid::MapAllPartitions` →
//!   `SnapshotManager::MapAllSnapshots`), which first unmaps each (`UnmapPartitionWithSnapshot`:
//!   what a crashed run left goes), then maps it (`MapPartitionWithSnapshot`): the target
//!   partition's own extents as `<name>-base` (what the merge writes), the running slot's
//!   partition as `<name>-src` when the snapshot has an old partition (`MapSourceDevice`;
//!   else the base), the COW as `<name>-cow` (`MapCowDevices`), then `MapDmUserCow`;
//! - `MapDmUserCow` with userspace snapshots (`snapshot.cpp`): the dm-user device is named like
//!   the snapshot (`GetDmUserCowName`: the name itself for the dm-user driver), the misc name
//!   the same (`-init` only in first-stage init); its size is the base device's
//!   (`get_block_device_size(base_path_merge) >> 9`); the table `user 0 <sectors> <misc_name>`
//!   is created, the device and `/dev/dm-user/<misc_name>` waited for, then snapuserd is sent
//!   `init,<misc_name>,<cow>,<source>,<base>` and `start,<misc_name>`;
//! - unmapping (`UnmapUserspaceSnapshotDevice`): the dm-user device deleted, snapuserd sent
//!   `delete,<misc_name>` (`WaitForDeviceDelete`), `/dev/dm-user/<misc_name>` waited gone
//!   (10 s), then the COW, source and base devices removed;
//! - the daemon (`snapuserd_client.cpp` `EnsureSnapuserdStarted`): unless `init.svc.snapuserd`
//!   is `running`, `ctl.start=snapuserd` and 10 s for it to be; then 10 s for
//!   `snapuserd.ready=true`.
//!
//! Only update_engine's domain may do this (AOSP sepolicy `private/update_engine.te`:
//! `set_prop(update_engine, ctl_snapuserd_prop)`, `snapuserd:unix_stream_socket connectto`,
//! `snapuserd_socket:sock_file write`, `get_prop(update_engine, snapuserd_prop)`;
//! `update_engine_common.te`: `dm_device` read-write, no ioctl filter, `dm_user_device` dir and
//! file read; `init.svc.*`: `private/domain.te` `get_prop(domain, init_service_status_prop)`), so
//! only the binary running as update_engine is configured with it ([`DmUserConfig`]); a
//! denial at plan time keeps the dynamic-partitions path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Device, LogicalMapper, SourcePartition};
use crate::engine::SourceRead;
use crate::err;
use crate::error::Result;
use crate::lp;
use crate::postinstall::mount::MountSource;
use crate::snapuserd::{Client, Config};
use crate::sysprop::SetProperties;

/// Where snapuserd and the dm-user control devices are, and how long to wait for them.
#[derive(Clone)]
pub struct DmUserConfig {
    /// The daemon's control socket.
    pub snapuserd: Config,
    /// The properties that start the daemon and say it runs.
    pub properties: Arc<dyn SetProperties>,
    /// How long the daemon may take to run, then to be ready (libsnapshot: 10 s each).
    pub start_timeout: Duration,
    /// Where the kernel's dm-user control devices appear (`/dev/dm-user`).
    pub control_dir: PathBuf,
    /// How long a control device may take to appear or to go (libsnapshot: 10 s to go).
    pub control_timeout: Duration,
    /// Who makes the views' mappings; `None`: the device's own mapper.
    pub mapper: Option<Arc<dyn LogicalMapper>>,
}

impl std::fmt::Debug for DmUserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmUserConfig")
            .field("snapuserd", &self.snapuserd)
            .field("start_timeout", &self.start_timeout)
            .field("control_dir", &self.control_dir)
            .field("control_timeout", &self.control_timeout)
            .field("mapper", &self.mapper.is_some())
            .finish()
    }
}

impl DmUserConfig {
    /// Android's daemon, properties and `/dev/dm-user`.
    #[cfg(target_os = "android")]
    pub fn android() -> DmUserConfig {
        DmUserConfig {
            snapuserd: Config::android(),
            properties: Arc::new(crate::sysprop::SystemProperties),
            start_timeout: Duration::from_secs(10),
            control_dir: PathBuf::from("/dev/dm-user"),
            control_timeout: Duration::from_secs(10),
            mapper: None,
        }
    }
}

/// The property init keeps a service's state in.
const SERVICE_STATE: &str = "init.svc.snapuserd";
/// The property snapuserd sets once it listens.
const READY: &str = "snapuserd.ready";

/// Waits up to `timeout` for property `name` to be `value`.
fn wait_for_property(
    props: &dyn SetProperties,
    name: &str,
    value: &str,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match props.get(name) {
            Ok(Some(v)) if v == value => return true,
            Ok(_) => {}
            Err(e) => {
                log::warn!("reading {name}: {e}");
                return false;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts snapuserd unless it runs, and waits for it to be ready (libsnapshot's
/// `EnsureSnapuserdStarted`).
pub fn ensure_started(config: &DmUserConfig) -> Result<()> {
    let props = config.properties.as_ref();
    if props.get(SERVICE_STATE)?.as_deref() != Some("running") {
        props.set("ctl.start", "snapuserd")?;
        if !wait_for_property(props, SERVICE_STATE, "running", config.start_timeout) {
            crate::bail!(
                DeviceError,
                "snapuserd did not start within {:?} ({SERVICE_STATE} is not running)",
                config.start_timeout
            );
        }
    }
    if !wait_for_property(props, READY, "true", config.start_timeout) {
        crate::bail!(
            DeviceError,
            "snapuserd was not ready within {:?} ({READY} is not true)",
            config.start_timeout
        );
    }
    Ok(())
}

/// Lets snapuserd go once postinstall's views are unmapped, as libsnapshot's
/// `UnmapAllSnapshots` does (`DetachSnapuserd`: `detach`, then up to 3 s for
/// `init.svc.snapuserd` to stop, else `ctl.stop=snapuserd`; `WaitForServiceToTerminate`). The
/// next [`ensure_started`] starts it again. Failures are only logged: the update is done.
pub fn detach(config: &DmUserConfig) {
    if let Err(e) = Client::connect(&config.snapuserd).and_then(Client::detach) {
        log::warn!("detaching snapuserd: {e}");
        return;
    }
    let props = config.properties.as_ref();
    let deadline = Instant::now() + Duration::from_secs(3);
    while matches!(props.get(SERVICE_STATE), Ok(Some(v)) if v == "running") {
        if Instant::now() >= deadline {
            log::warn!("snapuserd did not stop after detach: ctl.stop");
            if let Err(e) = props.set("ctl.stop", "snapuserd") {
                log::warn!("stopping snapuserd: {e}");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!("snapuserd detached");
}

/// Whether postinstall can have snapuserd serve snapshots' views here: configured for it, the
/// device maps through device-mapper, the kernel has the `user` target, and snapuserd runs or
/// could be started. Says why not in the log.
pub fn available(device: &Device, config: Option<&DmUserConfig>) -> bool {
    let Some(config) = config else {
        return false;
    };
    let Some(mapper) = mapper_of(device, config) else {
        log::info!("snapshot views through dm-user: no device-mapper here");
        return false;
    };
    match mapper.has_target("user") {
        Ok(true) => {}
        Ok(false) => {
            log::info!("snapshot views through dm-user: the kernel has no dm-user target");
            return false;
        }
        Err(e) => {
            log::info!("snapshot views through dm-user: listing the kernel's targets: {e}");
            return false;
        }
    }
    match ensure_started(config) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("snapshot views through dm-user: {e}");
            false
        }
    }
}

/// The mapper the views are made with.
fn mapper_of(device: &Device, config: &DmUserConfig) -> Option<Arc<dyn LogicalMapper>> {
    config.mapper.clone().or_else(|| device.mapper.clone())
}

/// Waits up to `timeout` for `path` to exist (`gone`: not to).
fn wait_for_path(path: &Path, gone: bool, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while path.exists() == gone {
        if Instant::now() >= deadline {
            crate::bail!(
                PostinstallFailed,
                "{} did not {} within {timeout:?}",
                path.display(),
                if gone { "go" } else { "appear" }
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// One snapshot's view, a dm-user device served by snapuserd until dropped.
pub struct UserMount {
    device: Device,
    config: DmUserConfig,
    /// The snapshot's name: its dm-user device's, its misc name.
    name: String,
    client: Option<Client>,
    node: PathBuf,
    size: u64,
}

impl UserMount {
    /// Maps the view of snapshot `space` (`system_b`) of the target slot's `metadata`:
    /// partition `name`'s base (the target's extents), its source (the running slot's
    /// partition, in `running`, the running slot's metadata) and its COW, served by snapuserd.
    /// Fails with 44 when any step fails; what was mapped is unmapped.
    pub fn map(
        device: &Device,
        metadata: &lp::Metadata,
        running: &lp::Metadata,
        space: &lp::SnapshotSpace,
        name: &str,
        config: &DmUserConfig,
    ) -> Result<UserMount> {
        let fail = |what: &str, e: crate::error::Error| {
            err!(PostinstallFailed, "{}: {what}: {}", space.name, e.message)
        };
        let Some(mapper) = mapper_of(device, config) else {
            crate::bail!(PostinstallFailed, "{}: no device-mapper here", space.name);
        };
        ensure_started(config).map_err(|e| fail("starting snapuserd", e))?;
        let client = Client::connect(&config.snapuserd).map_err(|e| fail("snapuserd", e.into()))?;
        let mut mount = UserMount {
            device: device.clone(),
            config: config.clone(),
            name: space.name.clone(),
            client: Some(client),
            node: PathBuf::new(),
            size: space.device_size,
        };
        // What a crashed run left (MapAllSnapshots unmaps each snapshot before mapping it).
        mount
            .unmap()
            .map_err(|e| fail("what an earlier run left", e))?;
        // From here on a failure drops `mount`, which unmaps what was mapped.
        let snap = &space.name;
        let Some(target) = metadata.partition(snap) else {
            crate::bail!(PostinstallFailed, "no logical partition {snap}");
        };
        let super_path = device.super_path();
        let base = mapper
            .map(
                &format!("{snap}-base"),
                &super_path,
                metadata.extents_of(target),
            )
            .map_err(|e| fail("mapping its base", e))?;
        let source = if space.old_partition_size > 0 {
            let old = format!("{name}{}", device.current_slot().suffix());
            let Some(p) = running.partition(&old) else {
                crate::bail!(PostinstallFailed, "no logical partition {old}");
            };
            mapper
                .map(&format!("{snap}-src"), &super_path, running.extents_of(p))
                .map_err(|e| fail("mapping its source", e))?
        } else {
            base.clone()
        };
        let images = super::image_store::CowImages::for_device(device);
        let cow = match device.map_cow_with(mapper.as_ref(), metadata, space, &images) {
            Ok(Some(cow)) => cow,
            Ok(None) => crate::bail!(PostinstallFailed, "{snap}: its COW cannot be mapped here"),
            Err(e) => return Err(fail("mapping its COW", e)),
        };
        let bytes = SourcePartition::open(&base)
            .map_err(|e| fail("sizing its base", e))?
            .size();
        let sectors = bytes / lp::SECTOR_SIZE;
        mount.node = mapper
            .map_user(snap, sectors, snap)
            .map_err(|e| fail("mapping its dm-user device", e))?;
        let control = config.control_dir.join(snap);
        wait_for_path(&control, false, config.control_timeout)?;
        let path = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| err!(PostinstallFailed, "{} is not UTF-8", p.display()))
        };
        let (cow, source, base) = (path(&cow)?, path(&source)?, path(&base)?);
        // A connection that failed may be out of step: dropped, the unmap connects again.
        let mut client = mount
            .client
            .take()
            .ok_or_else(|| err!(PostinstallFailed, "{snap}: no snapuserd connection"))?;
        let served = client
            .init(snap, &cow, &source, &base)
            .map_err(|e| fail("snapuserd init", e.into()))?;
        let started = match served {
            Some(_) => client
                .start(snap)
                .map_err(|e| fail("snapuserd start", e.into()))?,
            None => false,
        };
        mount.client = Some(client);
        match served {
            None => crate::bail!(PostinstallFailed, "{snap}: snapuserd refused init"),
            Some(n) if n != sectors => {
                log::warn!("{snap}: snapuserd serves {n} sectors, the dm-user device has {sectors}")
            }
            Some(_) => {}
        }
        if !started {
            crate::bail!(PostinstallFailed, "{snap}: snapuserd refused start");
        }
        log::info!(
            "{snap}: its snapshot view served by snapuserd as {} for postinstall",
            mount.node.display()
        );
        Ok(mount)
    }

    /// The dm-user device, to mount.
    pub fn source(&self) -> MountSource {
        MountSource {
            path: self.node.clone(),
            offset: 0,
            size: self.size,
        }
    }

    /// Unmaps the view as libsnapshot's `UnmapPartitionWithSnapshot`: the dm-user device,
    /// snapuserd's handler (`delete`), its control device waited gone, then the COW, source
    /// and base devices. Nothing mapped is no error.
    fn unmap(&mut self) -> Result<()> {
        let Some(mapper) = mapper_of(&self.device, &self.config) else {
            return Ok(());
        };
        let snap = self.name.clone();
        mapper.unmap(&snap)?;
        let deleted = match self.client.as_mut() {
            Some(client) => client.delete(&snap),
            None => Client::connect(&self.config.snapuserd).and_then(|mut c| {
                let deleted = c.delete(&snap);
                self.client = Some(c);
                deleted
            }),
        };
        match deleted {
            Ok(true) => {}
            Ok(false) => crate::bail!(PostinstallFailed, "{snap}: snapuserd refused delete"),
            Err(e) => {
                // Out of step: the next use connects again.
                self.client = None;
                return Err(e.into());
            }
        }
        let control = self.config.control_dir.join(&snap);
        wait_for_path(&control, true, self.config.control_timeout)?;
        for suffix in ["-cow", "-src", "-base"] {
            mapper.unmap(&format!("{snap}{suffix}"))?;
        }
        Ok(())
    }
}

impl Drop for UserMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmap() {
            log::warn!("unmapping the view of {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysprop::Properties;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// init's part: `ctl.start=snapuserd` makes the service run (and ready) when `starts`.
    struct Init {
        values: Mutex<HashMap<String, String>>,
        sets: Mutex<Vec<String>>,
        starts: Option<(&'static str, &'static str)>,
    }

    impl Properties for Init {
        fn get(&self, name: &str) -> Result<Option<String>> {
            Ok(self.values.lock().unwrap().get(name).cloned())
        }
    }

    impl SetProperties for Init {
        fn set(&self, name: &str, value: &str) -> Result<()> {
            self.sets.lock().unwrap().push(format!("{name}={value}"));
            if let Some((state, ready)) = self.starts {
                let mut v = self.values.lock().unwrap();
                v.insert(SERVICE_STATE.into(), state.into());
                v.insert(READY.into(), ready.into());
            }
            Ok(())
        }
    }

    fn config(init: Arc<Init>) -> DmUserConfig {
        DmUserConfig {
            snapuserd: Config::at("/nonexistent/snapuserd"),
            properties: init,
            start_timeout: Duration::from_millis(100),
            control_dir: PathBuf::from("/nonexistent"),
            control_timeout: Duration::from_millis(100),
            mapper: None,
        }
    }

    fn init(running: bool, starts: Option<(&'static str, &'static str)>) -> Arc<Init> {
        let mut values = HashMap::new();
        if running {
            values.insert(SERVICE_STATE.to_owned(), "running".to_owned());
            values.insert(READY.to_owned(), "true".to_owned());
        }
        Arc::new(Init {
            values: Mutex::new(values),
            sets: Mutex::new(Vec::new()),
            starts,
        })
    }

    /// libsnapshot's `EnsureSnapuserdStarted`: a running daemon is not started again; one
    /// that is not is started with `ctl.start` and must then run and be ready in time.
    #[test]
    fn snapuserd_is_started_only_when_not_running_and_must_become_ready() {
        let running = init(true, None);
        ensure_started(&config(running.clone())).unwrap();
        assert!(running.sets.lock().unwrap().is_empty());

        let starts = init(false, Some(("running", "true")));
        ensure_started(&config(starts.clone())).unwrap();
        assert_eq!(*starts.sets.lock().unwrap(), ["ctl.start=snapuserd"]);

        for (starts, says) in [
            (None, "did not start"),
            (Some(("stopped", "true")), "did not start"),
            (Some(("running", "false")), "was not ready"),
        ] {
            let init = init(false, starts);
            let e = ensure_started(&config(init.clone())).unwrap_err();
            assert!(e.message.contains(says), "{starts:?}: {e}");
            assert_eq!(*init.sets.lock().unwrap(), ["ctl.start=snapuserd"]);
        }
    }

    /// Not configured, or no mapper: no views through dm-user, and snapuserd is not started.
    #[test]
    fn without_a_config_or_a_mapper_there_are_no_views() {
        let device = Device::host("/nonexistent", crate::slot::Slot::A);
        assert!(!available(&device, None));
        let init = init(false, Some(("running", "true")));
        assert!(!available(&device, Some(&config(init.clone()))));
        assert!(init.sets.lock().unwrap().is_empty());
    }
}
