//! Images for the VM test (tests/vm/), and the one thing the VM cannot do with busybox: read
//! dm-verity parameters out of a vbmeta.
//!
//! - `vm_images build DIR`: slot A of `system` and `vendor` (data, hash tree, FEC and an AVB
//!   footer each) as logical partitions in `super.img`, and a signed `vbmeta` holding both
//!   hashtree descriptors (rollback index 1);
//!   `misc.img` recording slot A; `build.prop`; a full payload to build 2 of the same
//!   partitions (with their dynamic partition group), signed with the OTA test key, with
//!   `payload_properties.txt`; the trusted
//!   `ota-cert.pem`; `vab/`, the Virtual A/B device of tests/vm/vab.sh (the same slot A in a
//!   `super` with the VIRTUAL_AB_DEVICE flag, and a signed delta payload with compressed
//!   snapshots); and `expected.env`, shell assignments the VM checks against (partition
//!   sizes, the new data's SHA-256, and payload offsets that end an operation's blob).
//! - `vm_images verity-args VBMETA NAME`: the root digest and `veritysetup` options of
//!   partition NAME from the hashtree descriptor in the vbmeta image VBMETA (a partition),
//!   after checking its signature against the AVB test key.
//!
//! - `vm_images dm-map NAME LINK_DIR TARGET...`: maps NAME through device-mapper (the
//!   `abupdate::dm` adapter) from targets `linear:SECTORS:DEVICE:OFFSET` and `zero:SECTORS`,
//!   links it as LINK_DIR/NAME and prints the node; `dm-table NAME` prints the live table;
//!   `dm-ours` lists the mappings the adapter made; `dm-remove LINK_DIR NAME` unmaps one;
//!   `dm-cleanup LINK_DIR NAME...` removes those of the names still mapped (as after a kill).
//! - `vm_images map-slot BY_NAME SLOT LINK_DIR`: what first-stage init does at boot: maps the
//!   logical partitions of slot SLOT read-only from that slot's metadata in BY_NAME/super, and
//!   prints each name and node; with `rw` last, writable (as a merge writes the base
//!   partitions).
//!
//! - `vm_images map-partitions BY_NAME SLOT LINK_DIR NAME...`: maps the logical partitions
//!   NAME (full names, e.g. `system_b-cow`) of slot SLOT's metadata read-only, links each as
//!   LINK_DIR/NAME and prints its name and node; `vab-state OTA_DIR MISC` prints libsnapshot's state (`/metadata/ota`) and the
//!   Virtual A/B message in MISC.
//!
//! - `vm_images lp-super PATH`: an 8 MiB super holding, in this order, `product_a` (3 MiB),
//!   an old `product_b` (1 MiB) and `extra_a` (2 MiB), then 1 MiB free: an update drops the
//!   old `product_b`, and no free stretch holds a new one of 2 MiB whole, so it gets two
//!   extents (its old place and the end of super).
//!
//! - `vm_images cow-image MOUNT METADATA_DIR NAME SIZE`: a Virtual A/B COW image as the
//!   updater makes one on `/data` (`abupdate::device::cow_image`: fallocated, zeroed, synced,
//!   its FIEMAP extents recorded in METADATA_DIR/lp_metadata) in MOUNT/gsi/ota on the file
//!   system mounted at MOUNT; then SIZE sample bytes written through the file and synced.
//!   Prints their SHA-256, then the `dm-map` targets of the image's extents as the
//!   `lp_metadata` file records them (what first-stage init maps), over `/dev/<device>`.
//!
//! - `vm_images vab-postinstall DIR SYSTEM_V1 SYSTEM_V2`: the Virtual A/B device of
//!   tests/vm/vab_postinstall.sh in DIR: SYSTEM_V1 (an ext4 image) as slot A's `system` in a
//!   `super` with the VIRTUAL_AB_DEVICE flag, `misc` on slot A, `build.prop`, and an unsigned
//!   delta payload to SYSTEM_V2 with compressed snapshots (COW v3, lz4) whose `system` runs
//!   `postinst` (ext4) after the update, with its properties.
//! - `vm_images build-vabc DIR SYSTEM_V1 SYSTEM_V2`: the Virtual A/B device of
//!   tests/vm/vab_collapse.sh in DIR, as `vab/` but with `system` alone, build 1 and build 2
//!   the file system images SYSTEM_V1 and SYSTEM_V2 (with a hash tree, FEC and AVB footer
//!   each); `expected.env` there says its size.
//! - `vm_images snapshot-devices BY_NAME SLOT LINK_DIR NAME...`: what first-stage init maps
//!   for a userspace snapshot NAME (`system_b`) besides its dm-user device: `NAME-base` (its
//!   base extents, writable: the merge writes them) and `NAME-cow` (its `-cow` partition,
//!   read-only), from SLOT's metadata, linked in LINK_DIR; prints each name and node.
//!   `snapshot-device NAME LINK_DIR DEVICE` maps NAME read-only over the whole of DEVICE (the
//!   VM's stand-in for snapuserd's dm-user device is an nbd device serving base plus COW).
//! - `vm_images snapuserd SOCKET SCRATCH LINK_DIR NAME:NBD...`: a stand-in snapuserd
//!   (tests/common/snapuserd.rs: AOSP's control protocol, the merge by AOSP's `applycow --mode
//!   merge` from `/bin`) for the snapshots NAME, each served base (`LINK_DIR/NAME-base`) plus
//!   COW (`LINK_DIR/NAME-cow`) by `abupdate cow serve` on NBD. On `delete,NAME` it refuses
//!   while NAME's live table still names NBD, else stops that server (`cow serve-stop`) and
//!   waits until nothing holds `NAME-base` and `NAME-cow`, as snapuserd's handler ends and lets
//!   go of them. Exits after `detach`.
//!
//! Keys are the checked-in test keys of tests/data/avb: test-only, they protect nothing.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use abupdate::avb::{
    Algorithm, AvbPublicKey, Descriptor, HashtreeDescriptor, RingSigner, VbmetaBuilder, VbmetaImage,
};
use abupdate::boot_control::{vab_message, MiscBootControl};
use abupdate::build::avb_image::add_hashtree_footer;
use abupdate::build::sample::{self, SampleRng};
use abupdate::build::super_image;
use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::device::file_pin::{self, FileSystem};
use abupdate::device::{Device, Layout};
use abupdate::dm::{self, DeviceMapper, DmConfig, DmMapper, Table};
use abupdate::engine::hashing::sha256;
use abupdate::payload::signature::Signer;
use abupdate::payload::Vabc;
use abupdate::slot::{BootControl, Slot};
use abupdate::updater::snapshot_state::OtaDir;
use abupdate::verity::FecRoots;
use abupdate::{Error, Result};

