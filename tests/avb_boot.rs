//! The pre-switch check proves the slot boots: hash descriptors against the partitions'
//! contents, hashtree descriptors against the data and the stored tree, chain partition names,
//! every partition vbmeta names present in the target slot, partial updates carrying the rest
//! over, and a device with AVB whose running vbmeta is missing refusing to update.
//!
//! The device runs slot A: `vbmeta` (signed, rollback index 5) holds a hash descriptor for
//! `dtbo`, a hashtree descriptor for `system` and a chain descriptor for `boot`, whose own
//! vbmeta (in its footer, its own key) holds the hash descriptor for `boot`, as
//! `avbtool add_hash_footer` lays it out. Oracle: the avbtool-made `tests/data/avb` images.

mod avb_common;
mod common;

use std::path::{Path, PathBuf};

use abupdate::avb::{
    find_vbmeta, Algorithm, AvbFooter, ChainPartitionDescriptor, Descriptor, HashDescriptor,
    HashtreeDescriptor, RingSigner, VbmetaBuilder, VbmetaImage, VbmetaSigner,
};
use abupdate::boot_control::MiscBootControl;
use abupdate::build::avb_image::add_hashtree_footer;
use abupdate::build::BuildOptions;
use abupdate::engine::metadata::Metadata;
use abupdate::engine::Quiet;
use abupdate::slot::BootControl;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::verity::FecRoots;
use abupdate::ErrorCode;

const VBMETA_SIZE: u64 = 64 << 10;
const BOOT_SIZE: u64 = 256 << 10;
const DTBO_SIZE: u64 = 64 << 10;
const SYSTEM_SIZE: u64 = 512 << 10;
const SYSTEM_DATA: usize = 64 * 4096;
const PARTITIONS: [&str; 4] = ["vbmeta", "boot", "dtbo", "system"];

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

/// One build of every partition, and the descriptors the top-level vbmeta holds.
#[derive(Clone)]
struct Images {
    boot: Vec<u8>,
    dtbo: Vec<u8>,
    system: Vec<u8>,
    system_descriptor: HashtreeDescriptor,
    /// Made with the images, so changing `dtbo` afterwards is tampering.
    dtbo_descriptor: HashDescriptor,
    /// Extra descriptors for the top-level vbmeta (a partition the slot lacks...).
    extra: Vec<Descriptor>,
    /// The chain descriptor's partition name.
    chain_name: String,
}

impl Images {
    fn new(keys: &Keys, seed: u64) -> Self {
        let mut rng = common::Rng(seed);
        let mut boot = vec![0u8; 20_000];
        rng.fill(&mut boot);
        let mut dtbo = vec![0u8; 10_000];
        rng.fill(&mut dtbo);
        let mut system = vec![0u8; SYSTEM_DATA];
        rng.fill(&mut system);
        let (system, system_descriptor) = add_hashtree_footer(
            &system,
            SYSTEM_SIZE,
            "system",
            b"sys salt",
            FecRoots::DEFAULT,
        )
        .unwrap();
        Images {
            dtbo_descriptor: hash_descriptor("dtbo", &dtbo),
            boot: boot_image(keys, &boot, 3),
            dtbo: pad(dtbo, DTBO_SIZE),
            system,
            system_descriptor,
            extra: Vec::new(),
            chain_name: "boot".into(),
        }
    }

    /// The top-level vbmeta over these images, padded to its partition.
    fn vbmeta(&self, keys: &Keys) -> Vec<u8> {
        let chain = ChainPartitionDescriptor {
            rollback_index_location: 1,
            partition_name: self.chain_name.clone(),
            public_key: keys.boot.public_key().clone(),
            flags: 0,
        };
        let mut builder = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
            .rollback_index(5)
            .descriptor(Descriptor::Hash(self.dtbo_descriptor.clone()))
            .descriptor(Descriptor::Hashtree(self.system_descriptor.clone()))
            .descriptor(Descriptor::ChainPartition(chain));
        for d in &self.extra {
            builder = builder.descriptor(d.clone());
        }
        pad(builder.build(Some(&keys.top)).unwrap(), VBMETA_SIZE)
    }

    fn image(&self, keys: &Keys, name: &str) -> Vec<u8> {
        match name {
            "vbmeta" => self.vbmeta(keys),
            "boot" => self.boot.clone(),
            "dtbo" => self.dtbo.clone(),
            "system" => self.system.clone(),
            _ => unreachable!("{name}"),
        }
    }
}

fn hash_descriptor(name: &str, data: &[u8]) -> HashDescriptor {
    let salt = format!("{name} salt").into_bytes();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&salt);
    ctx.update(data);
    HashDescriptor {
        image_size: data.len() as u64,
        hash_algorithm: "sha256".into(),
        partition_name: name.into(),
        salt,
        digest: ctx.finish().as_ref().to_vec(),
        flags: 0,
    }
}

