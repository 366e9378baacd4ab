//! The liblp format against AOSP's own tools (`lpmake`, `lpdump`, `lpunpack` built from AOSP
//! source in `../shared/tools/aosp/bin`): our builder gives the metadata region lpmake
//! writes, byte for byte; our parse → serialise reproduces lpmake's bytes; the target slot
//! `prepare_target` makes reads back through `lpdump` and `lpunpack` as expected.

#[path = "common/shared.rs"]
mod shared;

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::lp::{
    flash_image, prepare_target, prepare_target_on, DynamicGroup, ExtentTarget, Geometry, Metadata,
    NewSuper, ATTR_READONLY, GEOMETRY_SIZE, RESERVED_BYTES,
};
use abupdate::ErrorCode;

const MIB: u64 = 1024 * 1024;

/// `../shared/tools/aosp/bin` beside the checkout, or `$ABUPDATE_SHARED/tools/aosp/bin`.
fn tool(name: &str) -> PathBuf {
    shared::aosp_tool(name)
}

fn run(name: &str, args: &[String]) -> String {
    let out = Command::new(tool(name))
        .args(args)
        .output()
        .expect("run AOSP tool");
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic non-zero bytes, different per seed.
fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// Runs lpmake with `args` plus `-F --output` and returns the full image.
fn lpmake(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = dir.join("super.img");
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["-F".into(), "--output".into(), out.display().to_string()]);
    run("lpmake", &all);
    std::fs::read(&out).unwrap()
}

fn parse_image(image: &[u8], slot: u32) -> (Geometry, Metadata) {
    let g = Geometry::parse_either(
        &image[RESERVED_BYTES as usize..],
        &image[(RESERVED_BYTES + GEOMETRY_SIZE) as usize..],
    )
    .unwrap();
    let at = g.primary_offset(slot).unwrap() as usize;
    let m = Metadata::parse(&image[at..at + g.metadata_max_size as usize], &g).unwrap();
    (g, m)
}

/// Our builder and our parse → serialise both reproduce lpmake's metadata region.
fn same_as_lpmake(args: &[&str], ours: &NewSuper) -> (Geometry, Metadata, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let theirs = lpmake(dir.path(), args);
    let (g, m) = parse_image(&theirs, 0);
    let region = g.total_metadata_size().unwrap() as usize;
    for slot in 0..g.metadata_slot_count {
        assert_eq!(parse_image(&theirs, slot).1, m, "slot {slot} differs");
    }
    assert_eq!(
        flash_image(&g, &m).unwrap(),
        theirs[..region],
        "parse → serialise of {args:?}"
    );
    let (our_g, our_m) = ours.build().unwrap();
    assert_eq!(our_g, g);
    assert_eq!(our_m, m, "builder vs lpmake {args:?}");
    assert_eq!(
        flash_image(&our_g, &our_m).unwrap(),
        theirs[..region],
        "builder bytes {args:?}"
    );
    (g, m, theirs)
}