/// The stand-in daemon of the host tests, run in the VM.
#[allow(dead_code)]
#[path = "../tests/common/snapuserd.rs"]
mod snapuserd;

/// What tests/common/snapuserd.rs finds through `super::shared`: AOSP's tools are in the VM's
/// `/bin`.
mod shared {
    pub fn aosp_tool(name: &str) -> std::path::PathBuf {
        std::path::Path::new("/bin").join(name)
    }
}

/// Data partitions and their data size in 4 KiB blocks.
const PARTITIONS: [(&str, usize); 2] = [("system", 1024), ("vendor", 512)];
const VBMETA_SIZE: usize = 64 << 10;
const GROUP: &str = "group";
const MIB: u64 = 1 << 20;
const BUILD_DATE: i64 = 1_700_000_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["build", dir] => build_all(Path::new(dir)),
        ["verity-args", vbmeta, name] => verity_args(Path::new(vbmeta), name),
        ["dm-map", name, links, ref targets @ ..] => dm_map(name, links, targets),
        ["dm-table", name] => dm_table(name),
        ["dm-ours"] => dm_ours(),
        ["dm-remove", links, name] => dm_remove(links, name),
        ["dm-cleanup", links, ref names @ ..] => dm_cleanup(links, names),
        ["map-slot", by_name, slot, links] => map_slot(Path::new(by_name), slot, links, false),
        ["map-slot", by_name, slot, links, "rw"] => map_slot(Path::new(by_name), slot, links, true),
        ["map-partitions", by_name, slot, links, ref names @ ..] => {
            map_partitions(Path::new(by_name), slot, links, names)
        }
        ["vab-state", ota, misc] => vab_state(Path::new(ota), Path::new(misc)),
        ["boot-fallback", misc] => boot_fallback(Path::new(misc)),
        ["lp-super", path] => lp_super(Path::new(path)),
        ["cow-image", mount, meta, name, size] => cow_image(mount, meta, name, size),
        ["vab-postinstall", dir, v1, v2] => {
            vab_postinstall(Path::new(dir), Path::new(v1), Path::new(v2))
        }
        ["build-vabc", dir, v1, v2] => build_vabc(Path::new(dir), Path::new(v1), Path::new(v2)),
        ["snapshot-devices", by_name, slot, links, ref names @ ..] => {
            snapshot_devices(Path::new(by_name), slot, links, names)
        }
        ["snapshot-device", name, links, device] => snapshot_device(name, links, device),
        ["snapuserd", socket, scratch, links, ref served @ ..] => {
            snapuserd_standin(socket, scratch, links, served)
        }
        _ => {
            eprintln!(
                "usage: vm_images build DIR | verity-args VBMETA NAME | dm-map NAME LINK_DIR \
                 TARGET... | dm-table NAME | dm-ours | dm-remove LINK_DIR NAME | \
                 dm-cleanup LINK_DIR NAME... | map-slot BY_NAME SLOT LINK_DIR [rw] | \
                 map-partitions BY_NAME SLOT LINK_DIR NAME... | vab-state OTA_DIR MISC | \
                 boot-fallback MISC | lp-super PATH | cow-image MOUNT METADATA_DIR NAME SIZE | \
                 vab-postinstall DIR SYSTEM_V1 SYSTEM_V2 | \
                 build-vabc DIR SYSTEM_V1 SYSTEM_V2 | \
                 snapshot-devices BY_NAME SLOT LINK_DIR NAME... | \
                 snapshot-device NAME LINK_DIR DEVICE | \
                 snapuserd SOCKET SCRATCH LINK_DIR NAME:NBD..."
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm_images: {e}");
            ExitCode::from(u8::try_from(e.code.as_i32()).unwrap_or(1))
        }
    }
}

