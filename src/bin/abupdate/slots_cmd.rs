//! `abupdate slots` and `abupdate mark-successful`: through the service, or with
//! `--device DIR` directly on a host device directory. Both print the same.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use abupdate::service::{BackendConfig, RollbackFloor, SlotInfo, UpdateBackend, UpdaterBackend};
use abupdate::slot::Slot;
use abupdate::updater::{HostOptions, Updater};

use crate::service_cmd::{self, ServiceArgs};

#[derive(Args)]
pub struct SlotsArgs {
    /// Without the service: a host device directory holding misc.img.
    #[arg(long, value_name = "DIR")]
    pub device: Option<PathBuf>,
    /// With --device: the running slot, when misc.img does not say it.
    #[arg(long, requires = "device")]
    pub current_slot: Option<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
}

pub fn slots(args: SlotsArgs) -> Result<()> {
    let (info, floors) = match &args.device {
        Some(_) => {
            let engine = host_engine(&args)?;
            (engine.slot_info()?, engine.rollback_floors()?)
        }
        None => {
            let client = args.service.connect()?;
            (client.slots()?, client.rollback_floors()?)
        }
    };
    print!("{}", render(&info, &floors));
    Ok(())
}

pub fn mark_successful(args: SlotsArgs) -> Result<()> {
    let Some(_) = &args.device else {
        return service_cmd::mark_successful(&args.service);
    };
    let engine = host_engine(&args)?;
    engine.mark_boot_successful()?;
    println!(
        "slot {} marked successful",
        engine.updater().device().current_slot().suffix()
    );
    Ok(())
}

/// `abupdate merge --device DIR`: what the service's cleanup does after the reboot into an
/// update (`update_engine_client --merge` asks the service for it on Android).
pub fn merge(args: SlotsArgs) -> Result<()> {
    if args.device.is_none() {
        anyhow::bail!("merge needs --device DIR; on Android: update_engine_client --merge");
    }
    let engine = host_engine(&args)?;
    engine
        .updater()
        .finish_previous_update_with(&mut |p| println!("merge {:.0}%", p * 100.0))?;
    println!("previous update finished");
    Ok(())
}

/// The device directory behind the same engine the service runs.
fn host_engine(args: &SlotsArgs) -> Result<UpdaterBackend> {
    let current = args
        .current_slot
        .as_deref()
        .map(str::parse::<Slot>)
        .transpose()?;
    let dir = args.device.as_deref().unwrap_or(std::path::Path::new("."));
    let updater = Updater::open_host(
        dir,
        &HostOptions {
            current,
            ..Default::default()
        },
    )?;
    Ok(UpdaterBackend::new(updater, BackendConfig::default()))
}

/// Says why a slot other than the running one is unbootable, and what brings it back.
pub fn unbootable_note(info: &SlotInfo) -> Option<String> {
    let slot = info
        .slots
        .iter()
        .find(|s| s.slot != info.current && !s.bootable)?;
    Some(format!(
        "slot {} stays unbootable by design: it was marked so before an update wrote into it, \
         and that update did not complete (refused, cancelled or failed), so that a half-written \
         slot never boots; it becomes bootable again when an update into it completes",
        slot.suffix
    ))
}

/// The note of [`unbootable_note`] for a host device directory, if it can be read.
pub fn device_note(device: &std::path::Path, current_slot: Option<&str>) -> Option<String> {
    let args = SlotsArgs {
        device: Some(device.to_owned()),
        current_slot: current_slot.map(str::to_owned),
        service: ServiceArgs::default(),
    };
    unbootable_note(&host_engine(&args).ok()?.slot_info().ok()?)
}

/// One line per slot (`_b: current=false active=true bootable=true successful=false
/// tries=7`), a note on an unbootable other slot, then the rollback floors.
fn render(info: &SlotInfo, floors: &[RollbackFloor]) -> String {
    let mut out = String::new();
    for s in &info.slots {
        out += &format!(
            "{}: current={} active={} bootable={} successful={} tries={}\n",
            s.suffix,
            s.slot == info.current,
            s.slot == info.active,
            s.bootable,
            s.successful,
            s.tries_remaining
        );
    }
    if let Some(note) = unbootable_note(info) {
        out += &format!("note: {note}\n");
    }
    let floors: Vec<String> = floors
        .iter()
        .map(|f| format!("{}={}", f.location, f.index))
        .collect();
    out += &format!(
        "rollback floors: {}\n",
        match floors.is_empty() {
            true => "none".to_owned(),
            false => floors.join(" "),
        }
    );
    out
}
