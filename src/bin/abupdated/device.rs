//! Which device the daemon updates, and with what trust: the update engine it serves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use abupdate::dm::DmConfig;
use abupdate::feed::device_key::DeviceKey;
use abupdate::payload::keys::TrustedKeys;
use abupdate::service::{BackendConfig, FeedSettings, UpdateBackend, UpdaterBackend};
use abupdate::slot::{BootControl, Slot};
use abupdate::sysprop::PropertyFile;
use abupdate::updater::downgrade::RunningBuild;
use abupdate::updater::{ByNameOptions, HostOptions, Updater};
use abupdate::{Error, Result};

use crate::Args;

/// Android's OTA certificates, trusted when no `--key` is given.
#[cfg(target_os = "android")]
const ANDROID_OTACERTS: &str = "/system/etc/security/otacerts.zip";

/// Android's partitions.
#[cfg(target_os = "android")]
const ANDROID_BY_NAME: &str = "/dev/block/by-name";

/// Who keeps the slot metadata of a `--by-name` device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BootBackend {
    /// The `bootloader_control` record in `misc`, written directly.
    Misc,
    /// The vendor's boot HAL.
    Hal,
}

/// How a `--by-name` device's target logical partitions are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DmMode {
    /// Through device-mapper, laid out as on Android.
    Android,
    /// Through device-mapper on a Linux system with devtmpfs.
    Linux,
    /// Straight into their extents in `super`.
    Off,
}

/// `--device-mapper`, defaulting to Android's own on Android.
fn device_mapper(args: &Args) -> Option<DmConfig> {
    let default = if cfg!(target_os = "android") {
        DmMode::Android
    } else {
        DmMode::Off
    };
    match args.device_mapper.unwrap_or(default) {
        DmMode::Android => Some(DmConfig::android()),
        DmMode::Linux => Some(DmConfig::linux(&args.mapper_links)),
        DmMode::Off => None,
    }
}

/// snapuserd's dm-user views for postinstall on a Virtual A/B snapshot update: only as the
/// device's update_engine (`--update-engine-compat`) running in update_engine's SELinux domain,
/// the one allowed to start snapuserd (`ctl_snapuserd_prop`); in abupdated's domain a snapshot
/// payload with postinstall programs keeps the dynamic-partitions path.
#[cfg(target_os = "android")]
fn dm_user(args: &Args) -> Option<abupdate::device::snapshot_user::DmUserConfig> {
    let context = std::fs::read_to_string("/proc/self/attr/current").unwrap_or_default();
    let domain = context.trim_end_matches(['\0', '\n']).split(':').nth(2) == Some("update_engine");
    if args.update_engine_compat && !domain {
        log::warn!(
            "not in update_engine's domain ({context:?}): no snapuserd views for postinstall"
        );
    }
    (args.update_engine_compat && domain)
        .then(abupdate::device::snapshot_user::DmUserConfig::android)
}

#[cfg(not(target_os = "android"))]
fn dm_user(_: &Args) -> Option<abupdate::device::snapshot_user::DmUserConfig> {
    None
}

/// Where the service keeps its state: `--state-dir`, else the host device directory's
/// `state/` (shared with `abupdate apply --device`), else Android's `/data/misc/abupdate`.
pub fn state_dir(args: &Args) -> PathBuf {
    match (&args.state_dir, &args.device) {
        (Some(dir), _) => dir.clone(),
        (None, Some(device)) => device.join("state"),
        (None, None) => PathBuf::from("/data/misc/abupdate"),
    }
}

