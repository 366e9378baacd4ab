//! One crash state, rebooted: the invariants on the disk as the crash left it, then on the
//! device after the bootloader ran and the engine was restarted with the same payload.
//!
//! 1. The bootloader boots a slot, and that slot holds exactly the old image set (A) or exactly
//!    the new one (B). Any other slot it could fall back to holds a whole image set too.
//! 2. Slot A's partitions are byte-identical to before the update.
//! 3. Booted into A, the restarted engine (resuming or starting over) finishes: B holds the
//!    new images byte for byte and the next boot is into B.
//! 4. The durable checkpoint claims no work that is not durable: every operation before
//!    `next_operation` has its blocks on disk, every partition counted in
//!    `verified_partitions` (all of them once `Done`) is whole, and a durable switch to B
//!    comes with a durable `Done`.
//! 5. With dynamic partitions, the slot the bootloader picks maps, from its own metadata slot
//!    in `super`, a whole build (A: the old one, B: the new one), and slot A's metadata slot is
//!    byte-identical to before. (Every partition here is read as its slot would boot it:
//!    logical ones through that slot's own metadata.)
//!
//! The restarted update can itself be cut by a second power cut; the disk that leaves must
//! keep the same invariants.

use std::path::Path;

use abupdate::boot_control::MiscBootControl;
use abupdate::engine::checkpoint::{Checkpoint, Phase};
use abupdate::engine::Quiet;
use abupdate::slot::control::{BootloaderControl, MISC_OFFSET, RECORD_LEN};
use abupdate::slot::Slot;
use abupdate::slot::{bootloader, BootControl};
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};

use crate::common::Rng;
use crate::crash::{CrashState, Files, How, Keep, Timeline};
use crate::recorder::{recording_updater, Fault, Log, CHECKPOINT, MISC};
use crate::scenario::{read_dir, scratch, write_files, Scenario, PARTITIONS, SUPER};

/// A second power cut, during the restarted update.
#[derive(Clone, Copy, Debug)]
pub enum SecondCut {
    /// At a random event of the restart, with random unsynced writes, from this seed.
    Random(u64),
    /// After this many events of the restart, every unsynced unit kept as given.
    At(usize, Keep),
}

/// What became of a crash state that kept every invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The switch was durable: the device booted the new slot, nothing left to do.
    BootedNew,
    /// Booted the old slot; the engine resumed at this operation (or after it, past writing).
    Resumed(u32),
    /// Booted the old slot; the engine started over.
    StartedOver,
}

/// Checks every invariant on `files` (the disk after a crash), with `root/dev` as the device.
/// With `second_cut`, the restarted update is recorded too and cut once more, and the disk it
/// leaves is checked the same way: a power cut during the recovery.
///
/// A reboot is the simulated bootloader's choice, then the OS on the booted slot marking it
/// successful (Android's `update_verifier` does early in boot), then the restarted update.
pub fn check(
    scenario: &Scenario,
    payload_id: &[u8; 32],
    files: &Files,
    root: &Path,
    second_cut: Option<SecondCut>,
) -> Result<Recovery, String> {
    claims_are_durable(scenario, payload_id, files)?;
    let dev = root.join("dev");
    write_files(&dev, files);
    let booted = reboot(scenario, &dev)?;
    MiscBootControl::open_device_dir(&dev, None)
        .and_then(|mut boot| boot.mark_boot_successful())
        .map_err(|e| format!("the booted OS cannot mark its slot successful: {e}"))?;
    old_slot_untouched(scenario, &dev, "after the crash")?;
    let phase = durable_checkpoint(files, payload_id).map(|c| c.phase);
    if booted == Slot::B {
        slot_holds_new(scenario, &dev, "booted after the crash")?;
        if phase != Some(Phase::Done) {
            return Err(format!(
                "invariant 4: slot B boots but the checkpoint says {phase:?}"
            ));
        }
        return Ok(Recovery::BootedNew);
    }
    let recovery = match second_cut {
        None => restart(scenario, root, None)?,
        Some(cut) => restart_cut_again(scenario, payload_id, root, cut)?,
    };
    old_slot_untouched(scenario, &dev, "after the restarted update")?;
    slot_holds_new(scenario, &dev, "after the restarted update")?;
    match reboot(scenario, &dev)? {
        Slot::B => Ok(recovery),
        Slot::A => Err("invariant 3: the restarted update did not switch to B".into()),
    }
}

