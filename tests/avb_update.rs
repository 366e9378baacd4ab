//! End to end on a device directory: AVB rollback protection and signature checks decide
//! whether a fully written slot is switched to. The device runs slot A with a signed vbmeta
//! (rollback index 5, location 0) chaining to `boot` (index 3, location 1, its own key).

mod avb_common;
mod common;

use std::path::Path;

use abupdate::avb::{
    Algorithm, AvbFooter, ChainPartitionDescriptor, Descriptor, RingSigner, VbmetaBuilder,
    VbmetaSigner,
};
use abupdate::boot_control::MiscBootControl;
use abupdate::engine::Quiet;
use abupdate::slot::Slot;
use abupdate::slot::{bootloader, BootControl};
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::ErrorCode;

const VBMETA_SIZE: u64 = 64 << 10;
const BOOT_SIZE: u64 = 256 << 10;

struct Keys {
    top: RingSigner,
    boot: RingSigner,
}

fn keys() -> Keys {
    Keys {
        top: avb_common::ring_signer("testkey_rsa2048.pem"),
        boot: avb_common::ring_signer("testkey_rsa4096.pem"),
    }
}

/// The top-level vbmeta: signed by `signer`, chaining to `boot` under the boot key.
fn vbmeta(keys: &Keys, signer: &RingSigner, rollback: u64) -> Vec<u8> {
    let algorithm = if signer.public_key().num_bits() == 2048 {
        Algorithm::Sha256Rsa2048
    } else {
        Algorithm::Sha256Rsa4096
    };
    let chain = ChainPartitionDescriptor {
        rollback_index_location: 1,
        partition_name: "boot".into(),
        public_key: keys.boot.public_key().clone(),
        flags: 0,
    };
    VbmetaBuilder::new(algorithm)
        .rollback_index(rollback)
        .descriptor(Descriptor::ChainPartition(chain))
        .build(Some(signer))
        .unwrap()
}

/// A boot partition: content, its vbmeta right after, and the AVB footer at the very end.
fn boot(keys: &Keys, rollback: u64, fill: u8) -> Vec<u8> {
    let content = vec![fill; 16 << 10];
    let meta = VbmetaBuilder::new(Algorithm::Sha256Rsa4096)
        .rollback_index(rollback)
        .build(Some(&keys.boot))
        .unwrap();
    let mut image = content.clone();
    image.extend_from_slice(&meta);
    image.resize(BOOT_SIZE as usize, 0);
    let footer = AvbFooter::new(
        content.len() as u64,
        content.len() as u64,
        meta.len() as u64,
    )
    .encode();
    image[BOOT_SIZE as usize - footer.len()..].copy_from_slice(&footer);
    image
}

fn pad(mut data: Vec<u8>, size: u64) -> Vec<u8> {
    data.resize(size as usize, 0);
    data
}

/// A device running slot A, and a payload carrying `new_vbmeta` and `new_boot`.
fn setup(dir: &Path, keys: &Keys, new_vbmeta: Vec<u8>, new_boot: Vec<u8>) -> std::path::PathBuf {
    let dev = dir.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(
        dev.join("vbmeta_a.img"),
        pad(vbmeta(keys, &keys.top, 5), VBMETA_SIZE),
    )
    .unwrap();
    std::fs::write(dev.join("boot_a.img"), boot(keys, 3, 0xa1)).unwrap();
    common::put_image(&dev, "vbmeta", 'b', &[], VBMETA_SIZE);
    common::put_image(&dev, "boot", 'b', &[], BOOT_SIZE);
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();

    std::fs::write(dir.join("vbmeta.img"), pad(new_vbmeta, VBMETA_SIZE)).unwrap();
    std::fs::write(dir.join("boot.img"), new_boot).unwrap();
    build(dir)
}

fn apply(dir: &Path, payload: &Path, current: Slot) -> abupdate::Result<()> {
    let updater = Updater::open_host(
        &dir.join("dev"),
        &HostOptions {
            current: Some(current),
            ..Default::default()
        },
    )?;
    updater
        .apply(
            &mut Source::file(payload)?,
            &common::unsigned_options(),
            &Quiet,
        )
        .map(|_| ())
}

fn active_slot(dir: &Path) -> Slot {
    let boot = MiscBootControl::open_device_dir(&dir.join("dev"), Some(Slot::A)).unwrap();
    boot.active_slot().unwrap()
}

/// Builds the payload of `dir/vbmeta.img` and `dir/boot.img`.
fn build(dir: &Path) -> std::path::PathBuf {
    let payload = dir.join("payload.bin");
    let parts = ["vbmeta", "boot"].map(|n| (n, dir.join(format!("{n}.img")), None));
    common::build_payload(&payload, &parts);
    payload
}

