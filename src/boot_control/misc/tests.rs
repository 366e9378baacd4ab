use std::fs;
use std::path::PathBuf;

use super::*;
use crate::slot::bootloader;
use crate::slot::control::tests::{reseal, vector};
use crate::ErrorCode;

/// What the backend asked of the device.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    Write { offset: u64, len: usize },
    Sync,
}

/// A real file, with a log of the writes and syncs that reached it.
struct Recorder {
    file: File,
    ops: Vec<Op>,
}

impl BlockIo for Recorder {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        BlockIo::read_exact_at(&self.file, buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.ops.push(Op::Write {
            offset,
            len: buf.len(),
        });
        BlockIo::write_all_at(&mut self.file, buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.ops.push(Op::Sync);
        BlockIo::sync(&mut self.file)
    }
}

/// A 64 KiB misc image full of a byte pattern (standing in for the bootloader message, the
/// Virtual A/B message and vendor data), with `record` at 2048.
fn patterned_misc(dir: &Path, record: [u8; RECORD_LEN]) -> (PathBuf, Vec<u8>) {
    let mut image: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    image[2048..2080].copy_from_slice(&record);
    let path = dir.join(HOST_MISC_IMAGE);
    fs::write(&path, &image).unwrap();
    (path, image)
}

fn recorder(path: &Path) -> Recorder {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    Recorder {
        file,
        ops: Vec::new(),
    }
}

fn record_on_disk(path: &Path) -> [u8; RECORD_LEN] {
    fs::read(path).unwrap()[2048..2080].try_into().unwrap()
}

#[test]
fn each_update_is_one_record_write_then_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (path, image) = patterned_misc(dir.path(), vector());
    let mut misc = MiscBootControl::new(recorder(&path), None).unwrap();
    assert_eq!(misc.current(), Slot::A);
    assert_eq!(misc.io().ops, []);

    type Update = dyn Fn(&mut MiscBootControl<Recorder>) -> Result<()>;
    let updates: [&Update; 3] = [
        &|m| m.set_unbootable(Slot::B),
        &|m| m.set_active(Slot::B),
        &|m| m.mark_boot_successful(),
    ];
    for update in updates {
        update(&mut misc).unwrap();
        let ops = std::mem::take(&mut misc.io.ops);
        assert_eq!(
            ops,
            [
                Op::Write {
                    offset: 2048,
                    len: 32
                },
                Op::Sync
            ]
        );
    }
    // Queries write nothing.
    misc.slots().unwrap();
    misc.is_bootable(Slot::B).unwrap();
    assert_eq!(misc.io().ops, []);

    let after = fs::read(&path).unwrap();
    assert_eq!(after.len(), image.len());
    assert_eq!(after[..2048], image[..2048]);
    assert_eq!(after[2080..], image[2080..]);
    let record = BootloaderControl::parse(&record_on_disk(&path)).unwrap();
    assert_eq!(record.slot(Slot::B).priority(), 15);
}

#[test]
fn reserved_bits_survive_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vector();
    bytes[10] = 0xfe;
    bytes[11] = 0x11;
    bytes[13] = 0xfe; // slot a byte 1: reserved bits set, verity clear
    bytes[20..28].copy_from_slice(b"vendor!\0");
    reseal(&mut bytes);
    let (path, _) = patterned_misc(dir.path(), bytes);
    let mut misc = MiscBootControl::open(&path, None).unwrap();
    misc.set_active(Slot::B).unwrap();
    let after = record_on_disk(&path);
    assert_eq!(after[10..12], bytes[10..12]);
    assert_eq!(after[13], bytes[13]);
    assert_eq!(after[20..28], bytes[20..28]);
    assert_eq!(after[14..16], [0x6f, 0]); // b: priority 15, tries 6
}

#[test]
fn corrupt_record_is_reinitialised_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = BootloaderControl::new_default(Slot::B).encode();
    bytes[14] ^= 0x01;
    let (path, image) = patterned_misc(dir.path(), bytes);

    // The bad record names no trustworthy slot: the caller must say which one runs.
    let err = MiscBootControl::open(&path, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::SlotError);
    assert_eq!(fs::read(&path).unwrap(), image);

    let misc = MiscBootControl::new(recorder(&path), Some(Slot::B)).unwrap();
    assert_eq!(
        misc.io().ops,
        [
            Op::Write {
                offset: 2048,
                len: 32
            },
            Op::Sync
        ]
    );
    assert_eq!(
        record_on_disk(&path),
        BootloaderControl::new_default(Slot::B).encode()
    );
    let after = fs::read(&path).unwrap();
    assert_eq!(
        (&after[..2048], &after[2080..]),
        (&image[..2048], &image[2080..])
    );
}

