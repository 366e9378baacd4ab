//! Crash states from a recorded run. For a crash after the first `at` events, each file holds
//! everything written before its last sync among them, plus any subset of its later, unsynced
//! writes: target partition writes reach the disk page by page (4 KiB, independently), the
//! 32-byte `misc` record may also tear byte by byte, and a checkpoint replaced but not yet
//! made durable by its directory sync is either the old file or the new one (rename is
//! atomic). A file the run creates or grows (a COW) is as long as its kept writes reach.

use std::collections::{BTreeMap, HashMap, HashSet};

use abupdate::engine::checkpoint::{Checkpoint, Phase};

use crate::common::Rng;
use crate::recorder::{Event, FileName, MISC};

/// The content of every file of a device directory, by name.
pub type Files = BTreeMap<FileName, Vec<u8>>;

const PAGE: u64 = 4096;

/// A recorded run: the files before it and every write and sync it made.
pub struct Timeline {
    pub initial: Files,
    pub events: Vec<Event>,
    /// Byte ranges of files the device computes (verity hash trees and FEC): a crash right
    /// after a write there falls in [`Stage::Verity`], whichever engine phase wrote it.
    pub verity_areas: Vec<(FileName, std::ops::Range<u64>)>,
}

/// A piece of an unsynced event that reaches the disk, or not, on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// The bytes `from..to` of a write's data: one page of the file.
    Page {
        event: usize,
        from: usize,
        to: usize,
    },
    /// A `misc` record write, which can also tear.
    Record { event: usize },
    /// A checkpoint replace: the new file or the old one.
    Replace { event: usize },
}

/// Whether a unit reached the disk; `Torn(mask)`: the record bytes whose bit is set did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keep {
    No,
    Yes,
    Torn(u64),
}

/// How a crash state's unsynced writes were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Nothing was unsynced at the crash point.
    Synced,
    /// None of the unsynced writes reached the disk.
    None,
    /// All of them did (what a `kill -9` leaves).
    All,
    /// Each one independently, from this seed.
    Random(u64),
    /// The `misc` record is torn with this byte mask; everything else reached the disk.
    Torn(u64),
}

/// Where in the update a crash point falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Before the first target write: the old checkpoint cleared, the target slot marked
    /// unbootable, the first checkpoint.
    Start,
    /// Writing operations.
    Operations,
    /// Between a sync and the checkpoint it protects, or between a checkpoint's rename and
    /// its directory sync.
    Checkpoint,
    /// Writing hash trees and FEC (the post-write pass trails the operations), or verifying
    /// partitions.
    Verity,
    /// After the last checkpoint: AVB checks and the slot switch.
    Switch,
}

#[derive(Clone, Debug)]
pub struct CrashState {
    pub at: usize,
    pub keep: Vec<Keep>,
    pub how: How,
}

impl Timeline {
    /// The units not yet durable after the first `at` events, in event order.
    pub fn pending(&self, at: usize) -> Vec<Unit> {
        let barriers = self.last_barriers(at);
        let mut units = Vec::new();
        for (i, event) in self.events[..at].iter().enumerate() {
            if barriers.get(event.file()).is_some_and(|&b| i < b) {
                continue;
            }
            match event {
                Event::Write { file, .. } if &**file == MISC => {
                    units.push(Unit::Record { event: i });
                }
                Event::Write { offset, data, .. } => {
                    let mut from = 0usize;
                    while from < data.len() {
                        let page_end = (offset + from as u64) / PAGE * PAGE + PAGE;
                        let to = ((page_end - offset) as usize).min(data.len());
                        units.push(Unit::Page { event: i, from, to });
                        from = to;
                    }
                }
                Event::Replace { .. } => units.push(Unit::Replace { event: i }),
                Event::Sync { .. } | Event::DirSync { .. } => {}
            }
        }
        units
    }