/// The update engine for the device the arguments name.
pub fn open(args: &Args, state_dir: &Path) -> Result<Arc<dyn UpdateBackend>> {
    let current = args
        .current_slot
        .as_deref()
        .map(str::parse::<Slot>)
        .transpose()?;
    let mut updater = match (&args.device, by_name(args)) {
        (Some(_), None) if args.boot_control == BootBackend::Hal => abupdate::bail!(
            DeviceError,
            "--boot-control hal needs --by-name: a host device directory keeps misc.img"
        ),
        (Some(dir), None) => {
            log::info!("host device directory {}", dir.display());
            Updater::open_host(
                dir,
                &HostOptions {
                    current,
                    state_dir: Some(state_dir.to_owned()),
                    avb_key: args.avb_key.clone(),
                },
            )?
        }
        (None, Some(dir)) => {
            log::info!("partitions in {}", dir.display());
            // The HAL first: a build without one says so before anything else is read.
            let hal = match args.boot_control {
                BootBackend::Misc => None,
                BootBackend::Hal => Some(boot_hal()?),
            };
            let options = ByNameOptions {
                current: current.or(android_slot()?),
                state_dir: state_dir.to_owned(),
                avb_key: args.avb_key.clone(),
                running: running_build(args.build_prop.as_deref())?,
                device_mapper: device_mapper(args),
            };
            match hal {
                None => Updater::open_by_name(&dir, options)?,
                Some(hal) => Updater::open_by_name_with(&dir, options, hal)?,
            }
        }
        (Some(_), Some(_)) => {
            abupdate::bail!(DeviceError, "--device and --by-name exclude each other")
        }
        (None, None) => abupdate::bail!(
            DeviceError,
            "no device: give --by-name DIR (block devices) or --device DIR (image files)"
        ),
    };
    if let Some(service) = image_service(args)? {
        updater.device().set_image_service(service);
    }
    updater.set_postinstall(abupdate::postinstall::Config {
        mount_dir: args
            .postinstall_dir
            .clone()
            .or_else(|| abupdate::postinstall::Config::default().mount_dir),
        timeout: std::time::Duration::from_secs(args.postinstall_timeout),
        dm_user: dm_user(args),
        ..abupdate::postinstall::Config::default()
    });
    log::info!(
        "running slot {}, updates go to slot {}",
        updater.device().current_slot(),
        updater.device().target_slot()
    );
    // Nothing of ours marks a slot successful at boot (update_verifier does); the floors
    // follow once it has. A failure only leaves them where they were.
    match updater.advance_floors_if_marked() {
        Ok(true) => log::info!("rollback floors raised to the running slot's indexes"),
        Ok(false) => {}
        Err(e) => log::warn!("rollback floors not raised: {e}"),
    }
    let mut config = BackendConfig {
        keys: trusted_keys(&args.keys, args.allow_unsigned)?,
        pinned_ca: args.ca.clone(),
        ..BackendConfig::default()
    };
    if let Some(threads) = args.decode_threads {
        config.threads = threads;
    }
    config.feed = feed_settings(args, state_dir)?;
    let mut backend = UpdaterBackend::new(updater, config);
    if let Some(key) = device_key(args)? {
        backend.set_device_key(key);
    }
    Ok(Arc::new(backend))
}

/// Who makes the COW images on /data: gsid at `--gsid-binder`, else on Android builds with
/// the `gsid` feature the platform's gsid; `None`: abupdated itself (hosts, the VM).
fn image_service(
    args: &Args,
) -> Result<Option<Arc<dyn abupdate::device::image_store::ImageService>>> {
    let default =
        cfg!(all(target_os = "android", feature = "gsid")).then_some("binder:/dev/binder");
    let Some(uri) = args.gsid_binder.as_deref().or(default) else {
        return Ok(None);
    };
    gsid(uri)
}

#[cfg(any(not(target_os = "android"), feature = "gsid"))]
fn gsid(uri: &str) -> Result<Option<Arc<dyn abupdate::device::image_store::ImageService>>> {
    let transport = abupdate::service::binder_adapter::Transport::parse(uri)?;
    log::info!("COW images on /data through gsid at {transport}");
    Ok(Some(Arc::new(
        abupdate::device::image_service::GsidOnDemand::new(transport),
    )))
}

/// Android builds without the `gsid` feature have no gsid client.
#[cfg(all(target_os = "android", not(feature = "gsid")))]
fn gsid(_uri: &str) -> Result<Option<Arc<dyn abupdate::device::image_store::ImageService>>> {
    abupdate::bail!(
        DeviceError,
        "--gsid-binder: this build has no gsid client (the `gsid` feature)"
    )
}

/// The key that unwraps encrypted feed offers: `--device-key FILE`, `--device-key keystore`,
/// else on Android builds with the `keystore` feature keystore2's (made on first use). Without
/// one, encrypted offers fail with 20. An explicit `keystore` that cannot be reached stops the
/// daemon (20); the Android default only says so in the log.
fn device_key(args: &Args) -> Result<Option<Box<dyn DeviceKey>>> {
    match &args.device_key {
        Some(path) if path.as_os_str() == KEYSTORE => keystore_key(args).map(Some),
        Some(path) => abupdate::feed::device_key::load_file(path).map(Some),
        None => {
            #[cfg(all(target_os = "android", feature = "keystore"))]
            match keystore_key(args) {
                Ok(key) => return Ok(Some(key)),
                Err(e) => log::warn!("no device key: {e}"),
            }
            Ok(None)
        }
    }
}

/// `--device-key keystore`.
const KEYSTORE: &str = "keystore";

/// The device key keystore2 keeps, at `--keystore-binder`; its public key is logged for
/// `abupdate publish --encrypt-for`.
#[cfg(any(not(target_os = "android"), feature = "keystore"))]
fn keystore_key(args: &Args) -> Result<Box<dyn DeviceKey>> {
    let transport = abupdate::service::binder_adapter::Transport::parse(&args.keystore_binder)?;
    let key = abupdate::feed::keystore_key::KeystoreDeviceKey::open(&transport)?;
    log::info!(
        "device key in keystore2; its public key (publish --encrypt-for):\n{}",
        abupdate::feed::device_key::public_key_to_pem(&key.public_key())
    );
    Ok(Box::new(key))
}