/// The restarted update, recorded; then the disk a second power cut during it would have
/// left goes through every check (the restarted update itself still runs to its end here).
fn restart_cut_again(
    scenario: &Scenario,
    payload_id: &[u8; 32],
    root: &Path,
    cut: SecondCut,
) -> Result<Recovery, String> {
    let before = read_dir(&root.join("dev"));
    let log = Log::default();
    let recovery = restart(scenario, root, Some(&log))?;
    let timeline = Timeline {
        initial: before,
        events: log.events(),
        verity_areas: scenario.verity_areas(),
    };
    let state = match cut {
        SecondCut::Random(seed) => {
            let mut rng = Rng(seed);
            let at = rng.below(timeline.events.len() as u64 + 1) as usize;
            timeline.random(at, rng.next())
        }
        SecondCut::At(at, keep) => CrashState {
            at,
            keep: vec![keep; timeline.pending(at).len()],
            how: match keep {
                Keep::No => How::None,
                Keep::Yes => How::All,
                Keep::Torn(mask) => How::Torn(mask),
            },
        },
    };
    let again = scratch();
    check(
        scenario,
        payload_id,
        &timeline.materialize(&state),
        again.path(),
        None,
    )
    .map_err(|e| {
        format!(
            "{e} (cut again during the restart, after event {} of {}, {:?})",
            state.at,
            timeline.events.len(),
            state.how
        )
    })?;
    Ok(recovery)
}

/// Invariant 4 on the disk as the crash left it.
fn claims_are_durable(
    scenario: &Scenario,
    payload_id: &[u8; 32],
    files: &Files,
) -> Result<(), String> {
    if let Some(bytes) = files.get(CHECKPOINT) {
        if Checkpoint::decode(bytes).is_none() {
            return Err("the checkpoint file is not a whole checkpoint".into());
        }
    }
    let Some(cp) = durable_checkpoint(files, payload_id) else {
        return Ok(());
    };
    let partitions = &scenario.manifest.partitions;
    let ops_done = match cp.phase {
        Phase::Writing => cp.next_operation as usize,
        Phase::Verifying | Phase::Done => scenario.manifest.operation_count(),
    };
    let mut disks = std::collections::BTreeMap::new();
    for p in partitions {
        let disk = scenario
            .partition(files, &p.name, Slot::B)
            .map_err(|e| format!("invariant 4: a checkpoint exists but {e}"))?;
        disks.insert(p.name.clone(), disk);
    }
    let ops = partitions
        .iter()
        .flat_map(|p| p.operations.iter().map(move |op| (p, op)));
    for (index, (p, op)) in ops.enumerate().take(ops_done) {
        let disk = &disks[&p.name];
        let new = &scenario.new[&p.name];
        for e in &op.dst_extents {
            let range = e.byte_offset() as usize..(e.byte_offset() + e.byte_len()) as usize;
            if disk[range.clone()] != new[range] {
                return Err(format!(
                    "invariant 4: the checkpoint ({:?}, next_operation {}) claims operation \
                     {index} ({} blocks {}+{}), whose writes are not durable",
                    cp.phase, cp.next_operation, p.name, e.start_block, e.num_blocks
                ));
            }
        }
    }
    let verified = match cp.phase {
        Phase::Done => partitions.len(),
        _ => cp.verified_partitions as usize,
    };
    for p in partitions.iter().take(verified) {
        if disks[&p.name] != scenario.new[&p.name] {
            return Err(format!(
                "invariant 4: the checkpoint ({:?}, {} verified) claims partition {} is verified, \
                 but it is not durable",
                cp.phase, cp.verified_partitions, p.name
            ));
        }
    }
    Ok(())
}

/// The checkpoint of this update the crash left, if any.
fn durable_checkpoint(files: &Files, payload_id: &[u8; 32]) -> Option<Checkpoint> {
    let cp = Checkpoint::decode(files.get(CHECKPOINT)?)?;
    (&cp.payload_id == payload_id).then_some(cp)
}