fn build_all(dir: &Path) -> Result<()> {
    let images = dir.join("images");
    create_dir(&images)?;
    let avb = RingSigner::from_pem(TEST_KEY)?;
    let mut rng = SampleRng::new(0x7e57);
    let mut env = String::new();
    let mut descriptors = [Vec::new(), Vec::new()];
    for (name, blocks) in PARTITIONS {
        let v1 = sample::image(&mut rng, blocks);
        let mut v2 = v1.clone();
        // A run moved down by 3 blocks: a Virtual A/B COW of it holds overlapping copies
        // that merge in order (tests/vm/vab.sh).
        v2.copy_within(103 * 4096..303 * 4096, 100 * 4096);
        for block in (0..blocks).step_by(7) {
            let at = block * 4096 + (rng.next_u64() % 4000) as usize;
            v2[at] ^= 0x5a;
        }
        // Room for the tree (< 1/100), FEC (2/253 of data and tree) and the footer vbmeta.
        let size = ((v1.len() + v1.len() / 50 + (64 << 10)) as u64).div_ceil(4096) * 4096;
        for (version, data) in [(1, &v1), (2, &v2)] {
            let (image, desc) =
                add_hashtree_footer(data, size, name, name.as_bytes(), FecRoots::DEFAULT)?;
            write(&images.join(format!("{name}-v{version}.img")), &image)?;
            descriptors[version - 1].push(desc);
        }
        let upper = name.to_uppercase();
        let _ = writeln!(env, "{upper}_SIZE={size}");
        let _ = writeln!(env, "{upper}_DATA_BLOCKS={blocks}");
        let _ = writeln!(
            env,
            "{upper}_DATA_SHA={}",
            abupdate::hex::encode(&sha256(&v2))
        );
    }
    for (version, descs) in [(1u64, &descriptors[0]), (2, &descriptors[1])] {
        let mut builder = VbmetaBuilder::new(Algorithm::Sha256Rsa2048).rollback_index(version);
        for desc in descs {
            builder = builder.descriptor(Descriptor::Hashtree(desc.clone()));
        }
        let mut vbmeta = builder.build(Some(&avb))?;
        vbmeta.resize(VBMETA_SIZE, 0);
        write(&images.join(format!("vbmeta-v{version}.img")), &vbmeta)?;
    }
    let _ = writeln!(env, "VBMETA_SIZE={VBMETA_SIZE}");

    // Slot A runs build 1: system and vendor are logical partitions in super (lpmake's A/B
    // layout: group_a holds them, group_b their empty `_b` twins); vbmeta is physical, and
    // vbmeta_b is made empty in the VM.
    let mut logical = Vec::new();
    for (name, _) in PARTITIONS {
        let v1 = images.join(format!("{name}-v1.img"));
        logical.push((name, std::fs::read(&v1).map_err(|e| Error::io(name, e))?));
    }
    let sizes: Vec<(&str, u64)> = logical.iter().map(|(n, d)| (*n, d.len() as u64)).collect();
    let group_size = sizes
        .iter()
        .map(|(_, s)| s + MIB)
        .sum::<u64>()
        .div_ceil(MIB)
        * MIB;
    let layout = super_image::ab_layout(2 * group_size + 4 * MIB, GROUP, group_size, &sizes, false);
    let contents: Vec<(String, &[u8])> = logical
        .iter()
        .map(|(n, d)| (format!("{n}_a"), d.as_slice()))
        .collect();
    let contents: Vec<(&str, &[u8])> = contents.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    super_image::write(&dir.join("super.img"), &layout, &contents)?;
    let _ = writeln!(env, "SUPER_SIZE={}", layout.device_size);
    std::fs::copy(images.join("vbmeta-v1.img"), dir.join("vbmeta_a.img"))
        .map_err(|e| Error::io("vbmeta", e))?;
    let names: Vec<&str> = PARTITIONS
        .iter()
        .map(|(n, _)| *n)
        .chain(["vbmeta"])
        .collect();
    MiscBootControl::create_image(&dir.join("misc.img"), Slot::A)?;
    write(
        &dir.join("build.prop"),
        format!("ro.build.date.utc={BUILD_DATE}\n").as_bytes(),
    )?;

    let signer = Signer::from_pem(&String::from_utf8_lossy(TEST_KEY))?;
    write(
        &dir.join("ota-cert.pem"),
        signer.public_key_pem()?.as_bytes(),
    )?;
    let specs: Vec<PartitionSpec> = names
        .iter()
        .map(|name| PartitionSpec {
            name: (*name).to_owned(),
            new: images.join(format!("{name}-v2.img")),
            old: None,
            append_verity: false,
        })
        .collect();
    let options = BuildOptions {
        signer: Some(signer),
        // XZ alone: bzip2 rarely wins and doubles the time of a debug build.
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        max_timestamp: Some(BUILD_DATE + 100),
        dynamic: Some(super_image::dynamic_metadata(
            GROUP,
            group_size,
            &PARTITIONS.map(|(n, _)| n),
        )),
        ..BuildOptions::default()
    };
    let payload = dir.join("payload.bin");
    let report = build::build(&specs, &options, &payload)?;
    write(
        &dir.join("payload_properties.txt"),
        report.properties.to_text().as_bytes(),
    )?;
    // Where the blobs of operations 1 and 3 end: the VM feeds the payload in these pieces.
    let header_end = std::fs::read(&payload)
        .map_err(|e| Error::io("payload", e))
        .and_then(|bytes| abupdate::engine::metadata::Metadata::needed(&bytes, None))?;
    let ends: Vec<u64> = report
        .manifest
        .partitions
        .iter()
        .flat_map(|p| &p.operations)
        .map(|op| header_end + op.data_offset + op.data_length)
        .collect();
    if ends.len() < 4 {
        abupdate::bail!(InstallFailed, "only {} operations", ends.len());
    }
    let _ = writeln!(env, "SPLIT1={}", ends[0]);
    let _ = writeln!(env, "SPLIT2={}", ends[2]);
    let _ = writeln!(env, "OPERATIONS={}", ends.len());
    write(&dir.join("expected.env"), env.as_bytes())?;
    build_vab(
        &dir.join("vab"),
        &images,
        &logical,
        group_size,
        layout.device_size,
    )?;
    std::fs::remove_dir_all(&images).map_err(|e| Error::io("images", e))?;
    Ok(())
}