    /// The crash states a run at `at` is tested with: when something is unsynced, none of it,
    /// all of it, `randoms` random subsets (a few more when many pages are pending) and, if
    /// the `misc` record is pending, torn records.
    pub fn states_at(&self, at: usize, randoms: usize, rng: &mut Rng) -> Vec<CrashState> {
        let pending = self.pending(at);
        if pending.is_empty() {
            return vec![CrashState {
                at,
                keep: vec![],
                how: How::Synced,
            }];
        }
        let mut states = vec![
            self.uniform(at, &pending, Keep::No, How::None),
            self.uniform(at, &pending, Keep::Yes, How::All),
        ];
        for _ in 0..randoms + (pending.len() / 8).min(8) {
            states.push(self.random_with(at, &pending, rng.next()));
        }
        if pending.iter().any(|u| matches!(u, Unit::Record { .. })) {
            // The first half, the first quarter, the second half and an arbitrary mix.
            for mask in [0xffff, 0xff, 0xffff_0000, rng.next() & 0xffff_ffff] {
                let keep = pending
                    .iter()
                    .map(|u| match u {
                        Unit::Record { .. } => Keep::Torn(mask),
                        _ => Keep::Yes,
                    })
                    .collect();
                states.push(CrashState {
                    at,
                    keep,
                    how: How::Torn(mask),
                });
            }
        }
        states
    }

    /// A crash at `at` with each unsynced unit kept or lost at random (records may tear).
    pub fn random(&self, at: usize, seed: u64) -> CrashState {
        self.random_with(at, &self.pending(at), seed)
    }

    fn random_with(&self, at: usize, pending: &[Unit], seed: u64) -> CrashState {
        let mut rng = Rng(seed | 1);
        let keep = pending
            .iter()
            .map(|u| match (u, rng.below(4)) {
                (Unit::Record { .. }, 0) => Keep::Torn(rng.next() & 0xffff_ffff),
                (_, n) if n % 2 == 0 => Keep::Yes,
                _ => Keep::No,
            })
            .collect();
        CrashState {
            at,
            keep,
            how: if pending.is_empty() {
                How::Synced
            } else {
                How::Random(seed)
            },
        }
    }

    /// Every write of the run in place: what the page cache held at its end.
    pub fn all_written(&self) -> Files {
        let at = self.events.len();
        let pending = self.pending(at);
        self.materialize(&self.uniform(at, &pending, Keep::Yes, How::All))
    }

    /// What the disk holds after `state`'s crash.
    pub fn materialize(&self, state: &CrashState) -> Files {
        let mut files = self.initial.clone();
        let written = self.written();
        files.retain(|name, _| !written.contains(name));
        files.extend(self.materialize_written(state));
        files
    }