/// One boot through the simulated bootloader; invariant 1's "a slot boots", and its fallback
/// half: a slot the record lets boot later must hold a whole image set.
fn reboot(scenario: &Scenario, dir: &Path) -> Result<Slot, String> {
    let mut misc = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(MISC))
        .map_err(|e| e.to_string())?;
    let booted = bootloader::boot_misc(&mut misc)
        .map_err(|e| format!("invariant 1: the bootloader failed: {e}"))?
        .ok_or("invariant 1: no slot is bootable")?;
    let mut record = [0u8; RECORD_LEN];
    std::os::unix::fs::FileExt::read_exact_at(&misc, &mut record, MISC_OFFSET)
        .map_err(|e| e.to_string())?;
    let record = BootloaderControl::parse(&record).map_err(|e| e.to_string())?;
    if scenario.super_device {
        let files = read_dir(dir);
        let build = match booted {
            Slot::A => &scenario.old,
            Slot::B => &scenario.new,
        };
        for p in PARTITIONS {
            let disk = scenario
                .partition(&files, p, booted)
                .map_err(|e| format!("invariant 5: slot {booted} boots but {e}"))?;
            if disk != build[p] {
                return Err(format!(
                    "invariant 5: slot {booted} boots but its own metadata maps a {p} that is \
                     not its build"
                ));
            }
        }
    }
    let fallback = booted.other();
    let entry = record.slot(fallback);
    if entry.tries_remaining() > 0 && !entry.verity_corrupted() {
        let whole = match fallback {
            Slot::A => true, // checked by old_slot_untouched
            Slot::B => slot_is_whole_build(scenario, dir)?,
        };
        if !whole {
            return Err("invariant 1: slot B is left bootable while half written".into());
        }
    }
    Ok(booted)
}

/// Slot B holds one build entirely: the one it had before the update, or the new one.
/// (A logical partition its metadata does not map is no whole build.)
fn slot_is_whole_build(scenario: &Scenario, dir: &Path) -> Result<bool, String> {
    let files = read_dir(dir);
    let mut disk = Vec::new();
    for p in PARTITIONS {
        match scenario.partition(&files, p, Slot::B) {
            Ok(d) => disk.push((p, d)),
            Err(_) => return Ok(false),
        }
    }
    let was_before = disk.iter().all(|(p, d)| *d == scenario.previous[*p]);
    let is_new = disk.iter().all(|(p, d)| *d == scenario.new[*p]);
    Ok(was_before || is_new)
}

fn old_slot_untouched(scenario: &Scenario, dir: &Path, when: &str) -> Result<(), String> {
    let files = read_dir(dir);
    for p in PARTITIONS {
        let disk = scenario
            .partition(&files, p, Slot::A)
            .map_err(|e| format!("invariant 2: {e} ({when})"))?;
        if disk != scenario.old[p] {
            return Err(format!("invariant 2: slot A's {p} changed ({when})"));
        }
    }
    for range in scenario.source_metadata_ranges() {
        if files[SUPER][range.clone()] != scenario.before[SUPER][range.clone()] {
            return Err(format!(
                "invariant 2: super's geometry or slot A's metadata changed at {range:?} ({when})"
            ));
        }
    }
    Ok(())
}

fn slot_holds_new(scenario: &Scenario, dir: &Path, when: &str) -> Result<(), String> {
    let files = read_dir(dir);
    for p in PARTITIONS {
        let disk = scenario
            .partition(&files, p, Slot::B)
            .map_err(|e| format!("slot B: {e} ({when})"))?;
        if disk != scenario.new[p] {
            return Err(format!("slot B's {p} is not the new image ({when})"));
        }
    }
    Ok(())
}

/// The device booted A again: the HAL reads the slot the bootloader recorded, and the engine
/// runs with the same payload (recorded into `log` if given).
fn restart(scenario: &Scenario, root: &Path, log: Option<&Log>) -> Result<Recovery, String> {
    let payload = root.join("payload.bin");
    std::fs::write(&payload, &scenario.payload).map_err(|e| e.to_string())?;
    let mut options = scenario.options.clone();
    options.threads = 1;
    let dev = root.join("dev");
    let updater = match log {
        Some(log) => recording_updater(&dev, log, Fault::None),
        None => Updater::open_host(&dev, &HostOptions::default())
            .map_err(|e| format!("invariant 3: opening the device after reboot: {e}"))?,
    };
    let outcome = Source::file(&payload)
        .and_then(|mut source| updater.apply(&mut source, &options, &Quiet))
        .map_err(|e| format!("invariant 3: the restarted update failed: {e}"))?;
    if outcome.switched_to != Some(Slot::B) {
        return Err("invariant 3: the restarted update did not switch".into());
    }
    Ok(match outcome.report.resumed_at {
        Some(op) => Recovery::Resumed(op),
        None => Recovery::StartedOver,
    })
}
