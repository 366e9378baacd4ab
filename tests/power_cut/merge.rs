//! Power cuts during the Virtual A/B merge (`device::snapshot_merge`): the merge of a COW into
//! its base partition in place is recorded (every base write and sync, every replace of the
//! merge's state and journal), cut at crash points spread over the whole run with none, all
//! and random subsets of the unsynced writes, and restarted on each resulting disk. Each crash
//! disk holds every base block as either its old or its new content (no block torn or
//! garbled), and the restarted merge ends with exactly the new image and no journal left: no
//! data of the base is lost, whatever copy in the merge order still had to read it. Crash
//! points after the last batch restart a finished merge: it must change nothing (an early
//! version removed its state when done, and a restart there merged the base a second time).

use std::path::Path;

use abupdate::cow::{write_image_cow, Compression, CowOptions, CowSummary};
use abupdate::device::snapshot_merge::{merge_with, MergeStore, Record, StateFiles};
use abupdate::device::TargetPartition;

use crate::common::{self, Rng};
use crate::crash::{Files, Timeline};
use crate::recorder::{recording_target, Event, FileName, Log};
use crate::scenario::scratch;
use crate::{crash_and_check, Recorded};

const BS: usize = 4096;
const BASE: &str = "system_a.img";
const STATE: &str = "merge";
const JOURNAL: &str = "merge.journal";

/// An old image and a new one: the first half moved down by 3 blocks (overlapping copies the
/// merge must order), two runs swapped (a cycle), edited, zeroed and fresh blocks; 1100
/// blocks, two merge batches.
fn image_pair(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let blocks = 1100;
    let old = common::mixed_image(rng, blocks);
    let mut new = old.clone();
    let half = blocks / 2;
    new[..(half - 3) * BS].copy_from_slice(&old[3 * BS..half * BS]);
    let (a, b) = (half + 10, half + 40);
    new[a * BS..(a + 8) * BS].copy_from_slice(&old[b * BS..(b + 8) * BS]);
    new[b * BS..(b + 8) * BS].copy_from_slice(&old[a * BS..(a + 8) * BS]);
    for i in half + 60..half + 120 {
        new[i * BS + 100] ^= 0x5a;
    }
    new[(half + 130) * BS..(half + 150) * BS].fill(0);
    rng.fill(&mut new[(half + 160) * BS..(half + 200) * BS]);
    (old, new)
}

/// The merge's records as files, each replace and removal logged as an atomic replace and the
/// directory sync that `state_file` makes before returning.
struct RecordingStore {
    inner: StateFiles,
    log: Log,
}

fn record_name(which: Record) -> FileName {
    match which {
        Record::State => STATE.into(),
        Record::Journal => JOURNAL.into(),
    }
}

impl RecordingStore {
    fn logged(&self, which: Record, content: Option<Vec<u8>>) {
        let file = record_name(which);
        self.log.push(Event::Replace {
            file: file.clone(),
            content,
        });
        self.log.push(Event::DirSync { file });
    }
}

impl MergeStore for RecordingStore {
    fn read(&self, which: Record) -> abupdate::Result<Option<Vec<u8>>> {
        self.inner.read(which)
    }
    fn replace(&self, which: Record, bytes: &[u8]) -> abupdate::Result<()> {
        self.inner.replace(which, bytes)?;
        self.logged(which, Some(bytes.to_vec()));
        Ok(())
    }
    fn remove(&self, which: Record) -> abupdate::Result<()> {
        self.inner.remove(which)?;
        self.logged(which, None);
        Ok(())
    }
}

struct MergeRun {
    old: Vec<u8>,
    new: Vec<u8>,
    cow: Vec<u8>,
    recorded: Recorded,
}

