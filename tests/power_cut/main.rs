//! Power cuts at any write: the device always boots and the update always recovers.
//!
//! As file-system and database engineers test crash consistency (dm-log-writes, ALICE,
//! SQLite's crash tests): run the real updater once per scenario with a recording layer under
//! its target partitions, `misc` and checkpoint store ([`recorder`]); then cut the recorded
//! run at many points, with many choices of which unsynced writes reached the disk
//! ([`crash`]), reboot each resulting disk through the simulated bootloader and restart the
//! engine with the same payload, checking the invariants of [`check`].
//!
//! The default run checks every crash point of a full and a delta update (a few hundred
//! distinct disks). The soak (not in CI): `ABUPDATE_CRASH_STATES=10000 cargo test --release
//! --test power_cut -- --ignored`.
//!
//! Virtual A/B is recorded and cut the same way: writing an update as snapshots
//! ([`cow_write`]; 16 crash disks spread over the run by default, every crash point with
//! `ABUPDATE_COW_CRASH_STATES=all`) and the merge ([`merge`]; 80 by default,
//! `ABUPDATE_MERGE_CRASH_STATES=all`).

#[path = "../avb_common/mod.rs"]
mod avb_common;
mod check;
#[path = "../common/mod.rs"]
mod common;
mod cow_write;
mod crash;
mod merge;
mod recorder;
mod regression;
mod scenario;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use abupdate::engine::Quiet;
use abupdate::slot::Slot;
use abupdate::source::Source;

use check::{Recovery, SecondCut};
use common::Rng;
use crash::{CrashState, Keep, Stage, Timeline};
use recorder::{Fault, Log};
use scenario::{read_dir, scratch, Scenario};

/// Every crash point of a full and a delta update checkpointed after every operation, each
/// with none, all and random subsets of its unsynced writes, and torn `misc` records.
#[test]
fn every_crash_state_boots_and_recovers() {
    let mut total = 0;
    for scenario in [scenario::full(), scenario::delta()] {
        let recorded = record(&scenario, Fault::None);
        let chosen = spread(&recorded, usize::MAX);
        let summary = run(&scenario, &recorded, &chosen, 8);
        summary.print(&scenario.name);
        summary.assert_clean(&scenario.name);
        // A full payload ships verity data like any other blocks, and its post-write pass
        // (hashing only) trails the operations: its crash points fall in Operations. A delta
        // leaves the hash tree and FEC to the device: those writes must be covered.
        let verity = !scenario.verity_areas().is_empty();
        let stages = [
            Stage::Start,
            Stage::Operations,
            Stage::Checkpoint,
            Stage::Verity,
            Stage::Switch,
        ];
        for stage in stages.into_iter().filter(|s| verity || *s != Stage::Verity) {
            assert!(
                summary.covered.get(&stage).is_some_and(|&n| n >= 4),
                "{}: too few crash states at {stage:?}: {:?}",
                scenario.name,
                summary.covered
            );
        }
        assert!(summary.torn >= 4, "{}: no torn misc record", scenario.name);
        total += summary.checked;
    }
    assert!(total >= 200, "only {total} distinct crash states");
}

/// Every crash point of a full update of a device with dynamic partitions: the target slot's
/// metadata write in `super` is cut too, and the slot the bootloader picks must map a whole
/// build from its own metadata slot (invariant 5).
#[test]
fn every_crash_state_of_a_super_device_boots_and_recovers() {
    let scenario = scenario::full_super();
    let recorded = record(&scenario, Fault::None);
    let metadata_writes = recorded
        .timeline
        .events
        .iter()
        .filter(|e| {
            matches!(e, recorder::Event::Write { file, offset, .. }
            if &**file == scenario::SUPER && *offset < 36 << 10)
        })
        .count();
    assert!(
        metadata_writes >= 2,
        "the metadata writes were not recorded"
    );
    let chosen = spread(&recorded, usize::MAX);
    let summary = run(&scenario, &recorded, &chosen, 8);
    summary.print(&scenario.name);
    summary.assert_clean(&scenario.name);
    for stage in [
        Stage::Start,
        Stage::Operations,
        Stage::Checkpoint,
        Stage::Switch,
    ] {
        assert!(
            summary.covered.get(&stage).is_some_and(|&n| n >= 4),
            "too few crash states at {stage:?}: {:?}",
            summary.covered
        );
    }
}