/// Android builds without the `keystore` feature have no keystore2 client.
#[cfg(all(target_os = "android", not(feature = "keystore")))]
fn keystore_key(_args: &Args) -> Result<Box<dyn DeviceKey>> {
    abupdate::bail!(
        VerificationFailed,
        "--device-key keystore: this build has no keystore2 client (the `keystore` feature)"
    )
}

/// The running build for `checkForUpdate`: `--build-prop`, else a host device directory's
/// `build.prop`, else (Android) the system properties. A host without any has no feed checks.
fn feed_settings(args: &Args, state_dir: &Path) -> Result<FeedSettings> {
    let file = args.build_prop.clone().or_else(|| {
        args.device
            .as_ref()
            .map(|dir| dir.join("build.prop"))
            .filter(|path| path.exists())
    });
    let state = state_dir.to_owned();
    if let Some(path) = file {
        return FeedSettings::from_properties(&PropertyFile::load(&path)?, state, &args.channel);
    }
    #[cfg(target_os = "android")]
    return FeedSettings::from_properties(
        &abupdate::sysprop::SystemProperties,
        state,
        &args.channel,
    );
    #[cfg(not(target_os = "android"))]
    Ok(FeedSettings::default())
}

/// A client of the vendor's boot HAL, in builds that have one.
fn boot_hal() -> Result<Box<dyn BootControl + Send>> {
    #[cfg(all(target_os = "android", feature = "aosp"))]
    return Ok(Box::new(
        abupdate::boot_control::aidl::AidlBootControl::connect()?,
    ));
    #[cfg(not(all(target_os = "android", feature = "aosp")))]
    abupdate::bail!(
        DeviceError,
        "--boot-control hal: this build has no boot HAL client (AOSP builds only)"
    )
}

/// `--by-name`, or Android's by-name directory when no device is named.
fn by_name(args: &Args) -> Option<PathBuf> {
    #[cfg(target_os = "android")]
    if args.device.is_none() && args.by_name.is_none() {
        return Some(PathBuf::from(ANDROID_BY_NAME));
    }
    args.by_name.clone()
}

/// The slot the bootloader booted, on Android; elsewhere `misc` says.
fn android_slot() -> Result<Option<Slot>> {
    #[cfg(target_os = "android")]
    return abupdate::boot_control::misc::boot_slot_suffix().map(Some);
    #[cfg(not(target_os = "android"))]
    Ok(None)
}

/// `--build-prop`, else on Android the system properties. A host without `--build-prop` has
/// nothing to check downgrades against, and is refused rather than left unchecked.
fn running_build(file: Option<&Path>) -> Result<RunningBuild> {
    if let Some(path) = file {
        return RunningBuild::new(Arc::new(PropertyFile::load(path)?))
            .map_err(|e| Error::new(e.code, format!("{}: {}", path.display(), e.message)));
    }
    #[cfg(target_os = "android")]
    return RunningBuild::from_system();
    #[cfg(not(target_os = "android"))]
    abupdate::bail!(
        DeviceError,
        "--by-name on a host needs --build-prop FILE with the running build's ro.build.date.utc, \
         to check payloads for downgrades"
    )
}

/// The keys payloads must be signed with: `--key` files, else on Android the platform's OTA
/// certificates. Fails closed (29): a key file that cannot be read, no key at all, or
/// `--allow-unsigned` on a build that is not debuggable.
fn trusted_keys(files: &[PathBuf], allow_unsigned: bool) -> Result<TrustedKeys> {
    if allow_unsigned {
        if !debuggable() {
            abupdate::bail!(
                NoTrustedKey,
                "--allow-unsigned is honoured only on a debuggable build (ro.debuggable=1)"
            );
        }
        log::warn!("--allow-unsigned: payload signatures are not checked");
        return Ok(TrustedKeys::accept_unsigned());
    }
    if !files.is_empty() {
        return abupdate::key_file::load_all(files);
    }
    #[cfg(target_os = "android")]
    return abupdate::key_file::load(Path::new(ANDROID_OTACERTS));
    #[cfg(not(target_os = "android"))]
    abupdate::bail!(
        NoTrustedKey,
        "no --key: name the payload signing key(s), or pass --allow-unsigned"
    )
}

/// Whether unsigned payloads may be allowed: on Android only on userdebug and eng builds; a
/// host has no build type, and its operator runs the daemon.
fn debuggable() -> bool {
    #[cfg(target_os = "android")]
    return abupdate::sysprop::debuggable();
    #[cfg(not(target_os = "android"))]
    true
}
