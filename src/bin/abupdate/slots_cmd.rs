//! `abupdate slots` and `abupdate mark-successful` on a host device directory.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use abupdate::device::Slot;
use abupdate::slot::{BootControl, MiscBootControl};
use abupdate::updater::{HostOptions, Updater};

#[derive(Args)]
pub struct DeviceArgs {
    /// Device directory holding misc.img.
    #[arg(long)]
    pub device: PathBuf,
    /// The running slot, when misc.img does not say it.
    #[arg(long)]
    pub current_slot: Option<String>,
}

fn open(args: &DeviceArgs) -> Result<MiscBootControl> {
    let current = args
        .current_slot
        .as_deref()
        .map(str::parse::<Slot>)
        .transpose()?;
    Ok(MiscBootControl::open_device_dir(&args.device, current)?)
}

pub fn slots(args: DeviceArgs) -> Result<()> {
    let boot = open(&args)?;
    println!("slot  current  active  bootable  successful  priority  tries");
    for s in boot.slots()? {
        let yn = |b: bool| if b { "yes" } else { "no" };
        let num = |n: Option<u8>| n.map_or("-".to_owned(), |n| n.to_string());
        println!(
            "{:<5} {:<8} {:<7} {:<9} {:<11} {:<9} {}",
            s.slot,
            yn(s.current),
            yn(s.active),
            yn(s.bootable),
            yn(s.successful),
            num(s.priority),
            num(s.tries_remaining)
        );
    }
    Ok(())
}

pub fn mark_successful(args: DeviceArgs) -> Result<()> {
    let current = args
        .current_slot
        .as_deref()
        .map(str::parse::<Slot>)
        .transpose()?;
    let updater = Updater::open_host(
        &args.device,
        &HostOptions {
            current,
            ..Default::default()
        },
    )?;
    updater.mark_boot_successful()?;
    println!("slot {} marked successful", updater.device().current_slot());
    Ok(())
}