/// Writes the COW, then merges it once with the recorder under the base and the records.
/// With `forget_syncs`, base syncs reach the file but not the log (a merge that never syncs
/// its writes before saying they are merged).
fn record_merge(forget_syncs: bool) -> (MergeRun, CowSummary) {
    let (old, new) = image_pair(&mut Rng(0x3e26_e001));
    let opts = CowOptions {
        compression: Compression::Lz4,
        threads: 2,
        ..CowOptions::default()
    };
    let (cow, summary) = write_image_cow(&new, Some(&old), opts, Vec::new()).unwrap();
    let tmp = scratch();
    let base_path = tmp.path().join(BASE);
    std::fs::write(&base_path, &old).unwrap();
    let log = Log::default();
    let base = recording_target(
        Box::new(TargetPartition::open(&base_path).unwrap()),
        BASE.into(),
        log.clone(),
        forget_syncs,
    );
    let store = RecordingStore {
        inner: StateFiles::new(&tmp.path().join(STATE)),
        log: log.clone(),
    };
    merge_with(&cow, &*base, &store, &mut |_, _| {}).unwrap();
    assert!(
        std::fs::read(&base_path).unwrap() == new,
        "the recorded merge"
    );
    let mut initial = Files::new();
    initial.insert(BASE.into(), old.clone());
    let timeline = Timeline {
        initial,
        events: log.events(),
        verity_areas: Vec::new(),
    };
    let run = MergeRun {
        old,
        new,
        cow,
        recorded: Recorded {
            timeline,
            payload_id: [0; 32],
        },
    };
    (run, summary)
}

/// The invariants on one crash disk; `Err` says which broke.
fn check(run: &MergeRun, files: &Files, dir: &Path) -> Result<(), String> {
    let base = &files[BASE];
    for (b, block) in base.chunks(BS).enumerate() {
        let at = b * BS..(b + 1) * BS;
        if block != &run.old[at.clone()] && block != &run.new[at] {
            return Err(format!("block {b} is neither old nor new after the cut"));
        }
    }
    for (name, content) in files {
        std::fs::write(dir.join(&**name), content).unwrap();
    }
    let target = TargetPartition::open(&dir.join(BASE)).unwrap();
    let store = StateFiles::new(&dir.join(STATE));
    merge_with(&run.cow, &target, &store, &mut |_, _| {})
        .map_err(|e| format!("the restarted merge failed: {e}"))?;
    if std::fs::read(dir.join(BASE)).unwrap() != run.new {
        return Err("the resumed merge did not end with the new image".into());
    }
    if dir.join(JOURNAL).exists() {
        return Err("the merge's journal is left".into());
    }
    Ok(())
}

/// Checks `limit` distinct crash disks spread over the run; the violations.
fn crash_and_resume(run: &MergeRun, limit: usize) -> (usize, Vec<(usize, String)>) {
    crash_and_check(&run.recorded, limit, |files, dir| check(run, files, dir))
}

/// How many crash disks the default run checks; `ABUPDATE_MERGE_CRASH_STATES=all` checks
/// every crash point (each with none, all and a random subset of its unsynced writes).
fn limit() -> usize {
    match std::env::var("ABUPDATE_MERGE_CRASH_STATES").as_deref() {
        Ok("all") => usize::MAX,
        Ok(n) => n.parse().unwrap_or(80),
        Err(_) => 80,
    }
}

#[test]
fn every_merge_crash_state_resumes_to_the_new_image() {
    let (run, summary) = record_merge(false);
    assert!(
        summary.copy_ops > 300 && summary.sequence_entries > 0,
        "{summary:?}"
    );
    let events = &run.recorded.timeline.events;
    let journals = events
        .iter()
        .filter(|e| matches!(e, Event::Replace { file, content: Some(_) } if &**file == JOURNAL))
        .count();
    assert!(
        journals >= 2,
        "{journals} journals: fewer batches than planned"
    );
    let (checked, violations) = crash_and_resume(&run, limit());
    println!(
        "merge ({} events, {journals} batches): {checked} distinct crash states, {} violations",
        events.len(),
        violations.len()
    );
    assert!(checked >= 80.min(limit()), "only {checked} crash states");
    assert!(violations.is_empty(), "{violations:?}");
}

/// The harness can fail: a merge whose base syncs never happened (as the log says) loses
/// base writes that its state claims merged, and a resumed merge then reads over blocks
/// already moved.
#[test]
fn a_merge_without_syncs_is_caught() {
    let (run, _) = record_merge(true);
    let (_, violations) = crash_and_resume(&run, 30);
    assert!(!violations.is_empty(), "no crash state broke the merge");
}