/// `avbtool add_hash_footer`'s layout: content, its vbmeta (a hash descriptor over the
/// content, signed with the boot key), zeros, the footer.
fn boot_image(keys: &Keys, content: &[u8], rollback: u64) -> Vec<u8> {
    let meta = VbmetaBuilder::new(Algorithm::Sha256Rsa4096)
        .rollback_index(rollback)
        .descriptor(Descriptor::Hash(hash_descriptor("boot", content)))
        .build(Some(&keys.boot))
        .unwrap();
    let offset = content.len().next_multiple_of(4096);
    let mut image = pad(content.to_vec(), offset as u64);
    image.extend_from_slice(&meta);
    image.resize(BOOT_SIZE as usize, 0);
    let footer = AvbFooter::new(content.len() as u64, offset as u64, meta.len() as u64).encode();
    image[BOOT_SIZE as usize - footer.len()..].copy_from_slice(&footer);
    image
}

fn pad(mut data: Vec<u8>, size: u64) -> Vec<u8> {
    data.resize(size as usize, 0);
    data
}

/// A device running slot A with `running`, slot B blank.
fn device(dir: &Path, keys: &Keys, running: &Images) -> PathBuf {
    let dev = dir.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for name in PARTITIONS {
        let image = running.image(keys, name);
        std::fs::write(dev.join(format!("{name}_a.img")), &image).unwrap();
        common::put_image(&dev, name, 'b', &[], image.len() as u64);
    }
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
    dev
}

/// A payload of `names` from `new` (as given, tampered or not); `partial` sets `partial_update`.
fn make_payload(dir: &Path, keys: &Keys, new: &Images, names: &[&str], partial: bool) -> PathBuf {
    let images = dir.join("new");
    std::fs::create_dir_all(&images).unwrap();
    let parts: Vec<_> = names
        .iter()
        .map(|&name| {
            let path = images.join(format!("{name}.img"));
            std::fs::write(&path, new.image(keys, name)).unwrap();
            (name, path, None)
        })
        .collect();
    let out = dir.join("payload.bin");
    let options = BuildOptions {
        partial_update: partial,
        ..Default::default()
    };
    common::build_payload_with(&out, &parts, options);
    out
}

