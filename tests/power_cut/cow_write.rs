//! Power cuts while an update is written as Virtual A/B snapshots (`device::snapshot`): the
//! delta scenario's payload, given `merge_operations` (COW_COPY and COW_XOR, as
//! delta_generator derives them), is applied once as one v3 COW per partition over slot A's
//! images, with every COW write, sync and truncation and every checkpoint replace recorded.
//! Each crash disk cut from that run is restarted with the same payload: the engine resumes
//! from its durable checkpoint, each COW is reopened at that checkpoint's label (what a killed
//! run wrote after it is dropped), and the run ends with COWs whose last resume point is the
//! end label and whose view over the untouched base is exactly the new image.

use std::path::Path;
use std::sync::Arc;

use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::cow::{CowOptions, CowReader, ReadAt, SnapshotView};
use abupdate::device::snapshot::{CowDir, CowFiles, CowStorage, SnapshotPartitions};
use abupdate::device::Device;
use abupdate::engine::metadata::Metadata;
use abupdate::engine::{self, ApplyOptions, Quiet, END_LABEL};
use abupdate::payload::properties::PayloadProperties;
use abupdate::payload::Manifest;
use abupdate::slot::Slot;
use abupdate::source::Source;

use crate::common::forge::Forge;
use crate::crash::{Files, Timeline};
use crate::recorder::{recording_checkpoints, Event, FileName, Log};
use crate::scenario::{self, scratch, write_files, Scenario};
use crate::{crash_and_check, Recorded};

const SNAPSHOTS: &str = "snapshots";

/// The COW files of a directory with every write, sync and truncation logged.
struct RecordingCows {
    dir: CowDir,
    log: Log,
}

struct RecordingCow {
    inner: Box<dyn CowStorage>,
    file: FileName,
    log: Log,
}

fn cow_name(snapshot: &str) -> FileName {
    format!("{SNAPSHOTS}/{}", CowDir::file_name(snapshot)).into()
}

impl CowFiles for RecordingCows {
    fn open(&self, file: &str) -> std::io::Result<Option<Box<dyn CowStorage>>> {
        Ok(self.dir.open(file)?.map(|inner| {
            Box::new(RecordingCow {
                inner,
                file: cow_name(file),
                log: self.log.clone(),
            }) as Box<dyn CowStorage>
        }))
    }
    fn create(&self, file: &str) -> std::io::Result<Box<dyn CowStorage>> {
        let inner = self.dir.create(file)?;
        // A truncation: durable with the file's next sync, as a write is.
        self.log.push(Event::Replace {
            file: cow_name(file),
            content: Some(Vec::new()),
        });
        Ok(Box::new(RecordingCow {
            inner,
            file: cow_name(file),
            log: self.log.clone(),
        }))
    }
}

impl ReadAt for RecordingCow {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
}

