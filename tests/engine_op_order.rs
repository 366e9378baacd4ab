//! The post-write pass trails the writer: it hashes (and builds verity data for) the bytes no
//! later operation writes while operations are still being applied. Here a delta with verity is
//! re-assembled with its operations in a different order (legal for an A/B delta: every
//! operation reads the other slot), applied through a device that records each target read and
//! write, and checked against the same delta applied in order:
//! - the written slot is identical, tree and FEC included;
//! - no byte was read and later written over (the pass never hashes stale data);
//! - the pass did read while operations were still being written.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use protobuf::Message;

use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::device::Device;
use abupdate::engine::{self, Quiet, SlotPartitions, SourceRead, TargetWrite};
use abupdate::payload::proto::update_metadata::DeltaArchiveManifest;
use abupdate::payload::{PayloadHeader, HEADER_SIZE};
use abupdate::slot::Slot;
use abupdate::source::Source;

const BLOCKS: usize = 512;
const PARTITION: u64 = 3 << 20;

#[test]
fn the_pass_trails_out_of_order_operations_and_reads_only_final_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let old = common::mixed_image(&mut common::Rng(5), BLOCKS);
    let mut new = old.clone();
    let mut rng = common::Rng(6);
    for _ in 0..40 {
        let at = rng.below(new.len() as u64) as usize;
        new[at] ^= 0x5a;
    }
    std::fs::write(tmp.path().join("old.img"), &old).unwrap();
    std::fs::write(tmp.path().join("new.img"), &new).unwrap();
    let spec = PartitionSpec {
        name: "system".into(),
        new: tmp.path().join("new.img"),
        old: Some(tmp.path().join("old.img")),
        append_verity: true,
    };
    let options = BuildOptions {
        compressors: Compressors {
            xz: false,
            bzip2: false,
        },
        ..Default::default()
    };
    let in_order = tmp.path().join("in_order.bin");
    let report = build::build(&[spec], &options, &in_order).unwrap();
    let verity = report.manifest.partitions[0].verity.clone().unwrap();
    let verity_start = verity.hash_tree.byte_offset();
    let shuffled = tmp.path().join("shuffled.bin");
    let count = swap_operation_pairs(&in_order, &shuffled);
    assert!(count > 20, "only {count} operations: nothing to reorder");

    let expected = apply(&tmp.path().join("dev1"), &old, &in_order, None);
    let log = Arc::new(Mutex::new(Vec::new()));
    let written = apply(&tmp.path().join("dev2"), &old, &shuffled, Some(log.clone()));
    assert!(
        written == expected,
        "out-of-order apply wrote different bytes"
    );
    assert!(written[..new.len()] == new[..]);

    let events = log.lock().unwrap();
    for (i, event) in events.iter().enumerate() {
        if let Event::Write(w) = event {
            let stale = events[..i]
                .iter()
                .any(|e| matches!(e, Event::Read(r) if r.start < w.end && w.start < r.end));
            assert!(!stale, "bytes {w:?} were read before this write");
        }
    }
    // Operations never write the verity area (the device computes it); the pass does.
    let last_op_write = events
        .iter()
        .rposition(|e| matches!(e, Event::Write(w) if w.end <= verity_start))
        .unwrap();
    assert!(
        events[..last_op_write]
            .iter()
            .any(|e| matches!(e, Event::Read(_))),
        "the pass read nothing before the last operation was written"
    );
}

/// Applies `payload` to a new device whose slot A holds `old`; returns slot B afterwards.
fn apply(dev: &Path, old: &[u8], payload: &Path, log: Option<Arc<Mutex<Vec<Event>>>>) -> Vec<u8> {
    std::fs::create_dir_all(dev).unwrap();
    std::fs::write(dev.join("system_a.img"), old).unwrap();
    common::put_image(dev, "system", 'b', &[], PARTITION);
    let device = Device::host(dev, Slot::A);
    let store = FileCheckpointStore::new(dev.join("state")).unwrap();
    let mut source = Source::file(payload).unwrap();
    let options = common::unsigned_options();
    match log {
        Some(log) => {
            let recording = Recording { device, log };
            engine::apply(&recording, &mut source, &store, &(), &options, &Quiet).unwrap();
        }
        None => {
            engine::apply(&device, &mut source, &store, &(), &options, &Quiet).unwrap();
        }
    }
    std::fs::read(dev.join("system_b.img")).unwrap()
}

/// Rewrites an unsigned payload with each pair of neighbouring operations swapped, moving
/// their blobs along (blobs must follow operation order). Returns the operation count.
fn swap_operation_pairs(from: &Path, to: &Path) -> usize {
    let bytes = std::fs::read(from).unwrap();
    let header = PayloadHeader::parse(&bytes[..HEADER_SIZE], None).unwrap();
    assert_eq!(
        header.metadata_signature_size, 0,
        "expects an unsigned payload"
    );
    let data = &bytes[header.data_offset() as usize..];
    let mut manifest = DeltaArchiveManifest::parse_from_bytes(
        &bytes[HEADER_SIZE..header.metadata_size() as usize],
    )
    .unwrap();
    let mut blobs = Vec::new();
    let mut count = 0;
    for part in &mut manifest.partitions {
        for pair in part.operations.chunks_mut(2) {
            pair.reverse();
        }
        for op in &mut part.operations {
            count += 1;
            if op.has_data_offset() {
                let start = op.data_offset() as usize;
                let blob = &data[start..start + op.data_length() as usize];
                op.set_data_offset(blobs.len() as u64);
                blobs.extend_from_slice(blob);
            }
        }
    }
    let manifest_bytes = manifest.write_to_bytes().unwrap();
    let header = PayloadHeader {
        manifest_size: manifest_bytes.len() as u64,
        ..header
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&manifest_bytes);
    out.extend_from_slice(&blobs);
    std::fs::write(to, out).unwrap();
    count
}

#[derive(Debug)]
enum Event {
    Read(Range<u64>),
    Write(Range<u64>),
}

/// A device whose target partitions log every read and write, and write slowly, so that the
/// pass has time to run between operations.
struct Recording {
    device: Device,
    log: Arc<Mutex<Vec<Event>>>,
}

impl SlotPartitions for Recording {
    fn open_source(&self, name: &str) -> abupdate::Result<Box<dyn SourceRead>> {
        self.device.open_source(name)
    }
    fn open_target(&self, name: &str) -> abupdate::Result<Box<dyn TargetWrite>> {
        Ok(Box::new(Logged {
            inner: self.device.open_target(name)?,
            log: self.log.clone(),
        }))
    }
    fn target_slot_name(&self) -> String {
        self.device.target_slot_name()
    }
}

struct Logged {
    inner: Box<dyn TargetWrite>,
    log: Arc<Mutex<Vec<Event>>>,
}

impl TargetWrite for Logged {
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut log = self.log.lock().unwrap();
        log.push(Event::Write(offset..offset + buf.len() as u64));
        self.inner.write_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut log = self.log.lock().unwrap();
        log.push(Event::Read(offset..offset + buf.len() as u64));
        self.inner.read_at(buf, offset)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
}
