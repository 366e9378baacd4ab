//! Crash states the soak found, kept as tests.

use abupdate::slot::bootloader;
use abupdate::slot::control::{BootloaderControl, MISC_OFFSET, RECORD_LEN};
use abupdate::slot::Slot;

use crate::check::{self, Recovery, SecondCut};
use crate::crash::{CrashState, How, Keep};
use crate::recorder::{Event, Fault, MISC};
use crate::scenario::{self, scratch, Scenario};

/// Found by the soak (full payload, crash after event 3 with the `misc` record torn, then a
/// second crash while recovering): U-Boot replaces the torn record with its default, in which
/// no slot is marked successful, so booting A spends one of its tries. An update that then
/// marks B unbootable leaves A as the only bootable slot *with a finite number of tries*: every
/// reboot during the update spends one, and after six power cuts nothing boots. Like
/// update_engine (`UpdateBootFlagsAction`), the updater now marks the running slot successful
/// before it makes the target unbootable.
#[test]
fn the_running_slot_no_longer_depends_on_tries_once_the_target_is_unbootable() {
    let mut scenario = scenario::full();
    // The record as U-Boot leaves it after a torn write and one boot of A.
    let mut misc = scenario.before[MISC].clone();
    let record = misc_record(&mut misc);
    record.fill(0);
    assert_eq!(bootloader::boot(record), Ok(Some(Slot::A)));
    let parsed = BootloaderControl::parse(record).unwrap();
    assert!(!parsed.slot(Slot::A).successful_boot());
    assert_eq!(parsed.slot(Slot::A).tries_remaining(), 6);
    scenario.before.insert(MISC.into(), misc);

    let recorded = crate::record(&scenario, Fault::None);
    let events = &recorded.timeline.events;
    // Crash once the first target write is durable: B is half written and unbootable.
    let first_target_sync = events
        .iter()
        .position(|e| matches!(e, Event::Sync { file } if &**file != MISC))
        .unwrap();
    // Writers may go on while a sync runs (checkpoints are synced off the writer's path), so
    // writes can be pending at this point: the power cut loses all of them.
    let at = first_target_sync + 1;
    let pending = recorded.timeline.pending(at).len();
    let files = recorded.timeline.materialize(&CrashState {
        at,
        keep: (0..pending).map(|_| Keep::No).collect(),
        how: How::Synced,
    });
    let b = |p: &str| &files[Scenario::new_file(p).as_str()];
    assert!(
        *b("vbmeta") == scenario.new["vbmeta"] && *b("vendor") != scenario.new["vendor"],
        "slot B is half written"
    );

    // Power cuts during boot, each before the OS could mark anything: A must keep booting.
    let mut misc = files[MISC].clone();
    for boot in 1..=10 {
        assert_eq!(
            bootloader::boot(misc_record(&mut misc)),
            Ok(Some(Slot::A)),
            "boot {boot} after the crash"
        );
    }
}

/// The soak's crash state itself: `misc` torn while marking B unbootable, reboot (U-Boot's
/// default record boots A, spending a try), and a second power cut at the very start of the
/// restarted update. The soak first ran without the OS step of a reboot, and the next boot
/// went to B's previous build (more tries left than A). Android's `update_verifier` marks the
/// booted slot successful early in every boot; the harness now does too, so the restarted
/// update finds A marked. A power cut in the window between U-Boot's reset and that mark
/// still alternates to B's previous build: U-Boot's behaviour, which no updater write can
/// change (see the README's Durability section).
#[test]
fn a_torn_record_and_a_cut_while_recovering() {
    let scenario = scenario::full();
    let recorded = crate::record(&scenario, Fault::None);
    let events = &recorded.timeline.events;
    let at = 1 + events
        .iter()
        .position(|e| matches!(e, Event::Write { file, .. } if &**file == MISC))
        .unwrap();
    let pending = recorded.timeline.pending(at);
    assert_eq!(pending.len(), 1, "only the misc record is unsynced");
    let state = CrashState {
        at,
        keep: vec![Keep::Torn(0xffff)],
        how: How::Torn(0xffff),
    };
    let dir = scratch();
    let recovery = check::check(
        &scenario,
        &recorded.payload_id,
        &recorded.timeline.materialize(&state),
        dir.path(),
        Some(SecondCut::At(1, Keep::No)),
    )
    .unwrap();
    assert_eq!(recovery, Recovery::StartedOver);
}

fn misc_record(misc: &mut [u8]) -> &mut [u8; RECORD_LEN] {
    let at = MISC_OFFSET as usize;
    (&mut misc[at..at + RECORD_LEN]).try_into().unwrap()
}