/// With one checkpoint after all the operations, a crash mid-writing leaves every write so far
/// unsynced: random subsets of all of them.
#[test]
fn crash_states_with_one_checkpoint_after_writing() {
    let scenario = scenario::delta().sparse_checkpoints();
    let recorded = record(&scenario, Fault::None);
    let chosen = random_points(&recorded, 60, 0x5ba5e);
    let summary = run(&scenario, &recorded, &chosen, 8);
    summary.print(&scenario.name);
    summary.assert_clean(&scenario.name);
    assert_eq!(summary.checked, 60);
}

/// The soak: `ABUPDATE_CRASH_STATES` (default 10000) distinct random crash states over both
/// payloads, with a checkpoint after every operation and with one after writing. (A delta
/// checkpointed after every operation has only a few hundred distinct crash disks: its writes
/// are small and synced at once; the others make up the rest.)
#[test]
#[ignore = "soak: ABUPDATE_CRASH_STATES=10000 cargo test --release --test power_cut -- --ignored"]
fn soak() {
    let wanted: usize = std::env::var("ABUPDATE_CRASH_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let scenarios = [
        scenario::delta(),
        scenario::full(),
        scenario::delta().sparse_checkpoints(),
        scenario::full().sparse_checkpoints(),
        scenario::full_super(),
    ];
    let mut total = 0;
    let count = scenarios.len();
    for (i, scenario) in scenarios.into_iter().enumerate() {
        let recorded = record(&scenario, Fault::None);
        let share = (wanted.saturating_sub(total)).div_ceil(count - i);
        let chosen = random_points(&recorded, share, 0x50a4 + i as u64);
        let summary = run(&scenario, &recorded, &chosen, 4);
        summary.print(&scenario.name);
        summary.assert_clean(&scenario.name);
        total += summary.checked;
    }
    println!("soak: {total} distinct crash states, every invariant held");
    assert!(total >= wanted, "only {total} distinct crash states");
}

/// The harness can fail: the run of an engine that never syncs its targets breaks
/// invariant 4 (a checkpoint claims writes that are not durable), and one that leaves the
/// target slot bootable while writing it breaks invariant 1.
#[test]
fn broken_engines_are_caught() {
    let scenario = scenario::full();
    for (fault, invariant) in [
        (Fault::ForgetTargetSyncs, "invariant 4"),
        (Fault::IgnoreSetUnbootable, "invariant 1"),
    ] {
        let recorded = record(&scenario, fault);
        let summary = run(&scenario, &recorded, &spread(&recorded, 40), 0);
        summary.print(&format!("full, {fault:?}"));
        assert!(
            summary
                .violations
                .iter()
                .any(|(_, why)| why.starts_with(invariant)),
            "{fault:?}: no violation of {invariant}: {:?}",
            summary.violations
        );
    }
    // On a super device, syncs of super (its metadata and logical partitions) left out.
    let scenario = scenario::full_super();
    let recorded = record(&scenario, Fault::ForgetTargetSyncs);
    let summary = run(&scenario, &recorded, &spread(&recorded, 20), 0);
    summary.print("full, super, ForgetTargetSyncs");
    assert!(
        summary
            .violations
            .iter()
            .any(|(_, why)| why.starts_with("invariant 4")),
        "super without syncs: no violation of invariant 4: {:?}",
        summary.violations
    );
}

/// A scenario's run as the recorder saw it.
struct Recorded {
    timeline: Timeline,
    payload_id: [u8; 32],
}

