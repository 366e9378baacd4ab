//! `abupdate demo`: a whole update story on a simulated device in a temporary directory.
//!
//! It builds a device with dynamic partitions (logical `system`, `vendor`, `product` in
//! `super.img`, as `lpmake` lays them out for an A/B device; physical `boot` and `vbmeta` slots
//! A and B; `misc.img`), signs a full payload and a delta with a fresh key, applies the full
//! payload from A into B, reboots through a simulated bootloader, applies the delta from B into
//! A, reboots again, and checks every partition byte for byte.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use abupdate::avb::{Algorithm, Descriptor, HashtreeDescriptor, RingSigner, VbmetaBuilder};
use abupdate::boot_control::MiscBootControl;
use abupdate::build::avb_image::add_hashtree_footer;
use abupdate::build::sample::{self, SampleRng};
use abupdate::build::super_image;
use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::device::verity_image::verify_image;
use abupdate::device::Device;
use abupdate::payload::signature::Signer;
use abupdate::slot::bootloader;
use abupdate::slot::Slot;
use abupdate::updater::{HostOptions, Updater};
use abupdate::verity::VerityLayout;
use abupdate::verity::{FecRoots, HashAlgorithm};

use crate::apply_cmd::{self, ApplyArgs};

#[derive(Args)]
pub struct DemoArgs {
    /// Work here instead of a fresh temporary directory (kept afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Size of the system partition in MiB (vendor is half, product and boot a quarter).
    #[arg(long, default_value_t = 16)]
    size_mib: usize,
}

const PARTITIONS: [(&str, usize); 4] = [("system", 4), ("vendor", 2), ("product", 1), ("boot", 1)];
/// Every partition the payloads carry: the data partitions and the top-level vbmeta.
const ALL_PARTITIONS: [(&str, usize); 5] = [
    ("system", 4),
    ("vendor", 2),
    ("product", 1),
    ("boot", 1),
    ("vbmeta", 0),
];
/// The logical partitions, in `super`'s group `main`; the others are physical `_a`/`_b` pairs.
const LOGICAL: [&str; 3] = ["system", "vendor", "product"];
const GROUP: &str = "main";
const MIB: u64 = 1 << 20;
const VBMETA_SIZE: usize = 64 << 10;

/// Room for data, hash tree (under 1/100 of the data), FEC (2/253 of data + tree) and vbmeta.
fn system_partition_size(data: usize) -> u64 {
    ((data + data / 50 + (128 << 10)) as u64).div_ceil(4096) * 4096
}