/// The Virtual A/B device of tests/vm/vab.sh in `out`: the same slot A (build 1) in a `super`
/// with the VIRTUAL_AB_DEVICE flag (lpmake `--virtual-ab`), `vbmeta_a`, `misc` on slot A and
/// a `build.prop`; a signed delta payload to build 2 with compressed snapshots (COW v3, lz4,
/// 64 KiB), its properties; build 2's whole partitions, to compare with.
fn build_vab(
    out: &Path,
    images: &Path,
    logical: &[(&str, Vec<u8>)],
    group_size: u64,
    super_size: u64,
) -> Result<()> {
    create_dir(out)?;
    let sizes: Vec<(&str, u64)> = logical.iter().map(|(n, d)| (*n, d.len() as u64)).collect();
    let layout = super_image::ab_layout(super_size, GROUP, group_size, &sizes, true);
    let contents: Vec<(String, &[u8])> = logical
        .iter()
        .map(|(n, d)| (format!("{n}_a"), d.as_slice()))
        .collect();
    let contents: Vec<(&str, &[u8])> = contents.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    super_image::write(&out.join("super.img"), &layout, &contents)?;
    std::fs::copy(images.join("vbmeta-v1.img"), out.join("vbmeta_a.img"))
        .map_err(|e| Error::io("vbmeta", e))?;
    MiscBootControl::create_image(&out.join("misc.img"), Slot::A)?;
    write(
        &out.join("build.prop"),
        format!("ro.build.date.utc={BUILD_DATE}\n").as_bytes(),
    )?;
    let mut specs = Vec::new();
    let names: Vec<&str> = logical.iter().map(|(n, _)| *n).collect();
    for &name in &names {
        let new = images.join(format!("{name}-v2.img"));
        std::fs::copy(&new, out.join(format!("{name}-v2.img")))
            .map_err(|e| Error::io(new.display(), e))?;
        specs.push(PartitionSpec {
            name: name.to_owned(),
            new,
            old: Some(images.join(format!("{name}-v1.img"))),
            append_verity: false,
        });
    }
    specs.push(PartitionSpec {
        name: "vbmeta".to_owned(),
        new: images.join("vbmeta-v2.img"),
        old: None,
        append_verity: false,
    });
    let mut dynamic = super_image::dynamic_metadata(GROUP, group_size, &names);
    cuttlefish_snapshots(&mut dynamic);
    let options = BuildOptions {
        signer: Some(Signer::from_pem(&String::from_utf8_lossy(TEST_KEY))?),
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        max_timestamp: Some(BUILD_DATE + 100),
        dynamic: Some(dynamic),
        ..BuildOptions::default()
    };
    let report = build::build(&specs, &options, &out.join("payload.bin"))?;
    write(
        &out.join("payload_properties.txt"),
        report.properties.to_text().as_bytes(),
    )
}

