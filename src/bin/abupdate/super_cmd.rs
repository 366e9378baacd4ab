//! `abupdate super info`: what `lpdump` shows of a super image, every metadata slot.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

use abupdate::device::super_meta::{read_geometry, read_slot};
use abupdate::device::SourcePartition;
use abupdate::engine::SourceRead;
use abupdate::lp::{self, ExtentTarget, Metadata};

#[derive(Subcommand)]
pub enum SuperCommand {
    /// Geometry, then per metadata slot: header, groups, partitions with their extents, and
    /// free space.
    Info { image: PathBuf },
}

pub fn run(cmd: SuperCommand) -> Result<()> {
    match cmd {
        SuperCommand::Info { image } => info(&image),
    }
}

fn info(path: &Path) -> Result<()> {
    let dev = SourcePartition::open(path)?;
    let geometry = read_geometry(&dev)?;
    println!(
        "super:               {} ({} bytes)",
        path.display(),
        dev.size()
    );
    println!("metadata max size:   {} bytes", geometry.metadata_max_size);
    println!("metadata slot count: {}", geometry.metadata_slot_count);
    println!("logical block size:  {} bytes", geometry.logical_block_size);
    for slot in 0..geometry.metadata_slot_count {
        println!();
        match read_slot(&dev, &geometry, slot) {
            Ok(metadata) => print_slot(slot, &geometry, &metadata)?,
            Err(e) => println!("slot {slot}: unreadable: {e}"),
        }
    }
    Ok(())
}

fn print_slot(slot: u32, geometry: &lp::Geometry, m: &Metadata) -> Result<()> {
    let (major, minor) = m.header_version();
    let size = m.to_bytes(geometry).context("serialising")?.len();
    let flags = if m.header_flags() & lp::HEADER_FLAG_VIRTUAL_AB_DEVICE != 0 {
        "virtual_ab_device"
    } else {
        "none"
    };
    println!("slot {slot}: metadata version {major}.{minor}, {size} bytes, header flags: {flags}");
    println!("  groups:");
    for g in m.groups() {
        let max = match g.maximum_size {
            0 => "unlimited".to_owned(),
            n => format!("{n} bytes max"),
        };
        println!("    {:<24} {max}", g.name);
    }
    println!("  partitions:");
    for p in m.partitions() {
        let group = m.group_of(p).map_or("?", |g| g.name.as_str());
        println!(
            "    {:<24} {:>12} bytes  group {group}  {}",
            p.name,
            m.partition_size(p),
            attributes(p.attributes)
        );
        let mut logical = 0u64;
        for e in m.extents_of(p) {
            let end = logical + e.num_sectors;
            match e.target {
                ExtentTarget::Linear {
                    block_device,
                    physical_sector,
                } => {
                    let device = m
                        .block_devices()
                        .get(block_device as usize)
                        .map_or("?", |d| d.partition_name.as_str());
                    println!(
                        "      {logical} .. {} linear {device} {physical_sector}",
                        end - 1
                    );
                }
                ExtentTarget::Zero => println!("      {logical} .. {} zero", end - 1),
            }
            logical = end;
        }
    }
    let free = m.free_regions();
    let free_bytes: u64 = free.iter().map(|r| r.num_sectors() * lp::SECTOR_SIZE).sum();
    println!(
        "  free space: {free_bytes} of {} allocatable bytes",
        m.allocatable_space()
    );
    for r in free {
        println!(
            "    sectors {} .. {} ({} bytes)",
            r.start,
            r.end - 1,
            r.num_sectors() * lp::SECTOR_SIZE
        );
    }
    Ok(())
}

fn attributes(a: u32) -> String {
    let names = [
        (lp::ATTR_READONLY, "readonly"),
        (lp::ATTR_SLOT_SUFFIXED, "slot-suffixed"),
        (lp::ATTR_UPDATED, "updated"),
        (lp::ATTR_DISABLED, "disabled"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| a & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "none".to_owned()
    } else {
        set.join(",")
    }
}