/// Runs the real updater once on the scenario's device, the recorder under its partitions,
/// `misc` and checkpoints. The recorder must change nothing: the run succeeds, and replaying
/// every recorded write over the files before it gives exactly the files after it.
fn record(scenario: &Scenario, fault: Fault) -> Recorded {
    let tmp = scratch();
    let dev = tmp.path().join("dev");
    scenario::write_files(&dev, &scenario.before);
    let payload = tmp.path().join("payload.bin");
    std::fs::write(&payload, &scenario.payload).unwrap();

    let log = Log::default();
    let updater = recorder::recording_updater(&dev, &log, fault);
    let outcome = updater
        .apply(
            &mut Source::file(&payload).unwrap(),
            &scenario.options,
            &Quiet,
        )
        .unwrap();
    assert_eq!(outcome.switched_to, Some(Slot::B));
    drop(updater);

    let timeline = Timeline {
        initial: scenario.before.clone(),
        events: log.events(),
        verity_areas: scenario.verity_areas(),
    };
    let everything = timeline.all_written();
    let on_disk = read_dir(&dev);
    assert_eq!(
        everything.keys().collect::<Vec<_>>(),
        on_disk.keys().collect::<Vec<_>>(),
        "{}: the recorded run left other files",
        scenario.name
    );
    for (name, content) in &on_disk {
        assert!(
            everything[name] == *content,
            "{}: replaying the log does not give {name} as the run left it",
            scenario.name
        );
    }
    for p in scenario::PARTITIONS {
        assert!(scenario.partition(&on_disk, p, Slot::B).unwrap() == scenario.new[p]);
    }
    Recorded {
        timeline,
        payload_id: outcome.report.metadata.id,
    }
}

/// Crash states spread over the whole run: each stage's crash points in an order that covers
/// the stage evenly at any length, the stages taken in turn, each point with none, all and
/// random subsets of its unsynced writes and torn `misc` records; distinct disks only, until
/// there are `limit`.
fn spread(recorded: &Recorded, limit: usize) -> Chosen {
    let timeline = &recorded.timeline;
    let mut by_stage: BTreeMap<Stage, Vec<usize>> = BTreeMap::new();
    for at in 0..=timeline.events.len() {
        by_stage.entry(timeline.stage(at)).or_default().push(at);
    }
    let mut queues: Vec<_> = by_stage.into_values().map(even_order).collect();
    let mut rng = Rng(0x0dd5_eed5);
    let mut chosen = Chosen::default();
    while chosen.states.len() < limit && queues.iter().any(|q| !q.is_empty()) {
        for queue in &mut queues {
            let Some(at) = queue.pop_front() else {
                continue;
            };
            for state in timeline.states_at(at, 1, &mut rng) {
                if chosen.states.len() < limit {
                    chosen.add(timeline, state);
                }
            }
        }
    }
    chosen
}

/// Crash states to check, one per distinct disk, and how many crash states of each stage
/// they stand for (a crash state whose disk is already chosen is covered by it).
#[derive(Default)]
struct Chosen {
    states: Vec<CrashState>,
    seen: HashSet<[u8; 32]>,
    covered: BTreeMap<Stage, usize>,
}

impl Chosen {
    fn add(&mut self, timeline: &Timeline, state: CrashState) {
        *self.covered.entry(timeline.stage(state.at)).or_default() += 1;
        if self.seen.insert(timeline.digest(&state)) {
            self.states.push(state);
        }
    }
}

/// Crash disks spread over `recorded` (at most `limit`, see [`spread`]), each materialized
/// into a scratch directory's files and handed to `check` on two threads; how many were
/// checked, and the crash points whose check failed, with why. (The Virtual A/B checks: the
/// updater's go through [`run`].)
fn crash_and_check(
    recorded: &Recorded,
    limit: usize,
    check: impl Fn(&crash::Files, &std::path::Path) -> Result<(), String> + Sync,
) -> (usize, Vec<(usize, String)>) {
    let chosen = spread(recorded, limit);
    let violations = Mutex::new(Vec::new());
    each_disk(recorded, &chosen.states, 2, |_, state, files, tmp| {
        if let Err(why) = check(files, tmp) {
            let mut v = violations.lock().unwrap_or_else(|e| e.into_inner());
            v.push((state.at, why));
        }
    });
    let violations = violations.into_inner().unwrap_or_else(|e| e.into_inner());
    (chosen.states.len(), violations)
}

/// Calls `f` with each state's index, the state, its disk (materialized) and a scratch
/// directory, on `threads` threads.
fn each_disk(
    recorded: &Recorded,
    states: &[CrashState],
    threads: usize,
    f: impl Fn(usize, &CrashState, &crash::Files, &std::path::Path) + Sync,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(state) = states.get(i) else {
                    return;
                };
                let files = recorded.timeline.materialize(state);
                let tmp = scratch();
                f(i, state, &files, tmp.path());
            });
        }
    });
}