impl abupdate::cow::CowSink for RecordingCow {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_at(offset, data)?;
        self.log.push(Event::Write {
            file: self.file.clone(),
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()?;
        self.log.push(Event::Sync {
            file: self.file.clone(),
        });
        Ok(())
    }
}

/// The delta scenario with merge operations: its payload signed again, its manifest.
struct SnapshotRun {
    scenario: Scenario,
    payload: Vec<u8>,
    manifest: Manifest,
    options: ApplyOptions,
}

fn snapshot_run() -> SnapshotRun {
    let scenario = scenario::delta();
    let mut forge = Forge::parse(&scenario.payload);
    assert!(forge.add_merge_operations() > 0, "no diff operation to XOR");
    forge.sign(&scenario::signer());
    let payload = forge.to_bytes();
    let mut options = scenario.options.clone();
    // The properties were the unedited payload's.
    options.properties = PayloadProperties::new();
    let needed = Metadata::needed(&payload, Some(payload.len() as u64)).unwrap();
    let metadata = Metadata::verify(
        payload[..needed as usize].to_vec(),
        Some(payload.len() as u64),
        &options.properties,
        &options.keys,
    )
    .unwrap();
    SnapshotRun {
        scenario,
        payload,
        manifest: metadata.manifest,
        options,
    }
}

fn cow_options() -> CowOptions {
    CowOptions {
        compression: abupdate::cow::Compression::Lz4,
        threads: 1,
        ..CowOptions::default()
    }
}

/// Applies the payload as snapshots over the device in `root` (slot A running).
fn apply(
    run: &SnapshotRun,
    root: &Path,
    files: Arc<dyn CowFiles>,
    store: &dyn engine::checkpoint::CheckpointStore,
) -> Result<engine::ApplyReport, String> {
    let dev = Device::host(root, Slot::A);
    let parts = SnapshotPartitions::with_files(&dev, files, cow_options(), &run.manifest)
        .map_err(|e| e.to_string())?;
    std::fs::write(root.join("payload.bin"), &run.payload).unwrap();
    let mut source = Source::file(&root.join("payload.bin")).map_err(|e| e.to_string())?;
    let mut options = run.options.clone();
    options.threads = 1;
    engine::apply(&parts, &mut source, store, &(), &options, &Quiet).map_err(|e| e.to_string())
}

fn record(run: &SnapshotRun) -> Recorded {
    let tmp = scratch();
    let root = tmp.path();
    write_files(root, &run.scenario.before);
    std::fs::create_dir_all(root.join(SNAPSHOTS)).unwrap();
    let log = Log::default();
    let files = Arc::new(RecordingCows {
        dir: CowDir(root.join(SNAPSHOTS)),
        log: log.clone(),
    });
    let store = recording_checkpoints(
        FileCheckpointStore::new(root.join("state")).unwrap(),
        log.clone(),
    );
    apply(run, root, files, &store).unwrap();
    check_cows(run, &crate::scenario::read_dir(root)).unwrap();
    Recorded {
        timeline: Timeline {
            initial: run.scenario.before.clone(),
            events: log.events(),
            verity_areas: Vec::new(),
        },
        payload_id: [0; 32],
    }
}

/// Each partition's COW ends with the end label, and its view over slot A's untouched image
/// is the new image.
fn check_cows(run: &SnapshotRun, files: &Files) -> Result<(), String> {
    for p in &run.manifest.partitions {
        let base = &files[Scenario::old_file(&p.name).as_str()];
        if *base != run.scenario.old[&p.name] {
            return Err(format!("slot A's {} was written", p.name));
        }
        let cow = files
            .get(&*cow_name(&format!("{}_b", p.name)))
            .ok_or_else(|| format!("no COW for {}", p.name))?;
        let reader = CowReader::parse(cow, None).map_err(|e| format!("{}: {e}", p.name))?;
        if reader.resume_points.last().map(|r| r.label) != Some(END_LABEL) {
            return Err(format!("{}'s COW does not end with the end label", p.name));
        }
        let new = &run.scenario.new[&p.name];
        let view = SnapshotView::new(cow.clone(), base.clone(), Some(new.len() as u64))
            .map_err(|e| e.to_string())?;
        let mut got = vec![0u8; new.len()];
        view.read_at(0, &mut got).map_err(|e| e.to_string())?;
        if got != *new {
            return Err(format!("{}'s snapshot is not the new image", p.name));
        }
    }
    Ok(())
}

/// A crash disk restarted: the update resumes (or starts over) and ends with whole COWs.
fn check(run: &SnapshotRun, files: &Files, root: &Path) -> Result<(), String> {
    std::fs::create_dir_all(root.join(SNAPSHOTS)).unwrap();
    write_files(root, files);
    let store = FileCheckpointStore::new(root.join("state")).unwrap();
    apply(run, root, Arc::new(CowDir(root.join(SNAPSHOTS))), &store)
        .map_err(|e| format!("the restarted update failed: {e}"))?;
    check_cows(run, &crate::scenario::read_dir(root))
}

/// Crash disks spread over the run (`ABUPDATE_COW_CRASH_STATES`: how many, `all` for every
/// crash point; 16 by default: each restart re-verifies the payload and the partitions, about
/// half a second of a debug build), each restarted. An early version lost every durable op of a
/// COW whose ops after the last sync were torn: reopening it parsed the whole COW, failed, and
/// started the COW over.
#[test]
fn every_cow_write_crash_state_resumes_to_the_new_images() {
    let run = snapshot_run();
    let recorded = record(&run);
    let events = &recorded.timeline.events;
    let labels = events
        .iter()
        .filter(|e| matches!(e, Event::Sync { file } if file.ends_with(".cow")))
        .count();
    let limit = match std::env::var("ABUPDATE_COW_CRASH_STATES").as_deref() {
        Ok("all") => usize::MAX,
        Ok(n) => n.parse().unwrap_or(16),
        Err(_) => 16,
    };
    let (checked, violations) =
        crash_and_check(&recorded, limit, |files, dir| check(&run, files, dir));
    println!(
        "snapshot writing ({} events, {labels} COW syncs): {} distinct crash states, {} violations",
        events.len(),
        checked,
        violations.len()
    );
    assert!(labels >= 8, "only {labels} COW syncs");
    assert!(checked >= 16.min(limit));
    assert!(violations.is_empty(), "{violations:?}");
}