    /// The files the run writes (or creates), as `state`'s crash leaves them.
    fn materialize_written(&self, state: &CrashState) -> Files {
        let barriers = self.last_barriers(state.at);
        let pending = self.pending(state.at);
        assert_eq!(pending.len(), state.keep.len(), "crash state does not fit");
        let mut by_event: HashMap<usize, Vec<(Unit, Keep)>> = HashMap::new();
        for (unit, keep) in pending.into_iter().zip(&state.keep) {
            let event = match unit {
                Unit::Page { event, .. } | Unit::Record { event } | Unit::Replace { event } => {
                    event
                }
            };
            by_event.entry(event).or_default().push((unit, *keep));
        }
        let written = self.written();
        let mut files = self.initial.clone();
        files.retain(|name, _| written.contains(name));
        for (i, event) in self.events[..state.at].iter().enumerate() {
            let durable = barriers.get(event.file()).is_some_and(|&b| i < b);
            match event {
                Event::Write { file, offset, data } => {
                    // A file the run creates (a COW) starts empty; a write past its end grows
                    // it, and a lost page below a kept one reads as zeros.
                    let content = files.entry(file.clone()).or_default();
                    let end = *offset as usize + data.len();
                    let at = *offset as usize;
                    let grow = |content: &mut Vec<u8>, to: usize| {
                        if content.len() < to {
                            content.resize(to, 0);
                        }
                    };
                    if durable {
                        grow(content, end);
                        content[at..end].copy_from_slice(data);
                        continue;
                    }
                    for (unit, keep) in by_event.get(&i).into_iter().flatten() {
                        match (unit, keep) {
                            (_, Keep::No) => {}
                            (Unit::Page { from, to, .. }, Keep::Yes) => {
                                grow(content, at + to);
                                content[at + from..at + to].copy_from_slice(&data[*from..*to]);
                            }
                            (Unit::Record { .. }, Keep::Yes) => {
                                grow(content, end);
                                content[at..end].copy_from_slice(data);
                            }
                            (Unit::Record { .. }, Keep::Torn(mask)) => {
                                for (j, &byte) in data.iter().enumerate() {
                                    if mask >> j & 1 == 1 {
                                        content[at + j] = byte;
                                    }
                                }
                            }
                            (unit, keep) => panic!("{keep:?} does not apply to {unit:?}"),
                        }
                    }
                }
                Event::Replace { file, content } => {
                    let kept = durable
                        || by_event
                            .get(&i)
                            .is_some_and(|u| u.iter().all(|(_, k)| *k == Keep::Yes));
                    if kept {
                        match content {
                            Some(bytes) => files.insert(file.clone(), bytes.clone()),
                            None => files.remove(file),
                        };
                    }
                }
                Event::Sync { .. } | Event::DirSync { .. } => {}
            }
        }
        files
    }

    /// Where the crash point `at` falls in the update.
    pub fn stage(&self, at: usize) -> Stage {
        let before = &self.events[..at];
        if let Some(Event::Replace { .. }) = before.last() {
            return Stage::Checkpoint;
        }
        if let Some(Event::Sync { file }) = before.last() {
            if &**file != MISC {
                return Stage::Checkpoint;
            }
        }
        let phase = before.iter().rev().find_map(|e| match e {
            Event::Replace {
                content: Some(bytes),
                ..
            } => Checkpoint::decode(bytes).map(|c| c.phase),
            _ => None,
        });
        let last_target_write = before.iter().rev().find_map(|e| match e {
            Event::Write { file, offset, .. } if &**file != MISC => Some((file, *offset)),
            _ => None,
        });
        let wrote_target = last_target_write.is_some();
        let in_verity_area = last_target_write.is_some_and(|(file, offset)| {
            self.verity_areas
                .iter()
                .any(|(f, range)| f == file && range.contains(&offset))
        });
        match phase {
            Some(Phase::Done) if wrote_target => Stage::Switch,
            Some(Phase::Verifying) => Stage::Verity,
            _ if in_verity_area => Stage::Verity,
            _ if wrote_target => Stage::Operations,
            _ => Stage::Start,
        }
    }

    /// A digest of what the disk holds after `state`, to skip crash states already checked.
    /// Files the run never writes are the same in every state and left out.
    pub fn digest(&self, state: &CrashState) -> [u8; 32] {
        let mut hash = abupdate::engine::hashing::ResumableSha256::new();
        for (name, content) in self.materialize_written(state) {
            hash.update(name.as_bytes());
            hash.update(&(content.len() as u64).to_le_bytes());
            hash.update(&content);
        }
        hash.finish()
    }

    fn written(&self) -> HashSet<FileName> {
        self.events.iter().map(|e| e.file().clone()).collect()
    }

    /// Each file's last barrier (sync) among the first `at` events.
    fn last_barriers(&self, at: usize) -> HashMap<FileName, usize> {
        let mut barriers = HashMap::new();
        for (i, event) in self.events[..at].iter().enumerate() {
            if event.is_barrier() {
                barriers.insert(event.file().clone(), i);
            }
        }
        barriers
    }

    fn uniform(&self, at: usize, pending: &[Unit], keep: Keep, how: How) -> CrashState {
        CrashState {
            at,
            keep: vec![keep; pending.len()],
            how,
        }
    }
}
