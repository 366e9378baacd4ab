//! `abupdated`: the A/B update service.
//!
//! Registers `abupdate` with the service manager (Android's, or one on a Linux host's
//! kernel Binder) or serves it over an RPC unix socket (`--binder unix://...`), runs Binder
//! requests on a thread pool and updates on a worker thread, with abupdate's update engine
//! over the device's partitions.

// As in the library: every public item documented (Soong's platform lints deny missing docs).
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

mod device;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use abupdate::service::binder_adapter::{self as binder, Transport};
use abupdate::service::binder_service::BinderService;
use abupdate::service::cleanup::{BootCompletion, Cleanup};
use abupdate::service::persist::current_boot_id;
use abupdate::service::update_engine::{
    StableService, UpdateEngineService, STABLE_SERVICE, UPDATE_ENGINE_SERVICE,
};
use abupdate::service::{default_allowed_uids, Config, UpdateService, SERVICE_NAME};
use abupdate::Result;

/// The command line of the abupdate A/B update service.
#[derive(Parser, Debug)]
#[command(version, about = "The abupdate A/B update service")]
pub struct Args {
    /// Where to serve: `binder:/dev/binder` (kernel Binder and its service manager) or
    /// `unix:///run/abupdate.sock?profile=android13plus` (RPC Binder). Android always
    /// uses the platform's service manager.
    #[arg(long, default_value = "binder:/dev/binder")]
    binder: String,

    /// The partitions are block devices named `<name>_a`, `<name>_b` in DIR, with slot
    /// metadata in DIR/misc (default on Android: /dev/block/by-name).
    #[arg(long, value_name = "DIR")]
    by_name: Option<PathBuf>,

    /// Host stand-in for a device: DIR/<name>_a.img, DIR/<name>_b.img, DIR/misc.img,
    /// optionally DIR/build.prop and DIR/avb_key.pem (as `abupdate apply --device`).
    #[arg(long, value_name = "DIR")]
    device: Option<PathBuf>,

    /// Who keeps the slot metadata with --by-name: `misc` (the bootloader_control record in
    /// DIR/misc, as AOSP's default boot HAL keeps it) or `hal` (the vendor's
    /// android.hardware.boot.IBootControl service, for bootloaders with their own metadata;
    /// AOSP builds only).
    #[arg(long, value_enum, default_value = "misc")]
    boot_control: device::BootBackend,

    /// How target logical partitions in DIR/super are written with --by-name: `android`
    /// (dm-linear mappings through /dev/device-mapper; ueventd makes /dev/block/dm-N and
    /// /dev/block/mapper/<name>), `linux` (through /dev/mapper/control; devtmpfs makes
    /// /dev/dm-N, we make the links in --mapper-links) or `off` (positioned writes to their
    /// extents in super). Default: `android` on Android, else `off`.
    #[arg(long, value_enum, value_name = "MODE")]
    device_mapper: Option<device::DmMode>,

    /// With --device-mapper linux: the directory of the `<name>` links to mapped partitions.
    #[arg(long, value_name = "DIR", default_value = "/dev/block/mapper")]
    mapper_links: PathBuf,

    /// The running slot (a or b); default: ro.boot.slot_suffix on Android, else the slot
    /// misc records.
    #[arg(long)]
    current_slot: Option<String>,

    /// Trusted payload key: PEM public key, X.509 certificate or otacerts.zip
    /// (repeatable); default on Android /system/etc/security/otacerts.zip. A key file that
    /// cannot be read stops the daemon (29); so does having no key without --allow-unsigned.
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,

    /// Accept payloads without checking their signatures (no key is loaded). Honoured only
    /// on a debuggable build (ro.debuggable=1); elsewhere the daemon refuses to start (29).
    #[arg(long, conflicts_with = "keys")]
    allow_unsigned: bool,

    /// AVB public key new slots must be signed with; default: the running slot's key.
    #[arg(long, value_name = "FILE")]
    avb_key: Option<PathBuf>,

    /// The running build's properties (ro.build.date.utc, ...) for downgrade checks with
    /// --by-name; required on a host, Android reads its system properties.
    #[arg(long, value_name = "FILE")]
    build_prop: Option<PathBuf>,

    /// Trust this CA (PEM) for https:// payloads besides the system store.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Where the service keeps its status, checkpoints and rollback floors; default
    /// /data/misc/abupdate (with --device: DIR/state).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// UIDs allowed to change anything, verify payloads and dump; default on Android root,
    /// system and shell (0,1000,2000), elsewhere the daemon's own UID only.
    #[arg(long, value_delimiter = ',')]
    allowed_uids: Vec<u32>,

    /// Binder threads answering requests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,

    /// Threads decoding payload operations (default: up to 4, by CPU count).
    #[arg(long)]
    decode_threads: Option<usize>,