#[test]
fn slots_avb_would_refuse_are_refused_and_the_active_slot_stays() {
    let keys = keys();
    // (what, vbmeta signer, vbmeta index, boot index, expected code, message part)
    let cases = [
        (
            "lower top-level index",
            &keys.top,
            4,
            3,
            ErrorCode::RollbackIndex,
            "vbmeta rollback index 4",
        ),
        (
            "lower chained index",
            &keys.top,
            6,
            2,
            ErrorCode::RollbackIndex,
            "boot",
        ),
        (
            "signed by another key",
            &keys.boot,
            6,
            3,
            ErrorCode::AvbSignature,
            "vbmeta",
        ),
    ];
    for (what, signer, top, chained, code, part) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let payload = setup(
            tmp.path(),
            &keys,
            vbmeta(&keys, signer, top),
            boot(&keys, chained, 0xb1),
        );
        let err = apply(tmp.path(), &payload, Slot::A).unwrap_err();
        assert_eq!(err.code, code, "{what}: {err}");
        assert!(err.message.contains(part), "{what}: {err}");
        assert_eq!(active_slot(tmp.path()), Slot::A, "{what}");
    }
}

#[test]
fn equal_index_switches_and_success_raises_the_stored_floor() {
    let keys = keys();
    let tmp = tempfile::tempdir().unwrap();
    let payload = setup(
        tmp.path(),
        &keys,
        vbmeta(&keys, &keys.top, 5),
        boot(&keys, 4, 0xb1),
    );
    apply(tmp.path(), &payload, Slot::A).unwrap();
    assert_eq!(active_slot(tmp.path()), Slot::B);

    // Reboot into B and mark it good: the store now holds B's indexes (5 and 4).
    let dev = tmp.path().join("dev");
    let mut misc = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.join("misc.img"))
        .unwrap();
    assert_eq!(bootloader::boot_misc(&mut misc).unwrap(), Some(Slot::B));
    let updater = Updater::open_host(
        &dev,
        &HostOptions {
            current: Some(Slot::B),
            ..Default::default()
        },
    )
    .unwrap();
    updater.mark_boot_successful().unwrap();
    let stored = abupdate::rollback_store::RollbackStore::new(dev.join("state/rollback_index"))
        .load()
        .unwrap();
    assert_eq!(stored.state, abupdate::rollback_store::StoreState::Valid);
    assert_eq!(
        (stored.floors.get(0), stored.floors.get(1)),
        (Some(5), Some(4))
    );
    let floors = updater.rollback_floors().unwrap();
    assert_eq!((floors.get(0), floors.get(1)), (Some(5), Some(4)));

    // An update from B that brings boot back to index 3 is refused.
    std::fs::write(tmp.path().join("boot.img"), boot(&keys, 3, 0xc1)).unwrap();
    build(tmp.path());
    let err = apply(tmp.path(), &payload, Slot::B).unwrap_err();
    assert_eq!(err.code, ErrorCode::RollbackIndex, "{err}");
    assert_eq!(active_slot(tmp.path()), Slot::B);
}

/// update_verifier, not abupdate, marks the new slot successful on a device; the floors follow
/// when the updater next opens (the daemon's start), and not before the slot is marked.
#[test]
fn floors_follow_a_slot_someone_else_marked_successful() {
    let keys = keys();
    let tmp = tempfile::tempdir().unwrap();
    let payload = setup(
        tmp.path(),
        &keys,
        vbmeta(&keys, &keys.top, 5),
        boot(&keys, 4, 0xb1),
    );
    apply(tmp.path(), &payload, Slot::A).unwrap();
    let dev = tmp.path().join("dev");
    let stored = || {
        let store = abupdate::rollback_store::RollbackStore::new(dev.join("state/rollback_index"));
        let floors = store.load().unwrap().floors;
        (floors.get(0), floors.get(1))
    };
    let open_b = || {
        let options = HostOptions {
            current: Some(Slot::B),
            ..Default::default()
        };
        Updater::open_host(&dev, &options).unwrap()
    };
    let before = stored();
    assert!(
        !open_b().advance_floors_if_marked().unwrap(),
        "B is not marked yet"
    );
    assert_eq!(stored(), before);
    assert_ne!(before, (Some(5), Some(4)));

    // B boots and is marked successful behind abupdate's back, as update_verifier does.
    let mut boot = MiscBootControl::open_device_dir(&dev, Some(Slot::B)).unwrap();
    boot.mark_boot_successful().unwrap();
    assert!(open_b().advance_floors_if_marked().unwrap());
    assert_eq!(stored(), (Some(5), Some(4)));
}