/// The device of tests/vm/vab_postinstall.sh (see the module's header).
fn vab_postinstall(out: &Path, v1: &Path, v2: &Path) -> Result<()> {
    create_dir(out)?;
    let old = std::fs::read(v1).map_err(|e| Error::io(v1.display(), e))?;
    let size = old.len() as u64;
    let group_size = (size + MIB).div_ceil(MIB) * MIB;
    // Room for both slots' groups and the COW, which is carved from what is free.
    let layout = super_image::ab_layout(
        2 * group_size + 8 * MIB,
        GROUP,
        group_size,
        &[("system", size)],
        true,
    );
    super_image::write(
        &out.join("super.img"),
        &layout,
        &[("system_a", old.as_slice())],
    )?;
    MiscBootControl::create_image(&out.join("misc.img"), Slot::A)?;
    write(
        &out.join("build.prop"),
        format!("ro.build.date.utc={BUILD_DATE}\n").as_bytes(),
    )?;
    let mut dynamic = super_image::dynamic_metadata(GROUP, group_size, &["system"]);
    cuttlefish_snapshots(&mut dynamic);
    let options = BuildOptions {
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        max_timestamp: Some(BUILD_DATE + 100),
        dynamic: Some(dynamic),
        postinstall: vec![build::parse_postinstall("system=postinst:ext4")?],
        ..BuildOptions::default()
    };
    let specs = [PartitionSpec {
        name: "system".to_owned(),
        new: v2.to_owned(),
        old: Some(v1.to_owned()),
        append_verity: false,
    }];
    let report = build::build(&specs, &options, &out.join("payload.bin"))?;
    write(
        &out.join("payload_properties.txt"),
        report.properties.to_text().as_bytes(),
    )
}

/// Prints `ROOT_DIGEST OPTIONS...` for `veritysetup open DEV NAME DEV ROOT OPTIONS...`, the
/// data, hash tree and FEC all on the one partition as AVB lays them out.
/// Compressed snapshots as Cuttlefish on Android 15 takes them: COW v3, lz4, 64 KiB.
fn cuttlefish_snapshots(dynamic: &mut abupdate::payload::manifest::DynamicPartitions) {
    dynamic.snapshot_enabled = true;
    dynamic.vabc = Vabc::cuttlefish_android15();
}

fn verity_args(vbmeta: &Path, name: &str) -> Result<()> {
    let bytes = std::fs::read(vbmeta).map_err(|e| Error::io(vbmeta.display(), e))?;
    let image = VbmetaImage::parse(&bytes)?;
    image.verify_with_key(&AvbPublicKey::from_pem(TEST_KEY)?)?;
    let desc: &HashtreeDescriptor = image
        .descriptors()
        .iter()
        .find_map(|d| match d {
            Descriptor::Hashtree(h) if h.partition_name == name => Some(h),
            _ => None,
        })
        .ok_or_else(|| abupdate::err!(PartitionMissing, "no hashtree descriptor for {name}"))?;
    let block = u64::from(desc.data_block_size);
    println!(
        "{} --no-superblock --format={} --hash={} --data-block-size={} --hash-block-size={} \
         --data-blocks={} --hash-offset={} --salt={} --fec-offset={} --fec-roots={}",
        abupdate::hex::encode(&desc.root_digest),
        desc.dm_verity_version,
        desc.hash_algorithm,
        desc.data_block_size,
        desc.hash_block_size,
        desc.image_size / block,
        desc.tree_offset,
        abupdate::hex::encode(&desc.salt),
        desc.fec_offset,
        desc.fec_num_roots,
    );
    Ok(())
}

