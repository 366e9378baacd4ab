//! The devices and payloads the crash states are cut from: a device running slot A (build v1)
//! with the previous build (v0) in slot B, updated to v2 by a signed full payload or by a signed
//! delta. Partitions: `vbmeta` (AVB-signed, rollback index = build number, holding `system`'s
//! hashtree descriptor), `boot`, `system` (hash tree and FEC behind an AVB footer; a delta
//! leaves them to the device) and `vendor`.
//!
//! The super scenario has the same builds on a device with dynamic partitions: `system` and
//! `vendor` are logical partitions in `super.img` (v1 as `<name>_a` and v0 as `<name>_b`, both
//! slots' metadata listing both), updated by a full payload with `dynamic_partition_metadata`,
//! so the target slot's metadata write is among the recorded writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use abupdate::avb::{Algorithm, Descriptor, VbmetaBuilder};
use abupdate::boot_control::MiscBootControl;
use abupdate::build::avb_image::add_hashtree_footer;
use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::device::logical::ExtentMap;
use abupdate::device::super_meta;
use abupdate::engine::checkpoint::{Checkpoint, Phase};
use abupdate::engine::ApplyOptions;
use abupdate::engine::SourceRead;
use abupdate::lp;
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::signature::Signer;
use abupdate::payload::Manifest;
use abupdate::slot::Slot;
use abupdate::verity::FecRoots;

use crate::common::{mixed_image, Rng};
use crate::crash::Files;
use crate::recorder::{CHECKPOINT, MISC};

pub const PARTITIONS: [&str; 4] = ["vbmeta", "boot", "system", "vendor"];
/// The logical partitions of the super scenario.
pub const LOGICAL: [&str; 2] = ["system", "vendor"];
pub use crate::recorder::SUPER;
/// A small super: 4 KiB metadata slots and alignment keep each crash state's copy small.
const SUPER_SIZE: u64 = 1792 << 10;
const GROUP_SIZE: u64 = 768 << 10;
const BLOCK: usize = 4096;
const VBMETA_SIZE: usize = 64 << 10;
const SYSTEM_SIZE: u64 = 512 << 10;
const SYSTEM_DATA_BLOCKS: usize = 96;
const BOOT_BLOCKS: usize = 32;
const VENDOR_BLOCKS: usize = 64;

/// One update to cut crash states from.
pub struct Scenario {
    pub name: String,
    pub payload: Vec<u8>,
    pub manifest: Manifest,
    /// The device directory before the update: both slots, `misc.img`, the state directory.
    pub before: Files,
    /// What each partition of slot B must hold once the update is done.
    pub new: BTreeMap<String, Vec<u8>>,
    /// What slot A holds (the running build, v1) and slot B before the update (v0).
    pub old: BTreeMap<String, Vec<u8>>,
    pub previous: BTreeMap<String, Vec<u8>>,
    /// `system` and `vendor` are logical partitions in `super.img`.
    pub super_device: bool,
    /// What the recording run used; resumed runs use the same with one thread.
    pub options: ApplyOptions,
}

impl Scenario {
    /// The byte ranges of slot B's files that the device computes: each partition's verity
    /// hash tree and FEC, when the manifest leaves them to the device.
    pub fn verity_areas(&self) -> Vec<(crate::recorder::FileName, std::ops::Range<u64>)> {
        let mut areas = Vec::new();
        for p in &self.manifest.partitions {
            let Some(v) = &p.verity else { continue };
            assert!(
                !self.is_logical(&p.name),
                "device-computed verity of a logical partition is not mapped into super here"
            );
            let file: crate::recorder::FileName = Scenario::new_file(&p.name).into();
            for e in std::iter::once(v.hash_tree).chain(v.fec.as_ref().map(|f| f.fec)) {
                areas.push((
                    file.clone(),
                    e.byte_offset()..e.byte_offset() + e.byte_len(),
                ));
            }
        }
        areas
    }

