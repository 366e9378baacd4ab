//! Updates of a host device directory with dynamic partitions (`super.img` beside physical
//! `boot_a.img`/`boot_b.img` and `misc.img`): what must be refused before anything is written
//! (no room in super: 37; a Virtual A/B merge pending: 39), a `snapshot_enabled` payload on a
//! Virtual A/B device taking the plain path with misc's Virtual A/B records kept byte for byte,
//! and a cancelled update resuming onto the metadata it wrote the first time.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use abupdate::boot_control::MiscBootControl;
use abupdate::build::super_image;
use abupdate::build::{ops::Compressors, BuildOptions};
use abupdate::device::Device;
use abupdate::engine::{ApplyOptions, Observer, Progress, Quiet};
use abupdate::lp;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::ErrorCode;

use common::{mixed_image, Rng};

const MIB: u64 = 1 << 20;
const LOGICAL: [(&str, usize); 2] = [("system", 300), ("vendor", 120)];
/// Offset of misc's `misc_virtual_ab_message` (the system space, 32 KiB in).
const VAB_MESSAGE: usize = 32 << 10;
/// Offset of `bootloader_control` in misc (its vendor space).
const BOOTLOADER_CONTROL: usize = 2048;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dev: PathBuf,
}

impl Fixture {
    /// Slot A runs v1: `system_a`, `vendor_a` in super's group `main_a` (`_b` empty), `boot_a`.
    fn new(super_size: u64, virtual_ab: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let dev = root.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let mut rng = Rng(0x5_0e7);
        let mut v1 = Vec::new();
        for (name, blocks) in LOGICAL {
            let old = mixed_image(&mut rng, blocks);
            let new = mixed_image(&mut rng, blocks + 40);
            std::fs::write(root.join(format!("{name}.img")), &new).unwrap();
            v1.push((format!("{name}_a"), old));
        }
        let sizes: Vec<(&str, u64)> = LOGICAL
            .iter()
            .map(|(n, b)| (*n, *b as u64 * 4096))
            .collect();
        let layout = super_image::ab_layout(super_size, "main", 4 * MIB, &sizes, virtual_ab);
        let images: Vec<(&str, &[u8])> =
            v1.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        super_image::write(&dev.join("super.img"), &layout, &images).unwrap();
        common::put_image(&dev, "boot", 'a', &mixed_image(&mut rng, 16), 65536);
        common::put_image(&dev, "boot", 'b', &[], 65536);
        std::fs::write(root.join("boot.img"), mixed_image(&mut rng, 16)).unwrap();
        MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            dev,
        }
    }

    /// A full payload of v2 with group `main` of `group_size` bytes.
    fn payload(&self, group_size: u64, snapshot_enabled: bool) -> PathBuf {
        let mut dynamic =
            super_image::dynamic_metadata("main", group_size, &LOGICAL.map(|(n, _)| n));
        dynamic.snapshot_enabled = snapshot_enabled;
        let out = self.root.join("payload.bin");
        let parts: Vec<(&str, PathBuf, Option<PathBuf>)> = ["boot", "system", "vendor"]
            .iter()
            .map(|n| (*n, self.root.join(format!("{n}.img")), None))
            .collect();
        let options = BuildOptions {
            compressors: Compressors {
                xz: true,
                bzip2: false,
            },
            dynamic: Some(dynamic),
            ..BuildOptions::default()
        };
        common::build_payload_with(&out, &parts, options);
        out
    }

    fn updater(&self) -> Updater {
        Updater::open_host(&self.dev, &HostOptions::default()).unwrap()
    }

    fn apply(&self, payload: &Path, observer: &dyn Observer) -> abupdate::Result<()> {
        let options = ApplyOptions {
            threads: 2,
            ..common::unsigned_options()
        };
        self.updater()
            .apply(&mut Source::file(payload)?, &options, observer)
            .map(|_| ())
    }

    /// Every file of the device directory (not the state directory).
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dev)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn read(&self, name: &str, slot: Slot) -> Vec<u8> {
        let part = Device::host(&self.dev, Slot::A)
            .read_only(name, slot)
            .unwrap();
        let mut data = vec![0u8; part.size() as usize];
        part.read_at(&mut data, 0).unwrap();
        data
    }

    fn check_updated(&self) {
        for name in ["boot", "system", "vendor"] {
            let mut expected = std::fs::read(self.root.join(format!("{name}.img"))).unwrap();
            let got = self.read(name, Slot::B);
            expected.resize(got.len().max(expected.len()), 0);
            assert!(got == expected, "{name}_b is not the new image");
        }
    }
}