fn cow_image(mount: &str, meta: &str, name: &str, size: &str) -> Result<()> {
    use abupdate::device::cow_image::ImageDir;
    let size: u64 = size
        .parse()
        .map_err(|_| abupdate::err!(DeviceError, "bad size {size:?}"))?;
    let mount = Path::new(mount);
    let images = ImageDir::new(Path::new(meta), &mount.join("gsi/ota"), mount);
    images.create(name, size)?;
    let path = images.image_path(name);
    let image = std::fs::File::open(&path).map_err(|e| Error::io(path.display(), e))?;
    let pinned = match FileSystem::of(&image).map_err(|e| Error::io("fstatfs", e))? {
        FileSystem::F2fs => match file_pin::is_pinned(&image) {
            Ok(true) => "yes",
            Ok(false) => "no",
            Err(e) => return Err(Error::io("reading the pin", e)),
        },
        FileSystem::Other => "not f2fs",
    };
    let mut data = vec![0u8; size as usize];
    let mut rng = SampleRng::new(0xc0_1417);
    for chunk in data.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    let file = images.open(name, size)?;
    file.write_at(&data, 0)
        .and_then(|()| file.sync())
        .map_err(|e| Error::io("writing the COW image", e))?;
    println!("{}", abupdate::hex::encode(&sha256(&data)));
    // The extents as the metadata file records them, not as create() returned them.
    let Some(metadata) = images.metadata()? else {
        abupdate::bail!(DeviceError, "no lp_metadata in {meta}");
    };
    let Some(extents) = abupdate::lp::images::image_extents(&metadata, name) else {
        abupdate::bail!(DeviceError, "{name} is not in {meta}/lp_metadata");
    };
    let device = &metadata.block_devices()[0].partition_name;
    let targets: Vec<String> = extents
        .iter()
        .map(|e| {
            format!(
                "linear:{}:/dev/{device}:{}",
                e.length / 512,
                e.physical / 512
            )
        })
        .collect();
    println!("{}", targets.join(" "));
    println!("pinned: {pinned}");
    Ok(())
}

fn device_mapper(links: &str) -> Result<DeviceMapper> {
    DeviceMapper::open(DmConfig::linux(links))
}

fn dm_map(name: &str, links: &str, targets: &[&str]) -> Result<()> {
    let mut table = Table::new();
    for target in targets {
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| abupdate::err!(DeviceError, "bad number {s:?} in {target:?}"))
        };
        match target.split(':').collect::<Vec<_>>()[..] {
            ["linear", sectors, device, offset] => table.linear(
                number(sectors)?,
                dm::block_dev(Path::new(device))?,
                number(offset)?,
            )?,
            ["zero", sectors] => table.zero(number(sectors)?)?,
            _ => abupdate::bail!(DeviceError, "bad target {target:?}"),
        };
    }
    let mapped = device_mapper(links)?.create(name, &table, false)?;
    println!("{}", mapped.node.display());
    Ok(())
}

fn dm_table(name: &str) -> Result<()> {
    for line in device_mapper("/nonexistent")?.table(name)? {
        let params = if line.params.is_empty() { "" } else { " " };
        println!(
            "{} {} {}{params}{}",
            line.start, line.length, line.kind, line.params
        );
    }
    Ok(())
}

fn dm_ours() -> Result<()> {
    for device in device_mapper("/nonexistent")?.ours()? {
        println!("{} {}", device.name, device.dev);
    }
    Ok(())
}

fn dm_remove(links: &str, name: &str) -> Result<()> {
    if !device_mapper(links)?.remove(name)? {
        abupdate::bail!(DeviceError, "no mapping {name}");
    }
    Ok(())
}

fn dm_cleanup(links: &str, names: &[&str]) -> Result<()> {
    for name in device_mapper(links)?.remove_left_behind(names)? {
        println!("removed {name}");
    }
    Ok(())
}

fn map_slot(by_name: &Path, slot: &str, links: &str, writable: bool) -> Result<()> {
    let slot: Slot = slot.parse()?;
    let device = Device::new(Layout::ByName(by_name.to_owned()), slot);
    let (_, metadata) = device.super_metadata(slot)?;
    let mapper = if writable {
        DmMapper::for_target(DmConfig::linux(links), slot.suffix())
    } else {
        DmMapper::read_only(DmConfig::linux(links))
    };
    for (name, node) in mapper.map_slot(&metadata, slot.suffix(), &device.super_path())? {
        println!("{name} {}", node.display());
    }
    Ok(())
}