#[test]
fn build_super_image_style_ab_three_slots() {
    // What build_super_image.py passes for a (non-retrofit) A/B device: `_a` partitions with
    // images, `_b` of size 0, groups `<g>_a`/`<g>_b`, metadata-size 65536, 3 slots.
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("system_a.img");
    std::fs::write(&sys, pattern(3 * MIB + 4096, 7)).unwrap();
    let img = format!("system_a={}", sys.display());
    let args = [
        "--metadata-size",
        "65536",
        "--super-name",
        "super",
        "--metadata-slots",
        "3",
        "--device",
        "super:67108864",
        "--group",
        "main_a:33554432",
        "--group",
        "main_b:33554432",
        "--partition",
        "system_a:readonly:3149824:main_a",
        "--image",
        &img,
        "--partition",
        "system_b:readonly:0:main_b",
        "--partition",
        "vendor_a:readonly:1000000:main_a",
        "--partition",
        "vendor_b:readonly:0:main_b",
        "--partition",
        "product_a:readonly:2097152:main_a",
        "--partition",
        "product_b:readonly:0:main_b",
    ];
    let ours = NewSuper::new(64 * MIB, 65536, 3)
        .group("main_a", 32 * MIB)
        .group("main_b", 32 * MIB)
        .partition("system_a", ATTR_READONLY, 3149824, Some("main_a"))
        .partition("system_b", ATTR_READONLY, 0, Some("main_b"))
        .partition("vendor_a", ATTR_READONLY, 1000000, Some("main_a"))
        .partition("vendor_b", ATTR_READONLY, 0, Some("main_b"))
        .partition("product_a", ATTR_READONLY, 2097152, Some("main_a"))
        .partition("product_b", ATTR_READONLY, 0, Some("main_b"));
    let (_, m, image) = same_as_lpmake(&args, &ours);
    assert_eq!(m.header_version(), (10, 0));
    let system = m.partition("system_a").unwrap();
    // The image data lpmake wrote lands where our extents say.
    let want = pattern(3 * MIB + 4096, 7);
    let mut got = Vec::new();
    for e in m.extents_of(system) {
        let ExtentTarget::Linear {
            physical_sector, ..
        } = e.target
        else {
            panic!("zero extent")
        };
        let at = (physical_sector * 512) as usize;
        got.extend_from_slice(&image[at..at + (e.num_sectors * 512) as usize]);
    }
    assert_eq!(got, want[..3149824]);
}

#[test]
fn virtual_ab_header_10_2() {
    let args = [
        "--metadata-size",
        "65536",
        "--metadata-slots",
        "3",
        "--device-size",
        "134217728",
        "--virtual-ab",
        "--group",
        "dyn_a:100000000",
        "--group",
        "dyn_b:100000000",
        "--partition",
        "system_a:readonly:40000000:dyn_a",
        "--partition",
        "system_b:readonly:0:dyn_b",
        "--partition",
        "odm_a:none:8192:dyn_a",
        "--partition",
        "odm_b:none:0:dyn_b",
    ];
    let mut ours = NewSuper::new(128 * MIB, 65536, 3)
        .group("dyn_a", 100000000)
        .group("dyn_b", 100000000)
        .partition("system_a", ATTR_READONLY, 40000000, Some("dyn_a"))
        .partition("system_b", ATTR_READONLY, 0, Some("dyn_b"))
        .partition("odm_a", 0, 8192, Some("dyn_a"))
        .partition("odm_b", 0, 0, Some("dyn_b"));
    ours.virtual_ab = true;
    let (_, m, _) = same_as_lpmake(&args, &ours);
    assert_eq!(m.header_version(), (10, 2));
    assert_eq!(m.header_flags(), 1);
}

#[test]
fn two_slots_default_group_small_metadata() {
    let args = [
        "--metadata-size",
        "8000",
        "--metadata-slots",
        "2",
        "--device-size",
        "33554432",
        "--partition",
        "a:readonly:4096",
        "--partition",
        "b:none:12345",
        "--partition",
        "c:readonly:1048576",
    ];
    let ours = NewSuper::new(32 * MIB, 8000, 2)
        .partition("a", ATTR_READONLY, 4096, None)
        .partition("b", 0, 12345, None)
        .partition("c", ATTR_READONLY, MIB, None);
    let (g, _, _) = same_as_lpmake(&args, &ours);
    assert_eq!(g.metadata_max_size, 8192);
}