pub fn run(args: DemoArgs) -> Result<()> {
    let tmp;
    let root = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let start = Instant::now();
    let dev = root.join("device");
    let images = root.join("images");
    std::fs::create_dir_all(&dev)?;
    std::fs::create_dir_all(&images)?;
    println!("== abupdate demo in {}", root.display());

    // Three builds of the same partitions: v1 runs on slot A, v2 and v3 are updates. system
    // carries dm-verity metadata behind an AVB footer, and vbmeta (signed, rollback index =
    // build number) includes its hashtree descriptor, as Android builds them.
    let avb_key = Signer::generate(2048)?;
    let avb_signer = RingSigner::from_pem(avb_key.private_key_pem()?.as_bytes())?;
    let blocks = |quarter: usize| args.size_mib.max(1) * 256 * quarter / 4;
    let mut rng = SampleRng::new(0x5eed);
    let mut system_descriptors = Vec::new();
    for (name, quarter) in PARTITIONS {
        let v1 = sample::image(&mut rng, blocks(quarter));
        let v2 = sample::evolve(&v1, &mut rng);
        let v3 = sample::evolve(&v2, &mut rng);
        for (version, data) in [(1, v1), (2, v2), (3, v3)] {
            let data = if name == "system" {
                let size = system_partition_size(data.len());
                let (image, desc) = add_hashtree_footer(
                    &data,
                    size,
                    name,
                    b"abupdate demo salt",
                    FecRoots::DEFAULT,
                )?;
                let vbmeta = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
                    .rollback_index(version)
                    .descriptor(Descriptor::Hashtree(desc.clone()))
                    .build(Some(&avb_signer))?;
                let mut vbmeta = vbmeta;
                vbmeta.resize(VBMETA_SIZE, 0);
                std::fs::write(images.join(format!("vbmeta-v{version}.img")), &vbmeta)?;
                system_descriptors.push(desc);
                image
            } else {
                data
            };
            std::fs::write(images.join(format!("{name}-v{version}.img")), &data)?;
        }
    }
    let mut logical = Vec::new();
    for (name, _) in ALL_PARTITIONS {
        let v1 = images.join(format!("{name}-v1.img"));
        if LOGICAL.contains(&name) {
            logical.push((format!("{name}_a"), std::fs::read(&v1)?));
            continue;
        }
        std::fs::copy(&v1, dev.join(format!("{name}_a.img")))?;
        let len = std::fs::metadata(&v1)?.len();
        std::fs::write(dev.join(format!("{name}_b.img")), vec![0u8; len as usize])?;
    }
    // As AOSP's build_super_image.py: one group per slot with room for every logical
    // partition, `_a` partitions holding the images, `_b` empty; super twice the groups plus
    // room for metadata and alignment (a non-Virtual A/B device needs both slots' copies).
    let sizes: Vec<(&str, u64)> = logical
        .iter()
        .zip(LOGICAL)
        .map(|((_, data), name)| (name, data.len() as u64))
        .collect();
    let group_size = (sizes.iter().map(|(_, s)| s + MIB).sum::<u64>()).div_ceil(MIB) * MIB;
    let layout = super_image::ab_layout(2 * group_size + 4 * MIB, GROUP, group_size, &sizes, false);
    let contents: Vec<(&str, &[u8])> = logical
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    super_image::write(&dev.join("super.img"), &layout, &contents)?;
    let dynamic = super_image::dynamic_metadata(GROUP, group_size, &LOGICAL);
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A)?;
    println!("device: slots A (v1, running) and B (empty), misc.img with the HAL's default record");
    println!(
        "  super.img ({} MiB): logical {} in group {GROUP}_a, empty {GROUP}_b; boot and vbmeta are physical",
        layout.device_size / MIB,
        LOGICAL.join(", ")
    );
    println!("  vbmeta signed with an RSA-2048 AVB key, rollback index 1; system has a verity hash tree and FEC");

    let signer = Signer::generate(2048)?;
    std::fs::write(root.join("ota-key.pem"), signer.private_key_pem()?)?;
    std::fs::write(root.join("ota-cert.pem"), signer.public_key_pem()?)?;
    println!("signing key: RSA-2048, public half in ota-cert.pem (the device trusts it)");

    let specs = |new: &str, old: Option<&str>| -> Vec<PartitionSpec> {
        ALL_PARTITIONS
            .iter()
            .map(|(name, _)| PartitionSpec {
                name: (*name).to_owned(),
                new: images.join(format!("{name}-{new}.img")),
                old: old.map(|o| images.join(format!("{name}-{o}.img"))),
                append_verity: false,
            })
            .collect()
    };
    let options = BuildOptions {
        signer: Some(signer),
        dynamic: Some(dynamic),
        ..BuildOptions::default()
    };

    let full = root.join("full.bin");
    let report = build::build(&specs("v2", None), &options, &full)?;
    std::fs::write(root.join("full.properties"), report.properties.to_text())?;
    describe("full payload (v1 -> v2)", &full, &report.manifest)?;
    step(
        &root,
        &dev,
        &full,
        "full.properties",
        Slot::B,
        "v2",
        "v1",
        &system_descriptors[1],
    )?;

    let delta = root.join("delta.bin");
    let report = build::build(&specs("v3", Some("v2")), &options, &delta)?;
    std::fs::write(root.join("delta.properties"), report.properties.to_text())?;
    describe("delta payload (v2 -> v3)", &delta, &report.manifest)?;
    step(
        &root,
        &dev,
        &delta,
        "delta.properties",
        Slot::A,
        "v3",
        "v2",
        &system_descriptors[2],
    )?;

    println!(
        "== demo finished in {:.1?}: both updates applied, verified and booted",
        start.elapsed()
    );
    Ok(())
}