/// Logical partitions of `slot`'s metadata by full name, read-only, each linked as
/// LINK_DIR/NAME (`map-slot` maps only the names with the slot's suffix, not a snapshot's
/// `-cow` partition).
fn map_partitions(by_name: &Path, slot: &str, links: &str, names: &[&str]) -> Result<()> {
    let slot: Slot = slot.parse()?;
    let device = Device::new(Layout::ByName(by_name.to_owned()), slot);
    let (_, metadata) = device.super_metadata(slot)?;
    let mapper = DmMapper::read_only(DmConfig::linux(links));
    for name in names {
        let partition = metadata.partition(name).ok_or_else(|| {
            abupdate::err!(PartitionMissing, "no {name} in slot {slot}'s metadata")
        })?;
        let node = mapper.map(name, &device.super_path(), metadata.extents_of(partition))?;
        println!("{name} {}", node.display());
    }
    Ok(())
}

/// libsnapshot's state in OTA_DIR (`/metadata/ota`) and the Virtual A/B message in MISC, one
/// line each: `state`, `snapshot-boot`, each snapshot's sizes, `misc`.
fn vab_state(ota: &Path, misc: &Path) -> Result<()> {
    let dir = OtaDir::new(ota);
    match dir.state()? {
        Some(state) => println!("state: {state:?}"),
        None => println!("state: none"),
    }
    println!(
        "snapshot-boot: {}",
        dir.boot_indicator()?.as_deref().unwrap_or("none")
    );
    for s in dir.snapshots()? {
        println!(
            "snapshot {}: device_size={} cow_partition_size={} cow_file_size={}",
            s.name, s.device_size, s.cow_partition_size, s.cow_file_size
        );
    }
    match vab_message::read(misc)? {
        Some((status, slot)) => println!("misc: merge_status={status} source_slot={slot}"),
        None => println!("misc: no message"),
    }
    Ok(())
}

/// What the bootloader does when the slot it switched to never boots to success: slot A, the
/// one running before the update, is made active again.
fn boot_fallback(misc: &Path) -> Result<()> {
    let mut boot = MiscBootControl::open(misc, Some(Slot::A))?;
    boot.set_active(Slot::A)?;
    println!("slot a active again");
    Ok(())
}

fn lp_super(path: &Path) -> Result<()> {
    let ro = abupdate::lp::ATTR_READONLY;
    let layout = abupdate::lp::NewSuper::new(8 * MIB, 65536, 3)
        .group("main_a", 5 * MIB)
        .group("main_b", MIB)
        .partition("product_a", ro, 3 * MIB, Some("main_a"))
        .partition("product_b", ro, MIB, Some("main_b"))
        .partition("extra_a", ro, 2 * MIB, Some("main_a"));
    super_image::write(path, &layout, &[])?;
    Ok(())
}

/// Built in, so that the VM has it too.
const TEST_KEY: &[u8] = include_bytes!("../tests/data/avb/testkey_rsa2048.pem");

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path.display(), e))
}

/// The collapse steps' Virtual A/B device: `system` alone, its builds the file systems `v1`
/// and `v2`.
fn build_vabc(dir: &Path, v1: &Path, v2: &Path) -> Result<()> {
    let images = dir.join("images");
    create_dir(&images)?;
    let avb = RingSigner::from_pem(TEST_KEY)?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p.display(), e));
    let (v1, v2) = (read(v1)?, read(v2)?);
    let len = v1.len().max(v2.len());
    let size = ((len + len / 50 + (64 << 10)) as u64).div_ceil(4096) * 4096;
    let mut logical = Vec::new();
    for (version, data) in [(1u64, &v1), (2, &v2)] {
        let (image, desc) =
            add_hashtree_footer(data, size, "system", b"system", FecRoots::DEFAULT)?;
        write(&images.join(format!("system-v{version}.img")), &image)?;
        if version == 1 {
            logical.push(("system", image));
        }
        let mut vbmeta = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
            .rollback_index(version)
            .descriptor(Descriptor::Hashtree(desc))
            .build(Some(&avb))?;
        vbmeta.resize(VBMETA_SIZE, 0);
        write(&images.join(format!("vbmeta-v{version}.img")), &vbmeta)?;
    }
    let group_size = (size + MIB).div_ceil(MIB) * MIB;
    build_vab(dir, &images, &logical, group_size, 2 * group_size + 4 * MIB)?;
    write(
        &dir.join("expected.env"),
        format!("VABC_SYSTEM_SIZE={size}\n").as_bytes(),
    )?;
    std::fs::remove_dir_all(&images).map_err(|e| Error::io("images", e))
}

