//! Dynamic partitions end to end against AOSP's own tools (`lpmake`, `lpdump`, `lpunpack`,
//! built from AOSP source in `../shared/tools/aosp/bin`): a `super` made by `lpmake` with the
//! `_a` partitions from images, as an AOSP build makes it, is updated by `abupdate apply` from
//! a signed payload carrying `dynamic_partition_metadata` (a full payload into slot B, then a
//! delta back into slot A). After each, `lpdump` shows the target slot's groups, partitions
//! and extents, the source slot's metadata is exactly as before, and `lpunpack --slot`
//! extracts the target partitions byte-identical to the new images.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::boot_control::MiscBootControl;
use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::payload::manifest::{DynamicGroup, DynamicPartitions};
use abupdate::slot::Slot;

use common::{forge, mixed_image, Rng};

const MIB: u64 = 1 << 20;
const SUPER_SIZE: u64 = 24 * MIB;
const GROUP_SIZE: u64 = 10 * MIB;
/// (partition, blocks in v1, blocks in v2, blocks in v3): sizes change between builds.
const LOGICAL: [(&str, usize, usize, usize); 3] = [
    ("system", 600, 700, 650),
    ("vendor", 300, 260, 300),
    ("product", 100, 100, 180),
];

fn tool(name: &str) -> PathBuf {
    common::shared::aosp_tool(name)
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name} (AOSP tools in ../shared/tools/aosp): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lpdump(image: &Path, slot: u32) -> String {
    run(
        "lpdump",
        &[&format!("--slot={slot}"), image.to_str().unwrap()],
    )
}

/// The partitions lpdump lists: (name, group, sectors of all their extents).
fn lpdump_partitions(dump: &str) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = Vec::new();
    let mut in_table = false;
    for line in dump.lines().map(str::trim) {
        if line.starts_with("Partition table") {
            in_table = true;
        } else if line.starts_with("Super partition layout") || line.starts_with("Block device") {
            in_table = false;
        }
        if !in_table {
            continue;
        }
        if let Some(name) = line.strip_prefix("Name: ") {
            out.push((name.to_owned(), String::new(), 0));
        } else if let Some(group) = line.strip_prefix("Group: ") {
            out.last_mut().unwrap().1 = group.to_owned();
        } else if let Some((range, _)) = line.split_once(" linear ") {
            let (a, b) = range.split_once(" .. ").unwrap();
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            out.last_mut().unwrap().2 += b - a + 1;
        }
    }
    out
}

fn lpdump_groups(dump: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_groups = false;
    let mut name = String::new();
    for line in dump.lines() {
        let line = line.trim();
        if line.starts_with("Group table") {
            in_groups = true;
        }
        if !in_groups {
            continue;
        }
        if let Some(n) = line.strip_prefix("Name: ") {
            name = n.to_owned();
        } else if let Some(m) = line.strip_prefix("Maximum size: ") {
            out.push((name.clone(), m.to_owned()));
        }
    }
    out
}

struct Builds {
    dir: PathBuf,
}

impl Builds {
    fn image(&self, name: &str, version: u32) -> PathBuf {
        self.dir.join(format!("{name}-v{version}.img"))
    }
}

fn make_builds(dir: &Path) -> Builds {
    let mut rng = Rng(0x5_0e7);
    for (name, b1, b2, b3) in LOGICAL {
        let v1 = mixed_image(&mut rng, b1);
        let mut v2 = v1.clone();
        v2.resize(b2 * 4096, 0);
        let mut extra = mixed_image(&mut rng, b2 / 8);
        v2[..extra.len()].swap_with_slice(&mut extra);
        let mut v3 = v2.clone();
        v3.resize(b3 * 4096, 7);
        let mut extra = mixed_image(&mut rng, b3 / 8);
        let at = v3.len() - extra.len();
        v3[at..].swap_with_slice(&mut extra);
        for (v, data) in [(1, v1), (2, v2), (3, v3)] {
            std::fs::write(dir.join(format!("{name}-v{v}.img")), data).unwrap();
        }
    }
    for v in 1..=3u32 {
        let boot = mixed_image(&mut Rng(u64::from(v) + 99), 64);
        std::fs::write(dir.join(format!("boot-v{v}.img")), boot).unwrap();
    }
    Builds {
        dir: dir.to_owned(),
    }
}

