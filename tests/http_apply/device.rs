//! The simulated device the tests update, the checks on it after every apply, and the apply
//! and re-run steps themselves.

use std::path::Path;

use abupdate::boot_control::MiscBootControl;
use abupdate::download::SourceOptions;
use abupdate::engine::checkpoint::{Checkpoint, Phase};
use abupdate::engine::{ApplyOptions, Observer, Quiet};
use abupdate::payload::properties::PayloadProperties;
use abupdate::slot::BootControl;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Outcome, Updater};
use abupdate::Error;

use crate::common::Rng;
use crate::{fixture, opts, Payload, PARTITIONS};

/// A device directory running slot A with the old images; slot B holds stale bytes.
pub struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    pub fn fresh() -> Device {
        let fx = fixture();
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0xb0b0);
        for (&(name, _), old) in PARTITIONS.iter().zip(&fx.old) {
            std::fs::write(dir.path().join(format!("{name}_a.img")), old).unwrap();
            let mut stale = vec![0u8; old.len()];
            rng.fill(&mut stale);
            std::fs::write(dir.path().join(format!("{name}_b.img")), stale).unwrap();
        }
        MiscBootControl::create_image(&dir.path().join("misc.img"), Slot::A).unwrap();
        Device { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh updater, as a new process (or a restarted service) would open it.
    pub fn updater(&self) -> Updater {
        Updater::open_host(self.path(), &HostOptions::default()).unwrap()
    }

    pub fn image(&self, index: usize, slot: Slot) -> Vec<u8> {
        let name = PARTITIONS[index].0;
        std::fs::read(self.path().join(format!("{name}{}.img", slot.suffix()))).unwrap()
    }

    pub fn active_slot(&self) -> Slot {
        MiscBootControl::open_device_dir(self.path(), Some(Slot::A))
            .unwrap()
            .active_slot()
            .unwrap()
    }

    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.updater().store().load().unwrap()
    }

    /// Slot B holds `payload`'s images, slot A is untouched, and B boots next.
    pub fn assert_updated(&self, payload: &Payload) {
        for (i, image) in payload.images.iter().enumerate() {
            assert!(
                self.image(i, Slot::B) == *image,
                "{} in slot B differs from the new image",
                PARTITIONS[i].0
            );
        }
        self.assert_slot_a_untouched();
        assert_eq!(self.active_slot(), Slot::B, "the update is not switched to");
    }

    /// A failed apply: a download failure code, slot A still boots and is untouched, and any
    /// checkpoint covers only operations whose bytes are in slot B.
    pub fn assert_failed_safely(&self, error: &Error, payload: &Payload) {
        assert_eq!(
            error.code.as_i32() / 10,
            1,
            "not a download failure: {error}"
        );
        assert_eq!(self.active_slot(), Slot::A, "switched after {error}");
        self.assert_slot_a_untouched();
        if let Some(cp) = self.checkpoint() {
            self.assert_checkpoint_consistent(&cp, payload);
        }
    }

    pub fn assert_slot_a_untouched(&self) {
        for (i, old) in fixture().old.iter().enumerate() {
            assert!(
                self.image(i, Slot::A) == *old,
                "{} in slot A was modified",
                PARTITIONS[i].0
            );
        }
    }

    /// The checkpoint names the data offset right after its last operation, and every
    /// operation it covers has its new bytes in slot B.
    pub fn assert_checkpoint_consistent(&self, cp: &Checkpoint, payload: &Payload) {
        let mut ops = payload
            .manifest
            .partitions
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.operations.iter().map(move |op| (i, op)));
        let covered: Vec<_> = ops.by_ref().take(cp.next_operation as usize).collect();
        let data_end = covered
            .iter()
            .filter(|(_, op)| op.kind.has_blob())
            .map(|(_, op)| op.data_offset + op.data_length)
            .max()
            .unwrap_or(0);
        assert_eq!(cp.next_data_offset, data_end, "checkpoint offset");
        let images: Vec<Vec<u8>> = (0..PARTITIONS.len())
            .map(|i| self.image(i, Slot::B))
            .collect();
        for (part, op) in covered {
            for e in &op.dst_extents {
                let range = e.byte_offset() as usize..(e.byte_offset() + e.byte_len()) as usize;
                assert!(
                    images[part][range.clone()] == payload.images[part][range.clone()],
                    "checkpointed {:?} at {range:?} of {} is not in slot B",
                    op.kind,
                    PARTITIONS[part].0
                );
            }
        }
    }
}

/// One apply: its outcome and how many payload bytes the source fetched.
pub struct Run {
    pub result: Result<Outcome, Error>,
    pub fetched: u64,
}

impl Run {
    pub fn unwrap(self) -> (Outcome, u64) {
        match self.result {
            Ok(outcome) => (outcome, self.fetched),
            Err(e) => panic!("apply failed: {e}"),
        }
    }

    pub fn unwrap_err(self) -> Error {
        match self.result {
            Ok(_) => panic!("apply succeeded"),
            Err(e) => e,
        }
    }
}

/// Applies `payload`, fetched from `url`, with its `payload_properties.txt` and the key.
pub fn apply(device: &Device, url: &str, payload: &Payload, source: SourceOptions) -> Run {
    apply_with(device, url, &payload.properties, source, &Quiet)
}

/// Applies with the given header pairs and observer; the source knows the payload size when
/// `FILE_SIZE` is among the pairs, as `abupdate apply` does.
pub fn apply_with(
    device: &Device,
    url: &str,
    properties: &PayloadProperties,
    source: SourceOptions,
    observer: &dyn Observer,
) -> Run {
    let updater = device.updater();
    let mut source = Source::new(url, 0, properties.file_size, source);
    let options = ApplyOptions {
        keys: fixture().keys.clone(),
        properties: properties.clone(),
        threads: 2,
        ..ApplyOptions::default()
    };
    let result = updater.apply(&mut source, &options, observer);
    Run {
        result,
        fetched: source.bytes_fetched(),
    }
}

/// Slack on exact byte counts: the connection buffer's worth a dropped stream may have
/// received beyond what the engine consumed.
pub const BUFFER: u64 = 64 * 1024;

/// Re-runs an interrupted apply against a healthy server: it resumes at the checkpoint, fetches
/// the metadata again and then only the data the checkpoint lacks, and finishes. Returns the
/// bytes fetched.
pub fn rerun(device: &Device, url: &str, payload: &Payload) -> u64 {
    let cp = device.checkpoint().expect("a checkpoint to resume from");
    let (outcome, fetched) = apply(device, url, payload, opts()).unwrap();
    device.assert_updated(payload);
    let data_offset = payload.data_offset();
    if cp.next_operation == 0 && cp.phase == Phase::Writing {
        // Nothing written yet: a fresh start, one stream for everything.
        assert_eq!(outcome.report.resumed_at, None);
        assert_eq!(fetched, payload.size());
        return fetched;
    }
    assert_eq!(outcome.report.resumed_at, Some(cp.next_operation));
    let rest = match cp.phase {
        Phase::Writing => payload.size() - data_offset - cp.next_data_offset,
        Phase::Verifying | Phase::Done => 0,
    };
    let metadata = fetched
        .checked_sub(rest)
        .expect("fetched less than the rest");
    eprintln!(
        "re-run from operation {} (data offset {}): fetched {fetched} = {rest} not yet applied + {metadata} for the metadata ({data_offset} bytes)",
        cp.next_operation, cp.next_data_offset
    );
    assert!(
        (data_offset..=data_offset + BUFFER).contains(&metadata),
        "fetched {fetched}: {rest} bytes were missing and the metadata is {data_offset}"
    );
    fetched
}