    /// Seconds one postinstall program may run before it is killed (45); time suspended
    /// does not count.
    #[arg(long, value_name = "SECS", default_value_t = abupdate::postinstall::DEFAULT_TIMEOUT.as_secs())]
    postinstall_timeout: u64,

    /// Where postinstall mounts the new partitions (default on Android /postinstall,
    /// elsewhere a new temporary directory each time).
    #[arg(long, value_name = "DIR")]
    postinstall_dir: Option<PathBuf>,

    /// Also serve update_engine's interfaces, as the device's update_engine: registers
    /// android.os.UpdateEngineService (android.os.IUpdateEngine) and
    /// android.os.UpdateEngineStableService next to abupdate, over the same update.
    #[arg(long)]
    update_engine_compat: bool,

    /// The update channel checkForUpdate asks the feed for.
    #[arg(long, default_value = "stable")]
    channel: String,

    /// The device's X25519 key that unwraps encrypted feed offers: a PKCS#8 PEM file (hosts),
    /// or `keystore` for a key keystore2 generates and keeps (at `--keystore-binder`; the
    /// default on Android builds with the `keystore` feature). Without one, encrypted offers
    /// fail (20).
    #[arg(long, value_name = "FILE|keystore")]
    device_key: Option<PathBuf>,

    /// Where keystore2 is, for `--device-key keystore`: a transport as for `--binder` (on a
    /// host, the socket of a keystore2 stand-in; on Android only `binder:/dev/binder`).
    #[arg(long, value_name = "URI", default_value = "binder:/dev/binder")]
    keystore_binder: String,

    /// Where gsid is, which makes the Virtual A/B COW images on /data that do not fit in super:
    /// a transport as for `--binder` (on a host, the socket of a gsid stand-in). Default on
    /// Android builds with the `gsid` feature: the platform's gsid (`binder:/dev/binder`);
    /// elsewhere the images are made by abupdated itself.
    #[arg(long, value_name = "URI")]
    gsid_binder: Option<String>,
}

fn main() -> ExitCode {
    binder::init_logging("abupdated");
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("abupdated: {e}");
            ExitCode::from(u8::try_from(e.code.as_i32()).unwrap_or(1))
        }
    }
}

/// How often the cleanup looks at the boot and the slot (update_engine retries every few
/// seconds too; a device whose slot is never marked keeps this thread polling misc).
const CLEANUP_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Where the cleanup learns that the boot completed: Android's properties; on a host the
/// `--build-prop` file, read again at every poll (a test appends `sys.boot_completed=1`), or
/// nothing to wait for without one.
fn boot_completion(args: &Args) -> BootCompletion {
    #[cfg(target_os = "android")]
    {
        let _ = args;
        BootCompletion::Property(std::sync::Arc::new(abupdate::sysprop::SystemProperties))
    }
    #[cfg(not(target_os = "android"))]
    match &args.build_prop {
        Some(path) => BootCompletion::Property(std::sync::Arc::new(
            abupdate::sysprop::LivePropertyFile::new(path),
        )),
        None => BootCompletion::Already,
    }
}

fn run(args: Args) -> Result<()> {
    let state_dir = device::state_dir(&args);
    // The daemon's alone: its state files are 0600, and the directory keeps others from
    // even listing them.
    abupdate::state_file::create_dir(&state_dir)?;
    let engine = device::open(&args, &state_dir)?;
    let boot = boot_completion(&args);
    let allowed_uids = if args.allowed_uids.is_empty() {
        default_allowed_uids()
    } else {
        args.allowed_uids
    };
    let uids: Vec<String> = allowed_uids.iter().map(u32::to_string).collect();
    let config = Config {
        state_dir,
        allowed_uids,
        boot_id: current_boot_id()?,
    };
    // The previous update's cleanup runs at every start, as update_engine's does; the
    // update_engine face answers cleanupSuccessfulUpdate from it.
    let cleanup = Cleanup::start(engine.clone(), boot, CLEANUP_POLL)?;
    let core = UpdateService::new(engine, config)?;
    let transport = Transport::parse(&args.binder)?;
    let service = binder::new_service_binder(BinderService::new(core.clone()));
    let mut services = vec![(SERVICE_NAME.to_owned(), service.as_binder())];
    if args.update_engine_compat {
        let ue = binder::new_update_engine_binder(UpdateEngineService::new(core.clone(), cleanup));
        let stable = binder::new_stable_binder(StableService::new(core));
        services.push((UPDATE_ENGINE_SERVICE.to_owned(), ue.as_binder()));
        services.push((STABLE_SERVICE.to_owned(), stable.as_binder()));
    }
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    let names = names.join(", ");
    let served = binder::serve_all(&transport, services, args.threads)?;
    log::info!(
        "serving {names} on {transport} with {} threads; allowed uids: {}",
        args.threads,
        uids.join(",")
    );
    binder::join(served)
}