    /// Slot A's file of `partition` (`system_a.img`).
    pub fn old_file(partition: &str) -> String {
        format!("{partition}{}.img", Slot::A.suffix())
    }

    /// Slot B's file of `partition`, the one the update writes.
    pub fn new_file(partition: &str) -> String {
        format!("{partition}{}.img", Slot::B.suffix())
    }

    pub fn is_logical(&self, partition: &str) -> bool {
        self.super_device && LOGICAL.contains(&partition)
    }

    /// Partition `name` of `slot` on the disk `files`: its file, or for a logical partition
    /// the extents the slot's own metadata slot in `super.img` maps (what the bootloader and
    /// first-stage init use when that slot boots). An error when that metadata is unreadable
    /// or does not list the partition.
    pub fn partition(&self, files: &Files, name: &str, slot: Slot) -> Result<Vec<u8>, String> {
        if !self.is_logical(name) {
            let file = format!("{name}{}.img", slot.suffix());
            return files
                .get(file.as_str())
                .cloned()
                .ok_or_else(|| format!("{file} is missing"));
        }
        let image = &files[SUPER];
        let dev = Bytes(image);
        let geometry = super_meta::read_geometry(&dev).map_err(|e| e.to_string())?;
        let metadata = super_meta::read_slot(&dev, &geometry, super_meta::metadata_slot(slot))
            .map_err(|e| format!("slot {slot}'s metadata: {e}"))?;
        let logical = format!("{name}{}", slot.suffix());
        let partition = metadata
            .partition(&logical)
            .ok_or_else(|| format!("slot {slot}'s metadata has no {logical}"))?;
        let map =
            ExtentMap::new(&metadata, partition, image.len() as u64).map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        for (offset, len) in map.physical_ranges() {
            data.extend_from_slice(&image[offset as usize..(offset + len) as usize]);
        }
        if data.len() as u64 != map.size() {
            return Err(format!("{logical} has ZERO extents"));
        }
        Ok(data)
    }

    /// The bytes of `super.img` only slot A's metadata lives in: both geometries and slot 0's
    /// primary and backup copies.
    pub fn source_metadata_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let Some(image) = self.before.get(SUPER) else {
            return Vec::new();
        };
        let geometry = super_meta::read_geometry(&Bytes(image)).unwrap();
        let len = geometry.metadata_max_size as usize;
        let geometries = 4096..12288;
        let copies = [geometry.primary_offset(0), geometry.backup_offset(0)]
            .map(|at| at.unwrap() as usize)
            .map(|at| at..at + len);
        std::iter::once(geometries).chain(copies).collect()
    }

    /// The same update with checkpoints (and so target syncs) only at the end of the
    /// operations: the engine's time-based interval stretched past the whole run, leaving
    /// every write of the writing phase unsynced until then.
    pub fn sparse_checkpoints(mut self) -> Self {
        self.name = format!("{}, one checkpoint after writing", self.name);
        self.options.checkpoint_interval = Duration::from_secs(24 * 3600);
        self
    }
}

/// A full payload (v1 on A, v2 into B).
pub fn full() -> Scenario {
    make("full", false, false)
}

/// A full payload with `dynamic_partition_metadata` on a device whose `system` and `vendor`
/// are logical partitions in super.
pub fn full_super() -> Scenario {
    make("full, super", false, true)
}

/// A delta payload v1 → v2; the state directory also holds the finished checkpoint of an
/// earlier update, which the engine must clear.
pub fn delta() -> Scenario {
    make("delta", true, false)
}

