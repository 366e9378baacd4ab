//! The subcommands that talk to `abupdated` over Binder: `apply` (without `--device`),
//! `status`, `watch`, `suspend`, `resume`, `cancel`, `reset`, `verify`, and the service side
//! of `slots` and `mark-successful`. Each call's error carries the service's status code,
//! which becomes the exit code.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use abupdate::service::binder_adapter::Transport;
use abupdate::service::client::UpdateClient;

use crate::apply_cmd::{header_pairs, ApplyArgs};
use crate::follow::Follow;
use crate::slots_cmd::unbootable_note;

/// Where the service is.
#[derive(Args, Clone, Debug, Default)]
pub struct ServiceArgs {
    /// The service's Binder transport: `binder:/dev/binder` (the platform's service
    /// manager; the only choice on Android, and the default) or an RPC endpoint such as
    /// `unix:///run/abupdate.sock?profile=android13plus`. Default: $ABUPDATE_BINDER if
    /// set.
    #[arg(long, value_name = "URI")]
    pub binder: Option<String>,
}

const DEFAULT_BINDER: &str = "binder:/dev/binder";

impl ServiceArgs {
    pub fn connect(&self) -> Result<UpdateClient> {
        let uri = match &self.binder {
            Some(uri) => uri.clone(),
            None => std::env::var("ABUPDATE_BINDER").unwrap_or_else(|_| DEFAULT_BINDER.to_owned()),
        };
        let transport = Transport::parse(&uri)?;
        UpdateClient::connect(&transport).map_err(|e| {
            let hint = abupdate::Error::new(
                e.code,
                format!(
                    "no abupdate service is reachable at {transport} ({}); start abupdated, \
                     or apply to a host device directory with --device DIR, or name where the \
                     service listens with --binder URI (or $ABUPDATE_BINDER)",
                    e.message
                ),
            );
            anyhow::Error::new(hint)
        })
    }
}

/// A service command that only needs the service.
#[derive(Args, Clone, Debug)]
pub struct Plain {
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[derive(Args, Clone, Debug)]
pub struct VerifyArgs {
    /// The payload file whose metadata the service checks.
    pub payload: PathBuf,
    /// Offset of the payload in the file (a payload.bin stored inside an OTA zip).
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `apply` without `--device`: hands the payload to the service.
pub fn apply(args: &ApplyArgs) -> Result<()> {
    // The payload first: a file that cannot be read is said so, whether or not a service runs.
    let file = match is_url(&args.payload) {
        true => None,
        false => Some(File::open(local_path(&args.payload)).map_err(|e| {
            abupdate::err!(
                DownloadFailed,
                "cannot read the payload {}: {e}",
                args.payload
            )
            .caused_by(e)
        })?),
    };
    let headers = header_pairs(args.properties.as_deref(), &args.headers)?;
    let client = args.service.connect()?;
    let size = args.size.unwrap_or(0);
    // Listen first, so that the end of a quick update is not missed.
    let follow = match args.wait {
        true => Some(Follow::start(&client, std::io::stderr().is_terminal())?),
        false => None,
    };
    match file {
        None => client.apply(&args.payload, args.offset, size, &headers)?,
        Some(file) => client.apply_file(file, args.offset, size, &headers)?,
    }
    match follow {
        Some(follow) => {
            follow.until_complete(false).inspect_err(|_| {
                let note = client.slots().ok().and_then(|info| unbootable_note(&info));
                if let Some(note) = note {
                    eprintln!("abupdate: {note}");
                }
            })?;
            println!("applied {}; reboot to run the new slot", args.payload);
        }
        None => println!("update started: abupdate status | watch"),
    }
    Ok(())
}

pub fn status(args: Plain) -> Result<()> {
    let status = args.service.connect()?.status()?;
    println!("{status}");
    Ok(())
}

/// Follows the running update to its end; exits with its code. With none running, prints
/// the status and exits with the last update's code.
pub fn watch(args: Plain) -> Result<()> {
    let client = args.service.connect()?;
    Follow::start(&client, std::io::stderr().is_terminal())?.until_complete(true)?;
    Ok(())
}

pub fn suspend(args: Plain) -> Result<()> {
    args.service.connect()?.suspend()?;
    println!("suspended");
    Ok(())
}

/// `resume [--wait]`.
#[derive(Args, Clone, Debug)]
pub struct ResumeArgs {
    /// Wait for the update to finish (progress bar on a terminal); the exit code is then
    /// the update's result.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub service: ServiceArgs,
}

pub fn resume(args: ResumeArgs) -> Result<()> {
    let client = args.service.connect()?;
    let follow = match args.wait {
        true => Some(Follow::start(&client, std::io::stderr().is_terminal())?),
        false => None,
    };
    client.resume()?;
    match follow {
        Some(follow) => follow.until_complete(false)?,
        None => println!("resumed"),
    }
    Ok(())
}

pub fn cancel(args: Plain) -> Result<()> {
    args.service.connect()?.cancel()?;
    println!("cancelled");
    Ok(())
}

pub fn reset(args: Plain) -> Result<()> {
    args.service.connect()?.reset()?;
    println!("reset: idle, the running slot stays active");
    Ok(())
}

pub fn mark_successful(service: &ServiceArgs) -> Result<()> {
    let client = service.connect()?;
    client.mark_successful()?;
    let slots = client.slots()?;
    let suffix = slots.suffix(slots.current).unwrap_or("?");
    println!("slot {suffix} marked successful");
    Ok(())
}

/// Sends the payload's metadata (header, manifest, metadata signature) to the service,
/// which says whether it could be applied here.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let metadata = read_metadata(&args.payload, args.offset)?;
    args.service.connect()?.verify(&metadata)?;
    println!("{}: applicable to this device", args.payload.display());
    Ok(())
}

fn read_metadata(path: &Path, offset: u64) -> Result<Vec<u8>> {
    Ok(abupdate::service::update_engine::read_metadata(
        path, offset,
    )?)
}

/// What the service fetches itself; anything else is a file this process opens and passes as
/// a descriptor (the service opens no paths for its callers).
fn is_url(payload: &str) -> bool {
    let lower = payload.get(..8).unwrap_or(payload).to_ascii_lowercase();
    ["http://", "https://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// The path a `file://` URL names (`file://localhost/p` too); any other text is a path.
fn local_path(payload: &str) -> &str {
    let scheme = payload
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("file://"));
    match scheme.map(|_| &payload[7..]) {
        Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
        None => payload,
    }
}
