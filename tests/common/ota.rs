//! A device and an OTA as Android builds them, for the service tests: slots A (v1, running)
//! and B (empty) of `system` (dm-verity hash tree and FEC behind an AVB footer), `vendor`,
//! `product`, `odm` and an AVB-signed `vbmeta` (rollback index = build number) holding
//! system's hashtree descriptor; `misc.img`; a `build.prop`; and a full payload v1 → v2
//! signed with the OTA test key, with its payload_properties.txt pairs.

use std::path::{Path, PathBuf};

use abupdate::avb::{Algorithm, Descriptor, HashtreeDescriptor, RingSigner, VbmetaBuilder};
use abupdate::boot_control::MiscBootControl;
use abupdate::build::avb_image::add_hashtree_footer;
use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::payload::signature::Signer;
use abupdate::slot::Slot;
use abupdate::verity::FecRoots;

use super::Rng;

/// Every partition the payload carries, in its order.
pub const PARTITIONS: [&str; 5] = ["system", "vendor", "product", "odm", "vbmeta"];
/// Data blocks of each data partition (256 KiB: one operation each).
const BLOCKS: usize = 64;
const VBMETA_SIZE: usize = 64 << 10;
/// The running build's date; the payload is newer.
pub const BUILD_DATE: i64 = 1_700_000_000;

/// The files of one device and its update.
pub struct Ota {
    pub root: PathBuf,
    /// The host device directory.
    pub device: PathBuf,
    /// The signed full payload v1 → v2.
    pub payload: PathBuf,
    /// The OTA public key the device trusts (PEM).
    pub cert: PathBuf,
    /// payload_properties.txt's lines.
    pub headers: Vec<String>,
    /// payload_properties.txt itself.
    pub properties: PathBuf,
    /// system's hashtree descriptor in v2's vbmeta.
    pub system_v2: HashtreeDescriptor,
}

impl Ota {
    /// Builds everything under `root`.
    pub fn build(root: &Path) -> Ota {
        let device = root.join("device");
        let images = root.join("images");
        std::fs::create_dir_all(&device).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        let avb_signer = RingSigner::from_pem(&key_pem()).unwrap();
        let mut rng = Rng(0x0a_b0_0d);
        let mut system = Vec::new();
        for name in PARTITIONS.iter().filter(|n| **n != "vbmeta") {
            let v1 = content(&mut rng, BLOCKS);
            let mut v2 = v1.clone();
            rng.fill(&mut v2[4096..8192]);
            for (version, data) in [(1, v1), (2, v2)] {
                let image = match *name {
                    "system" => {
                        let size = (data.len() + 64 * 1024) as u64;
                        let (image, desc) =
                            add_hashtree_footer(&data, size, name, b"salt", FecRoots::DEFAULT)
                                .unwrap();
                        system.push(desc);
                        image
                    }
                    _ => data,
                };
                std::fs::write(images.join(format!("{name}-v{version}.img")), image).unwrap();
            }
        }
        for (version, desc) in [(1u64, &system[0]), (2, &system[1])] {
            let mut vbmeta = VbmetaBuilder::new(Algorithm::Sha256Rsa2048)
                .rollback_index(version)
                .descriptor(Descriptor::Hashtree(desc.clone()))
                .build(Some(&avb_signer))
                .unwrap();
            vbmeta.resize(VBMETA_SIZE, 0);
            std::fs::write(images.join(format!("vbmeta-v{version}.img")), vbmeta).unwrap();
        }
        for name in PARTITIONS {
            let v1 = std::fs::read(images.join(format!("{name}-v1.img"))).unwrap();
            std::fs::write(device.join(format!("{name}_b.img")), vec![0u8; v1.len()]).unwrap();
            std::fs::write(device.join(format!("{name}_a.img")), v1).unwrap();
        }
        MiscBootControl::create_image(&device.join("misc.img"), Slot::A).unwrap();
        std::fs::write(
            device.join("build.prop"),
            format!("ro.build.date.utc={BUILD_DATE}\n"),
        )
        .unwrap();

        let signer = Signer::from_pem(&String::from_utf8(key_pem()).unwrap()).unwrap();
        let cert = root.join("ota-cert.pem");
        std::fs::write(&cert, signer.public_key_pem().unwrap()).unwrap();
        let payload = root.join("payload.bin");
        let report = build::build(
            &specs(&images, "v2"),
            &options(signer, BUILD_DATE + 100),
            &payload,
        )
        .unwrap();
        let text = report.properties.to_text();
        let properties = root.join("payload_properties.txt");
        std::fs::write(&properties, &text).unwrap();
        Ota {
            root: root.to_owned(),
            device,
            payload,
            cert,
            headers: text.lines().map(str::to_owned).collect(),
            properties,
            system_v2: system[1].clone(),
        }
    }

    /// A second payload, signed like the first, but made before the running build.
    pub fn old_payload(&self) -> PathBuf {
        let signer = Signer::from_pem(&String::from_utf8(key_pem()).unwrap()).unwrap();
        let path = self.root.join("old.bin");
        let specs = vec![PartitionSpec {
            name: "vendor".to_owned(),
            new: self.image("vendor", "v2"),
            old: None,
            append_verity: false,
        }];
        build::build(&specs, &options(signer, BUILD_DATE - 100), &path).unwrap();
        path
    }

    /// `images/<name>-<version>.img`: what a slot holds once updated to `version`.
    pub fn image(&self, name: &str, version: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{name}-{version}.img"))
    }

    /// Whether every partition of `slot` holds `version` byte for byte.
    pub fn slot_holds(&self, slot: char, version: &str) -> bool {
        PARTITIONS.iter().all(|name| {
            let written = std::fs::read(self.device.join(format!("{name}_{slot}.img"))).unwrap();
            written == std::fs::read(self.image(name, version)).unwrap()
        })
    }

    /// The payload file, opened as a client hands it to the service.
    pub fn payload_file(&self) -> std::fs::File {
        std::fs::File::open(&self.payload).unwrap()
    }
}

/// The test key, used both to sign payloads and vbmeta (test-only, see tests/data/avb).
fn key_pem() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/avb/testkey_rsa2048.pem"))
        .unwrap()
}

fn specs(images: &Path, version: &str) -> Vec<PartitionSpec> {
    PARTITIONS
        .iter()
        .map(|name| PartitionSpec {
            name: (*name).to_owned(),
            new: images.join(format!("{name}-{version}.img")),
            old: None,
            append_verity: false,
        })
        .collect()
}

fn options(signer: Signer, max_timestamp: i64) -> BuildOptions {
    BuildOptions {
        signer: Some(signer),
        // XZ alone: the smallest, and one compressor keeps the build quick in debug.
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        max_timestamp: Some(max_timestamp),
        ..BuildOptions::default()
    }
}

/// Partition content that compresses as real images do, mostly: one block in eight random,
/// the others text or zeros.
fn content(rng: &mut Rng, blocks: usize) -> Vec<u8> {
    let mut data = vec![0u8; blocks * 4096];
    for block in data.chunks_mut(4096) {
        match rng.below(8) {
            0 => rng.fill(block),
            1 | 2 => {}
            _ => super::text_block(rng, block),
        }
    }
    data
}