/// `lpmake` as build_super_image.py calls it for an A/B device: groups `main_a`/`main_b`,
/// `<name>_a` with the v1 images, `<name>_b` empty.
fn lpmake_super(builds: &Builds, out: &Path) {
    let mut args: Vec<String> = [
        "--metadata-size",
        "65536",
        "--super-name",
        "super",
        "--metadata-slots",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--device=super:{SUPER_SIZE}"));
    args.push(format!("--group=main_a:{GROUP_SIZE}"));
    args.push(format!("--group=main_b:{GROUP_SIZE}"));
    for (name, b1, _, _) in LOGICAL {
        args.push(format!(
            "--partition={name}_a:readonly:{}:main_a",
            b1 * 4096
        ));
        args.push(format!(
            "--image={name}_a={}",
            builds.image(name, 1).display()
        ));
    }
    for (name, ..) in LOGICAL {
        args.push(format!("--partition={name}_b:readonly:0:main_b"));
    }
    args.push("--output".into());
    args.push(out.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("lpmake", &args);
}

fn payload(builds: &Builds, out: &Path, new: u32, old: Option<u32>) {
    let mut specs: Vec<PartitionSpec> = LOGICAL
        .iter()
        .map(|(n, ..)| *n)
        .chain(["boot"])
        .map(|name| PartitionSpec {
            name: name.to_owned(),
            new: builds.image(name, new),
            old: old.map(|o| builds.image(name, o)),
            append_verity: false,
        })
        .collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    let options = BuildOptions {
        signer: Some(forge::test_key('a').0),
        threads: 2,
        dynamic: Some(DynamicPartitions {
            groups: vec![DynamicGroup {
                name: "main".into(),
                size: GROUP_SIZE,
                partitions: LOGICAL.iter().map(|(n, ..)| (*n).to_owned()).collect(),
            }],
            snapshot_enabled: false,
            vabc: Default::default(),
        }),
        ..BuildOptions::default()
    };
    let report = build::build(&specs, &options, out).unwrap();
    std::fs::write(
        out.with_extension("properties"),
        report.properties.to_text(),
    )
    .unwrap();
    assert!(report.manifest.dynamic.is_some());
}

fn apply(dev: &Path, payload: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .arg("apply")
        .arg("--device")
        .arg(dev)
        .arg("--key")
        .arg(forge::test_key('a').1)
        .arg("--properties")
        .arg(payload.with_extension("properties"))
        .arg(payload)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "abupdate apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After an update into `target` with build `version`: lpdump shows the target slot's layout
/// and lpunpack extracts the new images; the source slot's metadata is unchanged.
fn check_after(root: &Path, builds: &Builds, target: Slot, version: u32, source_dump_before: &str) {
    let super_img = root.join("dev/super.img");
    let (source_slot, target_slot) = match target {
        Slot::B => (0, 1),
        Slot::A => (1, 0),
    };
    let suffix = target.suffix();
    assert_eq!(
        lpdump(&super_img, source_slot),
        source_dump_before,
        "the source slot's metadata changed"
    );
    let dump = lpdump(&super_img, target_slot);
    let groups = lpdump_groups(&dump);
    assert!(
        groups
            .iter()
            .any(|(g, max)| *g == format!("main{suffix}") && *max == format!("{GROUP_SIZE} bytes")),
        "target group missing: {groups:?}\n{dump}"
    );
    let parts = lpdump_partitions(&dump);
    for (name, b1, b2, b3) in LOGICAL {
        let blocks = [b1, b2, b3][version as usize - 1] as u64;
        let entry = parts
            .iter()
            .find(|(n, ..)| *n == format!("{name}{suffix}"))
            .unwrap_or_else(|| panic!("{name}{suffix} not in lpdump: {dump}"));
        assert_eq!(entry.1, format!("main{suffix}"));
        assert_eq!(entry.2, blocks * 8, "{name}{suffix} sectors");
    }
    let out = root.join(format!("unpacked-{version}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut args = vec![format!("--slot={target_slot}")];
    for (name, ..) in LOGICAL {
        args.push(format!("--partition={name}{suffix}"));
    }
    args.push(super_img.display().to_string());
    args.push(out.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("lpunpack", &args);
    for (name, ..) in LOGICAL {
        let got = std::fs::read(out.join(format!("{name}{suffix}.img"))).unwrap();
        assert!(
            got == std::fs::read(builds.image(name, version)).unwrap(),
            "lpunpack's {name}{suffix} differs from the v{version} image"
        );
    }
    let boot = std::fs::read(root.join(format!("dev/boot{suffix}.img"))).unwrap();
    assert_eq!(boot, std::fs::read(builds.image("boot", version)).unwrap());
}

#[test]
fn lpmake_super_updated_full_then_delta_checked_by_lpdump_and_lpunpack() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let images = root.join("images");
    let dev = root.join("dev");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&dev).unwrap();
    let builds = make_builds(&images);
    let super_img = dev.join("super.img");
    lpmake_super(&builds, &super_img);
    std::fs::copy(builds.image("boot", 1), dev.join("boot_a.img")).unwrap();
    std::fs::write(dev.join("boot_b.img"), vec![0u8; 64 * 4096]).unwrap();
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();

    // Our reader agrees with lpmake's layout before anything happens.
    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(["super", "info"])
        .arg(&super_img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{info}");
    assert!(
        info.contains("system_a") && info.contains("main_b"),
        "{info}"
    );

    let full = root.join("full.bin");
    payload(&builds, &full, 2, None);
    let slot0 = lpdump(&super_img, 0);
    apply(&dev, &full);
    check_after(root, &builds, Slot::B, 2, &slot0);

    // The device now runs B: a delta v2 → v3 goes into A, from slot 1's metadata.
    let mut misc = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.join("misc.img"))
        .unwrap();
    assert_eq!(
        abupdate::slot::bootloader::boot_misc(&mut misc).unwrap(),
        Some(Slot::B)
    );
    let delta = root.join("delta.bin");
    payload(&builds, &delta, 3, Some(2));
    let slot1 = lpdump(&super_img, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(["mark-successful", "--device"])
        .arg(&dev)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply(&dev, &delta);
    check_after(root, &builds, Slot::A, 3, &slot1);
}