/// `NAME-base` (writable) and `NAME-cow` (read-only) for each snapshot NAME of `slot`'s
/// metadata, as libsnapshot's `MapPartitionWithSnapshot` names them.
fn snapshot_devices(by_name: &Path, slot: &str, links: &str, names: &[&str]) -> Result<()> {
    let slot: Slot = slot.parse()?;
    let device = Device::new(Layout::ByName(by_name.to_owned()), slot);
    let (_, metadata) = device.super_metadata(slot)?;
    let super_dev = dm::block_dev(&device.super_path())?;
    let dm = device_mapper(links)?;
    for name in names {
        for (partition, mapped, read_only) in [
            (name.to_string(), format!("{name}-base"), false),
            (format!("{name}-cow"), format!("{name}-cow"), true),
        ] {
            let p = metadata.partition(&partition).ok_or_else(|| {
                abupdate::err!(PartitionMissing, "no {partition} in slot {slot}'s metadata")
            })?;
            let table = dm::table_of(&partition, metadata.extents_of(p), super_dev)?;
            let node = dm.create(&mapped, &table, read_only)?.node;
            println!("{mapped} {}", node.display());
        }
    }
    Ok(())
}

/// NAME, read-only, over the whole of block device DEVICE.
fn snapshot_device(name: &str, links: &str, device: &str) -> Result<()> {
    let path = Path::new(device);
    let file = std::fs::File::open(path).map_err(|e| Error::io(device, e))?;
    let size = abupdate::device::device_size(&file).map_err(|e| Error::io(device, e))?;
    let mut table = Table::new();
    table.linear(size / 512, dm::block_dev(path)?, 0)?;
    let mapped = device_mapper(links)?.create(name, &table, true)?;
    println!("{name} {}", mapped.node.display());
    Ok(())
}

/// The stand-in snapuserd until a client sends `detach`.
fn snapuserd_standin(socket: &str, scratch: &str, links: &str, served: &[&str]) -> Result<()> {
    let mut handlers = Vec::new();
    let mut nbds = Vec::new();
    for entry in served {
        let Some((name, nbd)) = entry.split_once(':') else {
            abupdate::bail!(DeviceError, "bad NAME:NBD {entry:?}");
        };
        let base = Path::new(links).join(format!("{name}-base"));
        let file = std::fs::File::open(&base).map_err(|e| Error::io(base.display(), e))?;
        let size = abupdate::device::device_size(&file).map_err(|e| Error::io("base", e))?;
        handlers.push(snapuserd::Handler {
            name: name.to_owned(),
            file: base,
            extents: vec![(0, size)],
            cow: Path::new(links).join(format!("{name}-cow")),
            size,
        });
        nbds.push((name.to_owned(), nbd.to_owned()));
    }
    let daemon = snapuserd::StandIn::start(
        Path::new(socket),
        Path::new(scratch),
        handlers,
        snapuserd::Mode::Normal,
        &[],
    );
    let links = links.to_owned();
    daemon.on_delete(move |name| match let_go(&links, &nbds, name) {
        Ok(()) => true,
        Err(e) => {
            println!("delete,{name}: {e}");
            false
        }
    });
    println!("serving at {socket}");
    while !daemon.detached() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("detached; deleted {:?}", daemon.deleted());
    daemon.stop();
    Ok(())
}

/// What snapuserd's handler does when its dm-user device's table is gone: refused while
/// `name`'s live table still reads its nbd device; else that server stopped, and `-base` and
/// `-cow` let go of.
fn let_go(links: &str, nbds: &[(String, String)], name: &str) -> Result<()> {
    let Some((_, nbd)) = nbds.iter().find(|(n, _)| n == name) else {
        println!("delete,{name}: no such handler");
        return Ok(());
    };
    let dm = device_mapper(links)?;
    let served = dm::block_dev(Path::new(nbd))?.to_string();
    let table = dm.table(name)?;
    if table
        .iter()
        .any(|line| line.params.split(' ').any(|p| p == served))
    {
        abupdate::bail!(DeviceError, "{name} still reads {nbd} ({served})");
    }
    let status = std::process::Command::new("abupdate")
        .args(["cow", "serve-stop", "--nbd", nbd])
        .status()
        .map_err(|e| Error::io("abupdate cow serve-stop", e))?;
    if !status.success() {
        abupdate::bail!(DeviceError, "cow serve-stop --nbd {nbd}: {status}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for held in [format!("{name}-base"), format!("{name}-cow")] {
        while dm.status(&held)?.is_some_and(|s| s.open_count > 0) {
            if std::time::Instant::now() > deadline {
                abupdate::bail!(DeviceError, "{held} still held");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    println!("delete,{name}: {nbd} no longer in its table; stopped serving it");
    Ok(())
}
