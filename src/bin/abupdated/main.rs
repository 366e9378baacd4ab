//! `abupdated`: the A/B update service.
//!
//! Registers `abupdate` with the service manager (Android, or `rsb_hub` on a Linux host
//! with the Binder driver) or serves it over an RPC unix socket (`--binder unix://...`),
//! runs Binder requests on a thread pool and updates on a worker thread.

mod engine;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use abupdate::service::binder_adapter::{self as binder, Transport};
use abupdate::service::binder_service::BinderService;
use abupdate::service::persist::current_boot_id;
use abupdate::service::{Config, UpdateService, SERVICE_NAME};
use abupdate::{Error, Result};

#[derive(Parser, Debug)]
#[command(version, about = "The abupdate A/B update service")]
struct Args {
    /// Where to serve: `binder:/dev/binder` (kernel Binder and its service manager) or
    /// `unix:///run/abupdate.sock?profile=android13plus` (RPC Binder). Android always
    /// uses the platform's service manager.
    #[arg(long, default_value = "binder:/dev/binder")]
    binder: String,

    /// Host only: the directory standing in for the device's block devices.
    #[arg(long)]
    device: Option<PathBuf>,

    /// Where the service keeps its state file.
    #[arg(long, default_value = "/data/misc/abupdate")]
    state_dir: PathBuf,

    /// UIDs allowed to change anything (root, system, shell by default).
    #[arg(long, value_delimiter = ',', default_value = "0,1000,2000")]
    allowed_uids: Vec<u32>,

    /// Binder threads answering requests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
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

fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| Error::io(format_args!("creating {}", args.state_dir.display()), e))?;
    let engine = engine::open(args.device.as_deref())?;
    let config = Config {
        state_dir: args.state_dir,
        allowed_uids: args.allowed_uids,
        boot_id: current_boot_id()?,
    };
    let core = UpdateService::new(engine, config)?;
    let transport = Transport::parse(&args.binder)?;
    let service = binder::new_service_binder(BinderService::new(core));
    let served = binder::serve(&transport, SERVICE_NAME, service, args.threads)?;
    log::info!(
        "serving {SERVICE_NAME} on {transport} with {} threads",
        args.threads
    );
    binder::join(served)
}