#[test]
fn alignment_block_size_and_slot_suffixing() {
    let args = [
        "--metadata-size",
        "65536",
        "--metadata-slots",
        "2",
        "--device-size",
        "50331648",
        "--alignment",
        "65536",
        "--alignment-offset",
        "4096",
        "--block-size",
        "4096",
        "-x",
        "--group",
        "g:20000000",
        "--partition",
        "system:readonly:10000000:g",
        "--partition",
        "vendor:readonly:5000000:g",
        "--partition",
        "scratch:none:3000000",
    ];
    let mut ours = NewSuper::new(48 * MIB, 65536, 2)
        .group("g", 20000000)
        .partition("system", ATTR_READONLY, 10000000, Some("g"))
        .partition("vendor", ATTR_READONLY, 5000000, Some("g"))
        .partition("scratch", 0, 3000000, None);
    ours.alignment = 65536;
    ours.alignment_offset = 4096;
    ours.auto_slot_suffixing = true;
    let (_, m, _) = same_as_lpmake(&args, &ours);
    assert_eq!(m.block_devices()[0].flags, 1);
    assert_eq!(m.partition("system").unwrap().attributes, ATTR_READONLY | 2);
}

#[test]
fn many_partitions() {
    let names: Vec<String> = (0..20).map(|i| format!("part{i}_a")).collect();
    let mut args: Vec<String> = [
        "--metadata-size",
        "65536",
        "--metadata-slots",
        "3",
        "--device-size",
        "268435456",
        "--group",
        "big_a:120000000",
        "--group",
        "big_b:120000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut ours = NewSuper::new(256 * MIB, 65536, 3)
        .group("big_a", 120000000)
        .group("big_b", 120000000);
    for (i, n) in names.iter().enumerate() {
        let size = (i as u64 + 1) * 500_009;
        args.extend(["--partition".into(), format!("{n}:readonly:{size}:big_a")]);
        ours = ours.partition(n, ATTR_READONLY, size, Some("big_a"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, m, _) = same_as_lpmake(&refs, &ours);
    assert_eq!(m.partitions().len(), 20);
}

#[test]
fn lpmake_refusals_are_ours_too() {
    // More than the group allows, more than the device has.
    let too_big =
        NewSuper::new(64 * MIB, 65536, 2)
            .group("g", MIB)
            .partition("p", 0, 2 * MIB, Some("g"));
    assert_eq!(
        abupdate::Error::from(too_big.build().unwrap_err()).code,
        ErrorCode::SuperNoSpace
    );
    let no_room = NewSuper::new(16 * MIB, 65536, 2).partition("p", 0, 16 * MIB, None);
    assert_eq!(
        abupdate::Error::from(no_room.build().unwrap_err()).code,
        ErrorCode::SuperNoSpace
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(tool("lpmake"))
        .args([
            "--metadata-size",
            "65536",
            "--metadata-slots",
            "2",
            "--device-size",
            "16777216",
            "--partition",
            "p:none:16777216",
            "--output",
        ])
        .arg(dir.path().join("x.img"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "lpmake accepted what we refuse");
}

/// A super image for the update tests: our flash_image, `_a` extents filled with a
/// pattern, the target metadata in `slot` (primary and backup), target extents filled too.
struct Super {
    image: Vec<u8>,
}

impl Super {
    fn new(g: &Geometry, m: &Metadata) -> Super {
        let mut image = flash_image(g, m).unwrap();
        image.resize(m.block_devices()[0].size as usize, 0);
        let mut s = Super { image };
        for (i, p) in m.partitions().iter().enumerate() {
            s.fill(m, &p.name, i as u8 + 1);
        }
        s
    }

    fn fill(&mut self, m: &Metadata, name: &str, seed: u8) {
        let p = m.partition(name).unwrap();
        let data = pattern(m.partition_size(p), seed);
        let mut off = 0usize;
        for e in m.extents_of(p) {
            let len = (e.num_sectors * 512) as usize;
            if let ExtentTarget::Linear {
                physical_sector, ..
            } = e.target
            {
                let at = (physical_sector * 512) as usize;
                self.image[at..at + len].copy_from_slice(&data[off..off + len]);
            }
            off += len;
        }
    }

    fn write_slot(&mut self, g: &Geometry, m: &Metadata, slot: u32) {
        let blob = m.to_bytes(g).unwrap();
        for at in [
            g.primary_offset(slot).unwrap(),
            g.backup_offset(slot).unwrap(),
        ] {
            let at = at as usize;
            self.image[at..at + g.metadata_max_size as usize].fill(0);
            self.image[at..at + blob.len()].copy_from_slice(&blob);
        }
    }

    fn save(&self, dir: &Path) -> PathBuf {
        let path = dir.join("super.img");
        std::fs::write(&path, &self.image).unwrap();
        path
    }
}

fn lpdump(path: &Path, slot: u32) -> String {
    run(
        "lpdump",
        &[format!("--slot={slot}"), path.display().to_string()],
    )
}

/// lpdump's "Partition table" section as (name, group, attributes, extent lines).
fn dumped_partitions(dump: &str) -> Vec<(String, String, String, Vec<String>)> {
    let table = dump.split("Super partition layout:").next().unwrap();
    table
        .split("------------------------")
        .filter(|b| b.contains("Name:"))
        .map(|b| {
            let field = |k: &str| {
                b.lines()
                    .find_map(|l| l.trim().strip_prefix(k))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            let extents = b
                .lines()
                .skip_while(|l| !l.contains("Extents:"))
                .skip(1)
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            (
                field("Name:"),
                field("Group:"),
                field("Attributes:"),
                extents,
            )
        })
        .collect()
}

/// lpdump's "Group table" as "name maximum_size".
fn dumped_groups(dump: &str) -> Vec<String> {
    let table = dump.split("Group table:").nth(1).unwrap();
    table
        .split("------------------------")
        .filter(|b| b.contains("Name:"))
        .map(|b| {
            let field = |k: &str| {
                b.lines()
                    .find_map(|l| l.trim().strip_prefix(k))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            };
            format!(
                "{} {}",
                field("Name:"),
                field("Maximum size:").trim_end_matches(" bytes")
            )
        })
        .collect()
}

/// What lpdump should print for our metadata's partitions.
fn expected_partitions(m: &Metadata) -> Vec<(String, String, String, Vec<String>)> {
    m.partitions()
        .iter()
        .map(|p| {
            let mut logical = 0u64;
            let extents = m
                .extents_of(p)
                .iter()
                .map(|e| {
                    let end = logical + e.num_sectors - 1;
                    let line = match e.target {
                        ExtentTarget::Linear {
                            physical_sector, ..
                        } => {
                            format!("{logical} .. {end} linear super {physical_sector}")
                        }
                        ExtentTarget::Zero => format!("{logical} .. {end} zero"),
                    };
                    logical = end + 1;
                    line
                })
                .collect();
            let attrs = if p.attributes & ATTR_READONLY != 0 {
                "readonly"
            } else {
                "none"
            };
            (
                p.name.clone(),
                m.group_of(p).unwrap().name.clone(),
                attrs.to_string(),
                extents,
            )
        })
        .collect()
}

fn source_layout(virtual_ab: bool) -> NewSuper {
    let mut s = NewSuper::new(64 * MIB, 65536, 3)
        .group("main_a", 30 * MIB)
        .group("main_b", 30 * MIB)
        .partition("system_a", ATTR_READONLY, 10 * MIB + 4096, Some("main_a"))
        .partition("system_b", ATTR_READONLY, 0, Some("main_b"))
        .partition("vendor_a", ATTR_READONLY, 3 * MIB, Some("main_a"))
        .partition("vendor_b", ATTR_READONLY, 0, Some("main_b"));
    s.virtual_ab = virtual_ab;
    s
}

fn manifest_groups() -> (Vec<DynamicGroup>, Vec<(String, u64)>) {
    let groups = vec![DynamicGroup {
        name: "main".into(),
        size: 30 * MIB,
        partitions: vec!["system".into(), "vendor".into(), "product".into()],
    }];
    let sizes = vec![
        ("system".to_string(), 12 * MIB + 512),
        ("vendor".to_string(), 2 * MIB),
        ("product".to_string(), MIB + 4096),
    ];
    (groups, sizes)
}

fn check_update_with_tools(virtual_ab: bool) {
    let (g, source) = source_layout(virtual_ab).build().unwrap();
    let (groups, sizes) = manifest_groups();
    let target = prepare_target(&source, "_b", &groups, &sizes).unwrap();
    // The source's `_a` entries stay exactly as they were.
    for name in ["system_a", "vendor_a"] {
        let (s, t) = (
            source.partition(name).unwrap(),
            target.partition(name).unwrap(),
        );
        assert_eq!(source.extents_of(s), target.extents_of(t));
    }
    assert!(target.partition("product_b").is_some());
    // A VAB source is 10.2 with the flag; the target is 10.0 either way (SetMetadataHeaderV0).
    let source_version = if virtual_ab { (10, 2) } else { (10, 0) };
    assert_eq!(source.header_version(), source_version);
    assert_eq!(target.header_version(), (10, 0));
    assert_eq!(target.header_flags(), 0);
    // Non-VAB: `_b` extents start in super's second half; VAB: right after the `_a` ones.
    let mid = source.block_devices()[0].size / 512 / 2;
    let ExtentTarget::Linear {
        physical_sector, ..
    } = target.extents_of(target.partition("system_b").unwrap())[0].target
    else {
        panic!()
    };
    assert_eq!(
        physical_sector >= mid,
        !virtual_ab,
        "{physical_sector} vs {mid}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut sup = Super::new(&g, &source);
    let before = sup.save(dir.path());
    let source_dump = lpdump(&before, 0);
    sup.write_slot(&g, &target, 1);
    for (i, name) in ["system_b", "vendor_b", "product_b"].iter().enumerate() {
        sup.fill(&target, name, 100 + i as u8);
    }
    let path = sup.save(dir.path());
    assert_eq!(lpdump(&path, 0), source_dump, "source slot changed");
    let dump = lpdump(&path, 1);
    assert_eq!(dumped_partitions(&dump), expected_partitions(&target));
    let groups: Vec<String> = target
        .groups()
        .iter()
        .map(|g| format!("{} {}", g.name, g.maximum_size))
        .collect();
    assert_eq!(dumped_groups(&dump), groups);
    assert!(dump.contains("Metadata version: 10.0\n"), "{dump}");
    assert!(dump.contains("Header flags: none\n"), "{dump}");
    let source_header = if virtual_ab {
        "Metadata version: 10.2\n"
    } else {
        "Metadata version: 10.0\n"
    };
    assert!(source_dump.contains(source_header), "{source_dump}");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut args = vec!["--slot=1".to_string()];
    for name in ["system_b", "vendor_b", "product_b"] {
        args.extend(["-p".to_string(), name.to_string()]);
    }
    args.extend([path.display().to_string(), out.display().to_string()]);
    run("lpunpack", &args);
    for (i, name) in ["system_b", "vendor_b", "product_b"].iter().enumerate() {
        let size = target.partition_size(target.partition(name).unwrap());
        let got = std::fs::read(out.join(format!("{name}.img"))).unwrap();
        assert_eq!(got, pattern(size, 100 + i as u8), "{name}");
    }
}

#[test]
fn prepare_target_non_vab_read_by_lpdump_and_lpunpack() {
    check_update_with_tools(false);
}

#[test]
fn prepare_target_virtual_ab_downgrades_header() {
    check_update_with_tools(true);
}

#[test]
fn prepare_target_space_limits() {
    let (_, source) = source_layout(false).build().unwrap();
    let allocatable = source.allocatable_space();
    let group = |size| {
        vec![DynamicGroup {
            name: "main".into(),
            size,
            partitions: vec!["system".into()],
        }]
    };
    let sizes = vec![("system".to_string(), MIB)];
    // Non-VAB: the target groups may take half of super.
    let half = prepare_target_on(&source, "_b", &group(allocatable / 2 + 1), &sizes, false);
    assert_eq!(
        abupdate::Error::from(half.unwrap_err()).code,
        ErrorCode::SuperNoSpace
    );
    prepare_target_on(&source, "_b", &group(allocatable / 2), &sizes, false).unwrap();
    // VAB: all of it.
    prepare_target_on(&source, "_b", &group(allocatable / 2 + 1), &sizes, true).unwrap();
    let full = prepare_target_on(&source, "_b", &group(allocatable + 1), &sizes, true);
    assert_eq!(
        abupdate::Error::from(full.unwrap_err()).code,
        ErrorCode::SuperNoSpace
    );
    // A partition larger than its group, or than the free space.
    let over = prepare_target(
        &source,
        "_b",
        &group(MIB),
        &[("system".to_string(), 2 * MIB)],
    );
    assert_eq!(
        abupdate::Error::from(over.unwrap_err()).code,
        ErrorCode::SuperNoSpace
    );
    let huge = prepare_target_on(
        &source,
        "_b",
        &group(allocatable),
        &[("system".to_string(), allocatable)],
        true,
    );
    assert_eq!(
        abupdate::Error::from(huge.unwrap_err()).code,
        ErrorCode::SuperNoSpace
    );
    // A partition the group lists without a size.
    let missing = prepare_target(&source, "_b", &group(MIB), &[]);
    assert_eq!(
        abupdate::Error::from(missing.unwrap_err()).code,
        ErrorCode::MalformedPayload
    );
}

#[test]
fn prepare_target_replaces_old_target_and_cow_groups() {
    let (_, source) = source_layout(false)
        .group("cow", 0)
        .partition("system_b-cow", 0, MIB, Some("cow"))
        .build()
        .unwrap();
    let (groups, sizes) = manifest_groups();
    let first = prepare_target(&source, "_b", &groups, &sizes).unwrap();
    assert!(first.partition("system_b-cow").is_none());
    assert!(!first.groups().iter().any(|g| g.name == "cow"));
    // Preparing again from metadata that already has `_b` entries gives the same result.
    let again = prepare_target(&first, "_b", &groups, &sizes).unwrap();
    assert_eq!(again, first);
    let names: Vec<&str> = first.groups().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["default", "main_a", "main_b"]);
}

/// PyPI's `liblp` (an independent Python port of liblp; `.ci/run` installs it) reads every
/// slot of our images: the source slot 10.0 or 10.2, the prepared target slot.
#[test]
fn python_liblp_reads_our_metadata() {
    const SCRIPT: &str = r#"
import sys
from liblp.reader import ReadMetadata
m = ReadMetadata(sys.argv[1], int(sys.argv[2]))
print("version", m.header.major_version, m.header.minor_version)
for p in m.partitions:
    g = m.groups[p.group_index]
    ex = [(e.num_sectors, e.target_type, e.target_data, e.target_source)
          for e in m.extents[p.first_extent_index:p.first_extent_index + p.num_extents]]
    print(p.name.decode(), g.name.decode(), p.attributes, ex)
"#;
    for virtual_ab in [false, true] {
        let (g, source) = source_layout(virtual_ab).build().unwrap();
        let (groups, sizes) = manifest_groups();
        let target = prepare_target(&source, "_b", &groups, &sizes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sup = Super::new(&g, &source);
        sup.write_slot(&g, &target, 1);
        let path = sup.save(dir.path());
        for (slot, m) in [(0, &source), (1, &target)] {
            let out = Command::new("python3")
                .args(["-c", SCRIPT])
                .arg(&path)
                .arg(slot.to_string())
                .output()
                .expect("python3");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (major, minor) = m.header_version();
            let mut want = format!("version {major} {minor}\n");
            for p in m.partitions() {
                let ex: Vec<String> = m
                    .extents_of(p)
                    .iter()
                    .map(|e| match e.target {
                        ExtentTarget::Linear {
                            block_device,
                            physical_sector,
                        } => {
                            format!("({}, 0, {physical_sector}, {block_device})", e.num_sectors)
                        }
                        ExtentTarget::Zero => format!("({}, 1, 0, 0)", e.num_sectors),
                    })
                    .collect();
                want += &format!(
                    "{} {} {} [{}]\n",
                    p.name,
                    m.group_of(p).unwrap().name,
                    p.attributes,
                    ex.join(", ")
                );
            }
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "slot {slot}, vab {virtual_ab}"
            );
        }
    }
}

/// A ZERO extent (which no builder makes, but liblp reads) parses, serialises back to the
/// same bytes, and is what lpdump shows.
#[test]
fn zero_extent_round_trip_with_lpdump_and_lpunpack() {
    let (g, m) = NewSuper::new(32 * MIB, 65536, 2)
        .partition("system", ATTR_READONLY, 2 * MIB, None)
        .partition("hole", 0, MIB, None)
        .build()
        .unwrap();
    let mut slot = m.to_bytes(&g).unwrap();
    let sha = |b: &[u8]| {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    };
    // Extent 1 (hole's) becomes ZERO: type 1, target data and source 0.
    let ext = 128 + 2 * 52 + 24;
    slot[ext + 8..ext + 24].copy_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let tables = sha(&slot[128..]);
    slot[48..80].copy_from_slice(&tables);
    slot[12..44].fill(0);
    let header = sha(&slot[..128]);
    slot[12..44].copy_from_slice(&header);
    let zero = Metadata::parse(&slot, &g).unwrap();
    let hole = zero.partition("hole").unwrap();
    assert_eq!(zero.extents_of(hole)[0].target, ExtentTarget::Zero);
    assert_eq!(zero.partition_size(hole), MIB);
    assert_eq!(zero.to_bytes(&g).unwrap(), slot);

    let dir = tempfile::tempdir().unwrap();
    let mut image = flash_image(&g, &zero).unwrap();
    image.resize(32 * MIB as usize, 0);
    let path = dir.path().join("super.img");
    std::fs::write(&path, &image).unwrap();
    let dump = lpdump(&path, 0);
    assert!(dump.contains("0 .. 2047 zero"), "{dump}");
    // (lpunpack refuses ZERO extents: "Unsupported target type in extent: 1".)
}

/// liblp itself placing the target partitions: `lpadd` (MetadataBuilder::New from the image's
/// metadata, AddPartition, ResizePartition, then writing every slot) adds `system_b` and
/// `vendor_b` to an lpmake image whose `main_b` group is empty. `prepare_target_on` with the
/// same sizes (on a device without second-half placement, as lpadd runs on the host) gives
/// the same metadata, byte for byte.
#[test]
fn prepare_target_allocates_as_liblp_lpadd() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--metadata-size",
        "65536",
        "--metadata-slots",
        "2",
        "--device-size",
        "67108864",
        "--group",
        "main_a:30000000",
        "--group",
        "main_b:30000000",
        "--partition",
        "system_a:readonly:10489856:main_a",
        "--partition",
        "vendor_a:readonly:3145728:main_a",
    ];
    let mut image = lpmake(dir.path(), &args);
    let (g, source) = parse_image(&image, 0);
    let path = dir.path().join("super.img");
    for (name, size) in [("system_b", 12583424u64), ("vendor_b", 2097152)] {
        let data = dir.path().join(format!("{name}.img"));
        std::fs::write(&data, pattern(size, 9)).unwrap();
        let args = [
            "--readonly",
            &path.display().to_string(),
            name,
            "main_b",
            &data.display().to_string(),
        ]
        .map(String::from);
        run("lpadd", &args);
    }
    image = std::fs::read(&path).unwrap();
    let (_, theirs) = parse_image(&image, 0);
    let groups = [DynamicGroup {
        name: "main".into(),
        size: 30000000,
        partitions: vec!["system".into(), "vendor".into()],
    }];
    let sizes = [
        ("system".to_string(), 12583424),
        ("vendor".to_string(), 2097152),
    ];
    let ours = prepare_target_on(&source, "_b", &groups, &sizes, true).unwrap();
    assert_eq!(ours, theirs);
    let blob = ours.to_bytes(&g).unwrap();
    let at = g.primary_offset(0).unwrap() as usize;
    assert_eq!(blob, image[at..at + blob.len()]);
}