#[test]
fn torn_write_reads_as_default() {
    let dir = tempfile::tempdir().unwrap();
    let old = vector();
    let mut new = BootloaderControl::parse(&old).unwrap();
    new.set_active(Slot::B, Slot::A).unwrap();
    let new = new.encode();
    for cut in 1..RECORD_LEN {
        let mut torn = old;
        torn[..cut].copy_from_slice(&new[..cut]);
        if torn == old {
            continue; // the cut fell before the first changed byte: nothing was torn
        }
        let (path, _) = patterned_misc(dir.path(), torn);
        let misc = MiscBootControl::new(recorder(&path), Some(Slot::A)).unwrap();
        assert_eq!(misc.io().ops.len(), 2, "cut at {cut}: reinitialised");
        assert_eq!(
            misc.record().unwrap(),
            BootloaderControl::new_default(Slot::A),
            "cut {cut}"
        );
    }
}

#[test]
fn corruption_after_open_reads_as_default_and_is_repaired_by_the_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = patterned_misc(dir.path(), vector());
    let mut misc = MiscBootControl::open(&path, None).unwrap();
    misc.set_active(Slot::B).unwrap();
    assert!(!misc.is_successful(Slot::B).unwrap());
    let mut bytes = record_on_disk(&path);
    bytes[0] = b'X';
    FileExt::write_all_at(&misc.io, &bytes, 2048).unwrap();

    // Reads see the record the HAL would write, but write nothing.
    assert_eq!(misc.active_slot().unwrap(), Slot::A);
    assert_eq!(record_on_disk(&path), bytes);
    misc.set_unbootable(Slot::B).unwrap();
    let mut expected = BootloaderControl::new_default(Slot::A);
    expected.set_unbootable(Slot::B).unwrap();
    assert_eq!(record_on_disk(&path), expected.encode());
}

#[test]
fn foreign_record_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vector();
    bytes[4..8].copy_from_slice(b"\0AB0");
    reseal(&mut bytes);
    let (path, image) = patterned_misc(dir.path(), bytes);
    let err = MiscBootControl::open(&path, Some(Slot::A)).unwrap_err();
    assert_eq!(err.code, ErrorCode::SlotError);
    assert_eq!(fs::read(&path).unwrap(), image);
}

#[test]
fn device_dir_image() {
    let dir = tempfile::tempdir().unwrap();
    let missing = MiscBootControl::open_device_dir(dir.path(), None).unwrap_err();
    assert_eq!(missing.code, ErrorCode::PartitionMissing);

    let path = dir.path().join(HOST_MISC_IMAGE);
    MiscBootControl::create_image(&path, Slot::A).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), HOST_IMAGE_LEN);
    assert!(MiscBootControl::create_image(&path, Slot::B).is_err());
    assert_eq!(record_on_disk(&path), vector());

    let misc = MiscBootControl::open_device_dir(dir.path(), None).unwrap();
    assert_eq!(misc.slot_count().unwrap(), 2);
    assert_eq!(misc.suffix(Slot::B).unwrap(), "_b");
    let slots = misc.slots().unwrap();
    let a = SlotStatus {
        slot: Slot::A,
        current: true,
        active: true,
        bootable: true,
        successful: true,
        priority: Some(7),
        tries_remaining: Some(7),
    };
    let b = SlotStatus {
        slot: Slot::B,
        current: false,
        active: false,
        successful: false,
        ..a
    };
    assert_eq!(slots, [a, b]);
    // An explicit running slot wins over slot_suffix.
    let misc = MiscBootControl::open_device_dir(dir.path(), Some(Slot::B)).unwrap();
    assert_eq!(misc.current_slot().unwrap(), Slot::B);
}

/// The engine's flow on a host device, then reboots through the bootloader simulation.
fn install_b(dir: &Path) -> PathBuf {
    let path = dir.join(HOST_MISC_IMAGE);
    let mut misc = MiscBootControl::create_image(&path, Slot::A).unwrap();
    let target = misc.current_slot().unwrap().other();
    misc.set_unbootable(target).unwrap();
    assert!(!misc.is_bootable(target).unwrap());
    // ... partitions of B written here ...
    misc.set_active(target).unwrap();
    assert_eq!(misc.active_slot().unwrap(), Slot::B);
    path
}

fn reboot(path: &Path) -> Option<Slot> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    bootloader::boot_misc(&mut file).unwrap()
}

#[test]
fn update_that_never_boots_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = install_b(dir.path());
    for _ in 0..6 {
        assert_eq!(reboot(&path), Some(Slot::B));
        // The new system dies before mark_boot_successful.
        let misc = MiscBootControl::open(&path, None).unwrap();
        assert_eq!(misc.current_slot().unwrap(), Slot::B);
    }
    assert_eq!(reboot(&path), Some(Slot::A));
    let misc = MiscBootControl::open(&path, None).unwrap();
    assert_eq!(misc.current_slot().unwrap(), Slot::A);
    assert!(!misc.is_bootable(Slot::B).unwrap());
    assert!(misc.is_successful(Slot::A).unwrap());
}

#[test]
fn update_marked_successful_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = install_b(dir.path());
    assert_eq!(reboot(&path), Some(Slot::B));
    let mut misc = MiscBootControl::open(&path, None).unwrap();
    misc.mark_boot_successful().unwrap();
    assert!(misc.is_successful(Slot::B).unwrap());
    for _ in 0..10 {
        assert_eq!(reboot(&path), Some(Slot::B));
    }
}