/// Applies one payload, checks the result byte for byte, reboots and marks the slot good.
#[allow(clippy::too_many_arguments)]
fn step(
    root: &Path,
    dev: &Path,
    payload: &Path,
    props: &str,
    target: Slot,
    new: &str,
    old: &str,
    system: &HashtreeDescriptor,
) -> Result<()> {
    let args = ApplyArgs {
        device: Some(dev.to_owned()),
        current_slot: None,
        keys: vec![root.join("ota-cert.pem")],
        allow_unsigned: false,
        avb_key: None,
        headers: vec![],
        properties: Some(root.join(props)),
        state_dir: None,
        threads: None,
        payload: payload.to_str().context("non-UTF-8 path")?.to_owned(),
        ca: None,
        offset: 0,
        size: None,
        checkpoint_interval_ms: None,
        wait: false,
        service: Default::default(),
    };
    let t = Instant::now();
    let outcome = apply_cmd::apply(dev, &args, false)?;
    println!(
        "  applied into slot {target} in {:.1?}: payload signatures, FILE_HASH, every operation's and partition's hash, \
         AVB signature chain and rollback indexes verified",
        t.elapsed()
    );
    if outcome.switched_to != Some(target) {
        bail!("slot {target} was not set active");
    }
    // Logical partitions are read through the extents each slot's own metadata maps.
    let device = Device::host(dev, target.other());
    for (name, _) in ALL_PARTITIONS {
        let written = read_partition(&device, name, target)?;
        let expected = std::fs::read(root.join("images").join(format!("{name}-{new}.img")))?;
        let untouched = read_partition(&device, name, target.other())?;
        let before = std::fs::read(root.join("images").join(format!("{name}-{old}.img")))?;
        if written != expected || untouched != before {
            bail!("partition {name} does not hold what it should");
        }
    }
    println!(
        "  slot {target} holds {new} byte for byte; slot {} still holds {old}",
        target.other()
    );
    let (_, metadata) = device.super_metadata(target)?;
    let layout: Vec<String> = LOGICAL
        .iter()
        .filter_map(|n| metadata.partition(&format!("{n}{}", target.suffix())))
        .map(|p| {
            let extents = metadata.extents_of(p);
            let at = match extents.first().map(|e| e.target) {
                Some(abupdate::lp::ExtentTarget::Linear {
                    physical_sector, ..
                }) => format!("sector {physical_sector}"),
                _ => "-".to_owned(),
            };
            format!("{} at {at}", p.name)
        })
        .collect();
    println!(
        "  super: slot {target}'s metadata maps {} (slot {}'s metadata untouched)",
        layout.join(", "),
        target.other()
    );

    // Verity is checked on a copy: the hash tree reader works on files.
    let system_path = root.join(format!("system{}-check.img", target.suffix()));
    std::fs::write(&system_path, read_partition(&device, "system", target)?)?;
    let layout = VerityLayout {
        alg: HashAlgorithm::from_name(&system.hash_algorithm)?,
        salt: system.salt.clone(),
        data_size: system.image_size,
        tree_offset: system.tree_offset,
        fec_roots: Some(FecRoots::new(system.fec_num_roots)?),
    };
    verify_image(
        &std::fs::File::open(&system_path)?,
        &layout,
        Some(&system.root_digest),
    )?;
    println!(
        "  dm-verity: system's hash tree and FEC check out against vbmeta's root digest {}",
        abupdate::hex::Hex(system.root_digest.get(..8).unwrap_or(&system.root_digest))
    );
    let mut misc = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.join("misc.img"))?;
    let booted =
        bootloader::boot_misc(&mut misc)?.context("the bootloader found no bootable slot")?;
    if booted != target {
        bail!("the bootloader chose slot {booted}, not {target}");
    }
    let updater = Updater::open_host(
        dev,
        &HostOptions {
            current: Some(booted),
            ..Default::default()
        },
    )?;
    updater.mark_boot_successful()?;
    println!("  rebooted: the simulated bootloader chose slot {booted}; marked successful");
    Ok(())
}

/// The whole content of partition `name` in `slot` (physical, or logical in super).
fn read_partition(device: &Device, name: &str, slot: Slot) -> Result<Vec<u8>> {
    let part = device.read_only(name, slot)?;
    let mut data = vec![0u8; usize::try_from(part.size())?];
    part.read_at(&mut data, 0)?;
    Ok(data)
}

fn describe(what: &str, path: &Path, manifest: &abupdate::payload::Manifest) -> Result<()> {
    let size = std::fs::metadata(path)?.len();
    let mut kinds = std::collections::BTreeMap::new();
    for op in manifest.partitions.iter().flat_map(|p| &p.operations) {
        *kinds.entry(op.kind.name()).or_insert(0) += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let verity: Vec<&str> = manifest
        .partitions
        .iter()
        .filter(|p| p.verity.is_some())
        .map(|p| p.name.as_str())
        .collect();
    println!(
        "{what}: {size} bytes, signed, operations: {}",
        kinds.join(", ")
    );
    if !verity.is_empty() {
        println!(
            "  hash tree and FEC of {} left to the device to compute",
            verity.join(", ")
        );
    }
    Ok(())
}