fn assert_nothing_written(fx: &Fixture, before: &[(String, Vec<u8>)]) {
    let after = fx.snapshot();
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        assert!(a == b, "{name} was written");
    }
    assert_eq!(before.len(), after.len());
    assert!(!fx.dev.join("state/checkpoint").exists());
}

#[test]
fn no_room_in_super_is_37_before_anything_is_written() {
    let fx = Fixture::new(16 * MIB, false);
    // Without Virtual A/B the target groups may take at most half of super.
    let payload = fx.payload(9 * MIB, false);
    let before = fx.snapshot();
    let err = fx.apply(&payload, &Quiet).unwrap_err();
    assert_eq!(err.code, ErrorCode::SuperNoSpace, "{err}");
    assert_nothing_written(&fx, &before);

    // The same check answers `verify` without writing either.
    let updater = fx.updater();
    let bytes = std::fs::read(&payload).unwrap();
    let header = abupdate::payload::PayloadHeader::parse(&bytes, None).unwrap();
    let metadata = abupdate::engine::metadata::Metadata::verify(
        bytes[..header.data_offset() as usize].to_vec(),
        Some(bytes.len() as u64),
        &Default::default(),
        &abupdate::payload::keys::TrustedKeys::accept_unsigned(),
    )
    .unwrap();
    let err = updater.check_applicable(&metadata).unwrap_err();
    assert_eq!(err.code, ErrorCode::SuperNoSpace, "{err}");
    // On a Virtual A/B device (`ro.virtual_ab.enabled`, as update_engine reads it; the
    // metadata here has no VIRTUAL_AB_DEVICE flag) the limit is all of super: it fits.
    std::fs::write(
        fx.dev.join("build.prop"),
        "ro.build.date.utc=0\nro.virtual_ab.enabled=true\n",
    )
    .unwrap();
    fx.apply(&payload, &Quiet).unwrap();
    fx.check_updated();
}

#[test]
fn pending_virtual_ab_merge_is_39_before_anything_is_written() {
    let fx = Fixture::new(16 * MIB, true);
    let payload = fx.payload(4 * MIB, true);
    std::fs::create_dir_all(fx.dev.join("metadata/ota")).unwrap();
    // SnapshotUpdateStatus { state: Merging }, then the legacy text form of Unverified.
    for state in [&[0x08u8, 0x03][..], b"unverified"] {
        std::fs::write(fx.dev.join("metadata/ota/state"), state).unwrap();
        let before = fx.snapshot();
        let err = fx.apply(&payload, &Quiet).unwrap_err();
        assert_eq!(err.code, ErrorCode::MergePending, "{err}");
        assert_nothing_written(&fx, &before);
    }
}