/// `points` reordered so that every prefix spreads evenly over them (bit-reversed indices).
fn even_order(points: Vec<usize>) -> VecDeque<usize> {
    if points.len() < 2 {
        return points.into();
    }
    let bits = usize::BITS - (points.len() - 1).leading_zeros();
    (0..1usize << bits)
        .map(|i| i.reverse_bits() >> (usize::BITS - bits))
        .filter(|&i| i < points.len())
        .map(|i| points[i])
        .collect()
}

/// `wanted` distinct crash states at random points with random subsets.
fn random_points(recorded: &Recorded, wanted: usize, seed: u64) -> Chosen {
    let timeline = &recorded.timeline;
    let mut rng = Rng(seed);
    let mut chosen = Chosen::default();
    let mut tries = 0;
    while chosen.states.len() < wanted && tries < wanted * 20 {
        tries += 1;
        let at = rng.below(timeline.events.len() as u64 + 1) as usize;
        chosen.add(timeline, timeline.random(at, rng.next()));
    }
    chosen
}

#[derive(Default)]
struct Summary {
    /// Writes and syncs in the recorded run.
    events: usize,
    /// Distinct disks checked.
    checked: usize,
    /// Crash states by stage, those whose disk another state already stood for included.
    covered: BTreeMap<Stage, usize>,
    /// Checked disks with a torn `misc` record.
    torn: usize,
    /// Checked states whose restarted update was cut again.
    second_cuts: usize,
    recoveries: BTreeMap<&'static str, usize>,
    violations: Vec<(CrashState, String)>,
    seconds: f64,
}

/// Checks every chosen state, on as many threads as there are cores (up to 4).
/// Every `second_cut_every`-th state (0: none) also has its restarted update cut again.
fn run(
    scenario: &Scenario,
    recorded: &Recorded,
    chosen: &Chosen,
    second_cut_every: usize,
) -> Summary {
    let start = Instant::now();
    let summary = Mutex::new(Summary {
        events: recorded.timeline.events.len(),
        covered: chosen.covered.clone(),
        ..Summary::default()
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    each_disk(recorded, &chosen.states, threads, |i, state, files, tmp| {
        let second_cut = (second_cut_every > 0 && i % second_cut_every == 0)
            .then_some(SecondCut::Random(0x2c07_5eed ^ i as u64));
        let result = check::check(scenario, &recorded.payload_id, files, tmp, second_cut);
        let mut summary = summary.lock().unwrap_or_else(|e| e.into_inner());
        summary.checked += 1;
        summary.second_cuts += usize::from(second_cut.is_some());
        if state.keep.iter().any(|k| matches!(k, Keep::Torn(_))) {
            summary.torn += 1;
        }
        match result {
            Ok(recovery) => {
                let kind = match recovery {
                    Recovery::BootedNew => "booted the new slot",
                    Recovery::Resumed(_) => "resumed",
                    Recovery::StartedOver => "started over",
                };
                *summary.recoveries.entry(kind).or_default() += 1;
            }
            Err(why) => summary.violations.push((state.clone(), why)),
        }
    });
    let mut summary = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.seconds = start.elapsed().as_secs_f64();
    summary
}

impl Summary {
    fn print(&self, name: &str) {
        println!(
            "{name} ({} events): {} distinct crash states checked in {:.1}s ({} with a torn misc record, \
             {} cut again while recovering), standing for {:?}; {:?}; {} violations",
            self.events,
            self.checked,
            self.seconds,
            self.torn,
            self.second_cuts,
            self.covered,
            self.recoveries,
            self.violations.len()
        );
    }

    fn assert_clean(&self, name: &str) {
        if let Some((state, why)) = self.violations.first() {
            panic!(
                "{name}: {} of {} crash states break an invariant; first: crash after event {} \
                 ({:?}, {} pending units): {why}",
                self.violations.len(),
                self.checked,
                state.at,
                state.how,
                state.keep.len()
            );
        }
    }
}