fn make(name: &'static str, delta: bool, super_device: bool) -> Scenario {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let builds = builds();
    let mut before = Files::new();
    for partition in builds[0].keys() {
        if super_device && LOGICAL.contains(&partition.as_str()) {
            continue;
        }
        before.insert(
            Scenario::old_file(partition).into(),
            builds[1][partition].clone(),
        );
        before.insert(
            Scenario::new_file(partition).into(),
            builds[0][partition].clone(),
        );
    }
    if super_device {
        before.insert(SUPER.into(), super_image(dir, &builds));
    }
    MiscBootControl::create_image(&dir.join(MISC), Slot::A).unwrap();
    before.insert(MISC.into(), std::fs::read(dir.join(MISC)).unwrap());
    if delta {
        before.insert(CHECKPOINT.into(), earlier_update_checkpoint().encode());
    }

    let specs: Vec<PartitionSpec> = PARTITIONS
        .iter()
        .map(|p| {
            let new = dir.join(format!("{p}-v2.img"));
            std::fs::write(&new, &builds[2][*p]).unwrap();
            let old = delta.then(|| {
                let old = dir.join(format!("{p}-v1.img"));
                std::fs::write(&old, &builds[1][*p]).unwrap();
                old
            });
            PartitionSpec {
                name: (*p).into(),
                new,
                old,
                append_verity: false,
            }
        })
        .collect();
    let signer = signer();
    let mut keys = TrustedKeys::none();
    keys.add_bytes(signer.public_key_pem().unwrap().as_bytes())
        .unwrap();
    let build_options = BuildOptions {
        signer: Some(signer),
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        dynamic: super_device
            .then(|| build::super_image::dynamic_metadata("main", GROUP_SIZE, &LOGICAL)),
        ..BuildOptions::default()
    };
    let path = dir.join("payload.bin");
    let report = build::build(&specs, &build_options, &path).unwrap();
    let scenario = Scenario {
        name: name.to_owned(),
        payload: std::fs::read(&path).unwrap(),
        manifest: report.manifest,
        before,
        new: builds[2].clone(),
        old: builds[1].clone(),
        previous: builds[0].clone(),
        super_device,
        options: ApplyOptions {
            keys,
            properties: report.properties,
            threads: 2,
            // Every operation commits: a checkpoint after each one.
            checkpoint_interval: Duration::ZERO,
        },
    };
    check_ops_write_each_block_once(&scenario);
    scenario
}

/// The key the scenarios' payloads are signed with.
pub fn signer() -> Signer {
    let key = std::fs::read_to_string(crate::avb_common::data_path("testkey_rsa2048.pem")).unwrap();
    Signer::from_pem(&key).unwrap()
}

/// `super.img` as an earlier update left it: both slots' metadata list `<name>_a` (v1) and
/// `<name>_b` (v0) in groups `main_a` and `main_b`.
fn super_image(dir: &Path, builds: &[BTreeMap<String, Vec<u8>>]) -> Vec<u8> {
    let mut layout = lp::NewSuper::new(SUPER_SIZE, 4096, 3);
    layout.alignment = 4096;
    layout = layout
        .group("main_a", GROUP_SIZE)
        .group("main_b", GROUP_SIZE);
    for suffix in ["_a", "_b"] {
        for p in LOGICAL {
            let size = builds[0][p].len() as u64;
            let group = format!("main{suffix}");
            layout = layout.partition(
                &format!("{p}{suffix}"),
                lp::ATTR_READONLY,
                size,
                Some(&group),
            );
        }
    }
    let names: Vec<(String, &[u8])> = LOGICAL
        .iter()
        .flat_map(|p| {
            [
                (format!("{p}_a"), builds[1][*p].as_slice()),
                (format!("{p}_b"), builds[0][*p].as_slice()),
            ]
        })
        .collect();
    let images: Vec<(&str, &[u8])> = names.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let path = dir.join(SUPER);
    build::super_image::write(&path, &layout, &images).unwrap();
    std::fs::read(path).unwrap()
}

/// A disk image in memory, read as `super`.
struct Bytes<'a>(&'a [u8]);