fn apply(dev: &Path, payload: &Path) -> abupdate::Result<()> {
    let updater = Updater::open_host(
        dev,
        &HostOptions {
            current: Some(Slot::A),
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

fn active_slot(dev: &Path) -> Slot {
    let boot = MiscBootControl::open_device_dir(dev, Some(Slot::A)).unwrap();
    boot.active_slot().unwrap()
}

/// Applies a full payload of `new` to a fresh device and returns the error, asserting the
/// device stayed on slot A.
fn refused(keys: &Keys, new: &Images) -> abupdate::Error {
    let tmp = tempfile::tempdir().unwrap();
    let dev = device(tmp.path(), keys, &Images::new(keys, 1));
    let payload = make_payload(tmp.path(), keys, new, &PARTITIONS, false);
    let err = apply(&dev, &payload).unwrap_err();
    assert_eq!(active_slot(&dev), Slot::A, "{err}");
    err
}

#[test]
fn an_untampered_slot_switches() {
    let keys = keys();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device(tmp.path(), &keys, &Images::new(&keys, 1));
    let payload = make_payload(
        tmp.path(),
        &keys,
        &Images::new(&keys, 2),
        &PARTITIONS,
        false,
    );
    apply(&dev, &payload).unwrap();
    assert_eq!(active_slot(&dev), Slot::B);
}

#[test]
fn a_boot_image_altered_after_signing_is_43() {
    let keys = keys();
    let mut new = Images::new(&keys, 2);
    new.boot[1234] ^= 0x10; // inside the content the boot hash descriptor covers
    let err = refused(&keys, &new);
    assert_eq!(err.code, ErrorCode::AvbContents, "{err}");
    assert!(err.message.contains("boot"), "{err}");

    let mut new = Images::new(&keys, 2);
    new.dtbo[9_999] ^= 1; // the last byte the top-level dtbo descriptor covers
    let err = refused(&keys, &new);
    assert_eq!(err.code, ErrorCode::AvbContents, "{err}");
    assert!(err.message.contains("dtbo"), "{err}");
}

#[test]
fn a_corrupt_hash_tree_or_data_block_is_43() {
    let keys = keys();
    let new = Images::new(&keys, 2);
    let tree = new.system_descriptor.tree_offset as usize;
    for (what, at) in [
        ("data block", 17 * 4096 + 5),
        ("tree byte", tree + 40),
        ("tree padding the root digest covers", tree + 3000),
    ] {
        let mut bad = new.clone();
        bad.system[at] ^= 0x80;
        let err = refused(&keys, &bad);
        assert_eq!(err.code, ErrorCode::AvbContents, "{what}: {err}");
        assert!(err.message.contains("system"), "{what}: {err}");
    }
}

#[test]
fn chain_partition_names_outside_a_z_0_9_are_refused() {
    let keys = keys();
    for name in ["../boot", "Boot"] {
        let tmp = tempfile::tempdir().unwrap();
        let dev = device(tmp.path(), &keys, &Images::new(&keys, 1));
        let mut new = Images::new(&keys, 2);
        new.chain_name = name.into();
        // What the name would reach if it were joined into a path: a valid chained image.
        std::fs::write(dev.join(format!("{name}_b.img")), &new.boot).unwrap();
        let payload = make_payload(tmp.path(), &keys, &new, &PARTITIONS, false);
        let err = apply(&dev, &payload).unwrap_err();
        assert_eq!(err.code, ErrorCode::AvbSignature, "{name}: {err}");
        assert!(err.message.contains("[a-z0-9_]"), "{name}: {err}");
        assert_eq!(active_slot(&dev), Slot::A, "{name}");
    }
}

#[test]
fn a_partition_vbmeta_names_missing_or_short_in_the_target_slot_is_43() {
    let keys = keys();
    let mut new = Images::new(&keys, 2);
    new.extra = vec![Descriptor::Hash(hash_descriptor("vendor_boot", b"vendor"))];
    let err = refused(&keys, &new);
    assert_eq!(err.code, ErrorCode::AvbContents, "{err}");
    assert!(err.message.contains("vendor_boot"), "{err}");

    let mut new = Images::new(&keys, 2);
    let mut long = hash_descriptor("dtbo", &new.dtbo);
    long.image_size = DTBO_SIZE + 4096;
    new.extra = vec![Descriptor::Hash(long)];
    let err = refused(&keys, &new);
    assert_eq!(err.code, ErrorCode::AvbContents, "{err}");
    assert!(err.message.contains("only"), "{err}");
}

#[test]
fn a_partial_update_carries_the_other_partitions_over_and_switches() {
    let keys = keys();
    let tmp = tempfile::tempdir().unwrap();
    let running = Images::new(&keys, 1);
    let dev = device(tmp.path(), &keys, &running);
    // Slot B holds leftovers of an older build, not zeros: the copy must replace them.
    for name in ["vbmeta", "dtbo", "system"] {
        let old = Images::new(&keys, 7).image(&keys, name);
        std::fs::write(dev.join(format!("{name}_b.img")), old).unwrap();
    }
    let mut new = running.clone();
    new.boot = boot_image(&keys, b"a new kernel", 4);
    let payload = make_payload(tmp.path(), &keys, &new, &["boot"], true);
    apply(&dev, &payload).unwrap();
    assert_eq!(active_slot(&dev), Slot::B);
    let read =
        |name: &str, slot: char| std::fs::read(dev.join(format!("{name}_{slot}.img"))).unwrap();
    for name in ["vbmeta", "dtbo", "system"] {
        assert!(
            read(name, 'b') == read(name, 'a'),
            "{name} not carried over"
        );
    }
    assert!(read("boot", 'b') == new.boot);

    // The carried-over slot gets the full check: a boot altered after signing is refused.
    let tmp = tempfile::tempdir().unwrap();
    let dev = device(tmp.path(), &keys, &running);
    let mut bad = new.clone();
    bad.boot[3] ^= 1;
    let payload = make_payload(tmp.path(), &keys, &bad, &["boot"], true);
    let err = apply(&dev, &payload).unwrap_err();
    assert_eq!(err.code, ErrorCode::AvbContents, "{err}");
    assert_eq!(active_slot(&dev), Slot::A);

    // Slots of different sizes cannot be carried over (update_engine refuses them too).
    let tmp = tempfile::tempdir().unwrap();
    let dev = device(tmp.path(), &keys, &running);
    common::put_image(&dev, "dtbo", 'b', &[], DTBO_SIZE + 4096);
    let payload = make_payload(tmp.path(), &keys, &new, &["boot"], true);
    let err = apply(&dev, &payload).unwrap_err();
    assert_eq!(err.code, ErrorCode::PartitionMissing, "{err}");
    assert!(err.message.contains("dtbo"), "{err}");
    assert_eq!(active_slot(&dev), Slot::A);
}

#[test]
fn a_device_with_avb_whose_running_vbmeta_is_missing_refuses_before_writing() {
    let keys = keys();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device(tmp.path(), &keys, &Images::new(&keys, 1));
    std::fs::remove_file(dev.join("vbmeta_a.img")).unwrap();
    let payload = make_payload(
        tmp.path(),
        &keys,
        &Images::new(&keys, 2),
        &PARTITIONS,
        false,
    );
    let err = apply(&dev, &payload).unwrap_err();
    assert_eq!(err.code, ErrorCode::AvbSignature, "{err}");
    assert!(err.message.contains("running slot's vbmeta"), "{err}");
    assert_eq!(active_slot(&dev), Slot::A);
    let boot_b = std::fs::read(dev.join("boot_b.img")).unwrap();
    assert!(boot_b.iter().all(|&b| b == 0), "boot_b was written");

    // verifyPayloadApplicable says the same.
    let bytes = std::fs::read(&payload).unwrap();
    let size = Some(bytes.len() as u64);
    let needed = Metadata::needed(&bytes, size).unwrap() as usize;
    let metadata = Metadata::verify(
        bytes[..needed].to_vec(),
        size,
        &Default::default(),
        &abupdate::payload::keys::TrustedKeys::accept_unsigned(),
    )
    .unwrap();
    let updater = Updater::open_host(
        &dev,
        &HostOptions {
            current: Some(Slot::A),
            ..Default::default()
        },
    )
    .unwrap();
    let err = updater.check_applicable(&metadata).unwrap_err();
    assert_eq!(err.code, ErrorCode::AvbSignature, "{err}");
}

/// The checks agree with avbtool: its `boot.img` (hash footer) and `system` hashtree
/// descriptor (in `vbmeta.img`, over data regenerated as the README describes) verify, and a
/// flipped byte does not.
#[test]
fn avbtool_images_verify_and_tampered_ones_do_not() {
    let boot = avb_common::data("boot.img");
    let meta = find_vbmeta("boot", &boot).unwrap();
    let Some(Descriptor::Hash(desc)) = meta.descriptors().first() else {
        panic!("boot.img holds no hash descriptor");
    };
    let read = |image: &[u8]| {
        let image = image.to_vec();
        move |offset: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&image[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    };
    desc.check_contents(boot.len() as u64, read(&boot)).unwrap();
    let mut bad = boot.clone();
    bad[100] ^= 1;
    let e = desc
        .check_contents(bad.len() as u64, read(&bad))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AvbContents);

    let top = VbmetaImage::parse(&avb_common::data("vbmeta.img")).unwrap();
    let system = top
        .descriptors()
        .iter()
        .find_map(|d| match d {
            Descriptor::Hashtree(h) if h.partition_name == "system" => Some(h.clone()),
            _ => None,
        })
        .unwrap();
    let line = b"abupdate system image test data\n";
    let mut data: Vec<u8> = line.iter().copied().cycle().take(16384).collect();
    // The tree itself was not kept: ours, placed where the descriptor says. The root digest
    // is avbtool's.
    let (ours, _) =
        add_hashtree_footer(&data, 131072, "system", &system.salt, FecRoots::DEFAULT).unwrap();
    let tree = system.tree_offset as usize..(system.tree_offset + system.tree_size) as usize;
    data.resize(tree.end, 0);
    data[tree.clone()].copy_from_slice(&ours[tree]);
    system
        .check_contents(data.len() as u64, read(&data))
        .unwrap();
    data[7] ^= 1;
    let e = system
        .check_contents(data.len() as u64, read(&data))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AvbContents);
}

/// Cancels once the engine reports the slot written: the carry-over and the contents check
/// honour it (38) and the slot is not switched; a second apply finishes the job.
#[test]
fn the_carry_over_and_contents_check_can_be_cancelled() {
    use abupdate::engine::{Observer, Progress, Stage};
    use std::sync::atomic::{AtomicBool, Ordering};

    struct CancelWhenWritten(AtomicBool);
    impl Observer for CancelWhenWritten {
        fn progress(&self, progress: &Progress) {
            if progress.stage == Stage::Done {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        fn is_cancelled(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    let keys = keys();
    let running = Images::new(&keys, 1);
    for partial in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dev = device(tmp.path(), &keys, &running);
        let (new, names): (Images, &[&str]) = if partial {
            let mut new = running.clone();
            new.boot = boot_image(&keys, b"a new kernel", 4);
            (new, &["boot"])
        } else {
            (Images::new(&keys, 2), &PARTITIONS)
        };
        let payload = make_payload(tmp.path(), &keys, &new, names, partial);
        let updater = Updater::open_host(
            &dev,
            &HostOptions {
                current: Some(Slot::A),
                ..Default::default()
            },
        )
        .unwrap();
        let observer = CancelWhenWritten(AtomicBool::new(false));
        let err = updater
            .apply(
                &mut Source::file(&payload).unwrap(),
                &common::unsigned_options(),
                &observer,
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Cancelled, "partial {partial}: {err}");
        assert_eq!(active_slot(&dev), Slot::A, "partial {partial}");
        apply(&dev, &payload).unwrap();
        assert_eq!(active_slot(&dev), Slot::B, "partial {partial}");
    }
}