/// Sets misc's Virtual A/B message and bootloader_control's merge_status bits the way the
/// AOSP boot HAL (libboot_control) stores them, with the record's CRC recomputed.
fn set_virtual_ab_records(misc: &Path) {
    let mut bytes = std::fs::read(misc).unwrap();
    let message = &mut bytes[VAB_MESSAGE..VAB_MESSAGE + 64];
    message[0] = 2; // version
    message[1..5].copy_from_slice(&0x5674_0AB0u32.to_le_bytes());
    message[5] = 4; // merge_status CANCELLED
    message[6] = 0; // source_slot
    for (i, b) in message[7..].iter_mut().enumerate() {
        *b = i as u8 ^ 0x3c;
    }
    let record = &mut bytes[BOOTLOADER_CONTROL..BOOTLOADER_CONTROL + 32];
    // merge_status = 0b100: bit 0-1 in byte 9's bits 6-7, bit 2 in byte 10's bit 0.
    record[9] &= 0x3f;
    record[10] |= 0x01;
    let crc = crc32fast::hash(&record[..28]);
    record[28..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(misc, bytes).unwrap();
}

#[test]
fn snapshot_payload_on_virtual_ab_device_takes_the_plain_path_and_keeps_the_vab_records() {
    let fx = Fixture::new(16 * MIB, true);
    std::fs::create_dir_all(fx.dev.join("metadata/ota")).unwrap();
    std::fs::write(fx.dev.join("metadata/ota/state"), b"").unwrap();
    set_virtual_ab_records(&fx.dev.join("misc.img"));
    let misc_before = std::fs::read(fx.dev.join("misc.img")).unwrap();
    let dev = Device::host(&fx.dev, Slot::A);
    let (geometry, source_before) = dev.super_metadata(Slot::A).unwrap();
    let super_before = std::fs::read(fx.dev.join("super.img")).unwrap();
    let system_a = fx.read("system", Slot::A);

    // Groups over half of super fit: a Virtual A/B device's limit is all of it.
    let payload = fx.payload(6 * MIB, true);
    fx.apply(&payload, &Quiet).unwrap();
    fx.check_updated();

    let misc = std::fs::read(fx.dev.join("misc.img")).unwrap();
    assert_eq!(
        misc[VAB_MESSAGE..VAB_MESSAGE + 64],
        misc_before[VAB_MESSAGE..VAB_MESSAGE + 64],
        "misc_virtual_ab_message changed"
    );
    let merge_status = |m: &[u8]| {
        let r = &m[BOOTLOADER_CONTROL..];
        (r[9] >> 6) | ((r[10] & 1) << 2)
    };
    assert_eq!(merge_status(&misc), 0b100, "merge_status bits changed");
    assert_eq!(
        misc[..BOOTLOADER_CONTROL],
        misc_before[..BOOTLOADER_CONTROL]
    );
    assert_eq!(
        misc[BOOTLOADER_CONTROL + 32..],
        misc_before[BOOTLOADER_CONTROL + 32..]
    );

    // The target slot's metadata is the plain non-snapshot layout (header 10.0, as
    // SetMetadataHeaderV0 makes it); the source slot's metadata and extents are untouched.
    let (_, target) = dev.super_metadata(Slot::B).unwrap();
    assert_eq!(target.header_version(), (10, 0));
    assert_eq!(target.header_flags(), 0);
    assert!(target.partition("system_b").is_some());
    assert_eq!(dev.super_metadata(Slot::A).unwrap().1, source_before);
    assert_ne!(
        source_before.header_flags() & lp::HEADER_FLAG_VIRTUAL_AB_DEVICE,
        0
    );
    let super_after = std::fs::read(fx.dev.join("super.img")).unwrap();
    let slot0 = [geometry.primary_offset(0), geometry.backup_offset(0)];
    for at in slot0 {
        let at = at.unwrap() as usize;
        let len = geometry.metadata_max_size as usize;
        assert_eq!(super_after[at..at + len], super_before[at..at + len]);
    }
    assert_eq!(fx.read("system", Slot::A), system_a);
}

/// Cancels after a few progress reports.
struct CancelAfter(AtomicUsize);

impl Observer for CancelAfter {
    fn progress(&self, _: &Progress) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 3
    }
}