impl SourceRead for Bytes<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let at = offset as usize;
        let src = self
            .0
            .get(at..at + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

/// Builds v0, v1 and v2 of every partition, each evolved from the one before.
fn builds() -> Vec<BTreeMap<String, Vec<u8>>> {
    let mut rng = Rng(0x00c0_ffee_d00d);
    let key = crate::avb_common::ring_signer("testkey_rsa2048.pem");
    let mut data = [
        ("boot", mixed_image(&mut rng, BOOT_BLOCKS)),
        ("system", mixed_image(&mut rng, SYSTEM_DATA_BLOCKS)),
        ("vendor", mixed_image(&mut rng, VENDOR_BLOCKS)),
    ];
    let mut builds = Vec::new();
    for version in 0..3u64 {
        if version > 0 {
            for (_, d) in &mut data {
                evolve(d, &mut rng);
            }
        }
        let mut build = BTreeMap::new();
        let (system, descriptor) = add_hashtree_footer(
            &data[1].1,
            SYSTEM_SIZE,
            "system",
            b"power cut salt",
            FecRoots::new(2).unwrap(),
        )
        .unwrap();
        let mut vbmeta = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
            .rollback_index(version)
            .descriptor(Descriptor::Hashtree(descriptor))
            .build(Some(&key))
            .unwrap();
        vbmeta.resize(VBMETA_SIZE, 0);
        build.insert("vbmeta".to_owned(), vbmeta);
        build.insert("boot".to_owned(), data[0].1.clone());
        build.insert("system".to_owned(), system);
        build.insert("vendor".to_owned(), data[2].1.clone());
        builds.push(build);
    }
    builds
}

/// A new build of a partition: some blocks zeroed, edited a little, replaced, or copied from
/// elsewhere, so a delta has every kind of operation.
fn evolve(data: &mut [u8], rng: &mut Rng) {
    let blocks = data.len() / BLOCK;
    for b in 0..blocks {
        let block = b * BLOCK..(b + 1) * BLOCK;
        match rng.below(20) {
            0 => data[block].fill(0),
            1 | 2 => {
                for _ in 0..8 {
                    let at = block.start + rng.below(BLOCK as u64) as usize;
                    data[at] = data[at].wrapping_add(1);
                }
            }
            3 => rng.fill(&mut data[block]),
            4 => {
                let from = rng.below(blocks as u64) as usize * BLOCK;
                data.copy_within(from..from + BLOCK, block.start);
            }
            _ => {}
        }
    }
}

fn earlier_update_checkpoint() -> Checkpoint {
    Checkpoint {
        payload_id: [0x5a; 32],
        payload_size: Some(1 << 20),
        target_slot: "b".into(),
        phase: Phase::Done,
        next_operation: 12,
        next_data_offset: 1 << 19,
        payload_hash_state: vec![],
        file_hash_state: vec![],
        verified_partitions: 4,
        resume_failures: 0,
    }
}

/// The checkpoint claims are checked against the new image at each operation's destination,
/// which is sound only if no block is written by two operations: make sure of it.
fn check_ops_write_each_block_once(scenario: &Scenario) {
    for p in &scenario.manifest.partitions {
        let mut written = vec![false; (p.new_info.size / BLOCK as u64) as usize];
        for op in &p.operations {
            for e in &op.dst_extents {
                for b in e.start_block..e.start_block + e.num_blocks {
                    assert!(
                        !std::mem::replace(&mut written[b as usize], true),
                        "{}: {} block {b} written twice",
                        scenario.name,
                        p.name
                    );
                }
            }
        }
    }
}

/// Writes `files` under `dir`, creating the state directory.
pub fn write_files(dir: &Path, files: &Files) {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(&**name), content).unwrap();
    }
}

/// A scratch directory, on tmpfs when there is one: a restarted update syncs hundreds of
/// times, which on a disk takes longer than everything else a crash state's check does.
pub fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("abupdate-power-cut")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Every file under `dir`, by its path relative to it.
pub fn read_dir(dir: &Path) -> Files {
    let mut files = Files::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                files.insert(name.into(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}