#[test]
fn a_cancelled_update_resumes_onto_the_metadata_it_wrote() {
    let fx = Fixture::new(24 * MIB, false);
    let payload = fx.payload(4 * MIB, false);
    let err = fx
        .apply(&payload, &CancelAfter(AtomicUsize::new(0)))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Cancelled, "{err}");
    let dev = Device::host(&fx.dev, Slot::A);
    let (geometry, written) = dev.super_metadata(Slot::B).unwrap();
    assert!(written.partition("system_b").is_some());
    let region = |bytes: &[u8]| bytes[..geometry.total_metadata_size().unwrap() as usize].to_vec();
    let before = region(&std::fs::read(fx.dev.join("super.img")).unwrap());

    let options = ApplyOptions {
        threads: 2,
        ..common::unsigned_options()
    };
    let outcome = fx
        .updater()
        .apply(&mut Source::file(&payload).unwrap(), &options, &Quiet)
        .unwrap();
    assert!(outcome.report.resumed_at.is_some(), "did not resume");
    fx.check_updated();
    let after = region(&std::fs::read(fx.dev.join("super.img")).unwrap());
    assert!(
        before == after,
        "the resumed update rewrote super's metadata"
    );
}

/// A partial payload carrying `system` only: the target slot gets `vendor_b` of its own,
/// holding slot A's vendor (update_engine keeps such partitions as the source has them; here
/// in the target's own extents, see `lp::carry_over`).
#[test]
fn a_partial_update_carries_the_other_logical_partitions_over() {
    let fx = Fixture::new(24 * MIB, false);
    let out = fx.root.join("partial.bin");
    let options = BuildOptions {
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        dynamic: Some(super_image::dynamic_metadata("main", 4 * MIB, &["system"])),
        partial_update: true,
        ..BuildOptions::default()
    };
    let report = common::build_payload_with(
        &out,
        &[("system", fx.root.join("system.img"), None)],
        options,
    );
    assert!(report.manifest.partial_update);
    let vendor_a = fx.read("vendor", Slot::A);
    fx.apply(&out, &Quiet).unwrap();

    assert!(fx.read("system", Slot::B) == std::fs::read(fx.root.join("system.img")).unwrap());
    assert!(
        fx.read("vendor", Slot::B) == vendor_a,
        "vendor_b is not slot A's vendor"
    );
    let dev = Device::host(&fx.dev, Slot::A);
    let (_, target) = dev.super_metadata(Slot::B).unwrap();
    let vendor_b = target.partition("vendor_b").unwrap();
    assert_eq!(target.group_of(vendor_b).unwrap().name, "main_b");
    let extents = |m: &lp::Metadata, name: &str| m.extents_of(m.partition(name).unwrap()).to_vec();
    assert_ne!(extents(&target, "vendor_b"), extents(&target, "vendor_a"));
    assert_eq!(fx.read("vendor", Slot::A), vendor_a);
}

/// Hostile or damaged metadata of the running slot (both copies) or geometry (both copies):
/// 34 before anything is written, whatever the rest of super holds.
#[test]
fn unreadable_source_metadata_is_34_before_anything_is_written() {
    let fx = Fixture::new(16 * MIB, false);
    let payload = fx.payload(4 * MIB, false);
    let dev = Device::host(&fx.dev, Slot::A);
    let (geometry, _) = dev.super_metadata(Slot::A).unwrap();
    let pristine = std::fs::read(fx.dev.join("super.img")).unwrap();
    let slot0 = [
        geometry.primary_offset(0).unwrap() as usize,
        geometry.backup_offset(0).unwrap() as usize,
    ];
    // (what is changed, byte offsets): header magic, a table byte (its checksum fails),
    // the partition count (header checksum fails), both geometries.
    let cases: [(&str, Vec<usize>); 4] = [
        ("magic", slot0.to_vec()),
        ("tables", slot0.iter().map(|a| a + 300).collect()),
        ("count", slot0.iter().map(|a| a + 84).collect()),
        ("geometry", vec![4096 + 40, 8192 + 40]),
    ];
    for (what, offsets) in cases {
        let mut image = pristine.clone();
        for at in offsets {
            image[at] ^= 0x41;
        }
        std::fs::write(fx.dev.join("super.img"), &image).unwrap();
        let before = fx.snapshot();
        let err = fx.apply(&payload, &Quiet).unwrap_err();
        assert_eq!(err.code, ErrorCode::SlotError, "{what}: {err}");
        assert_nothing_written(&fx, &before);
    }
}
