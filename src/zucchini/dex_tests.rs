//! The DEX disassembler on generated DEX files (`tests/dex_gen.py`, which Debian's `dexdump`
//! accepts): every one of the 42 reference types finds references, each writer puts back
//! exactly what its reader read, the instruction operands found agree with `dexdump -d`'s
//! disassembly, and readers over a window see exactly the references located in it.
//! Byte-exact apply against AOSP's zucchini is in `tests/zucchini_dex.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::dex::Dex;
use super::dex_refs::TYPE_COUNT;
use super::references::{Disassembler, Reference};

/// The checkout: cargo runs tests there and says so in `CARGO_MANIFEST_DIR` (read at run
/// time: Soong sets no cargo variables at build time).
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn generator() -> PathBuf {
    root().join("tests/dex_gen.py")
}

fn generate(dir: &Path, version: u32, build: u32) -> Vec<u8> {
    let out = dir.join(format!("t{version}-{build}.dex"));
    let status = Command::new("python3")
        .arg(generator())
        .arg(&out)
        .args([
            "--version",
            &version.to_string(),
            "--build",
            &build.to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn all(dex: &Dex, image: &[u8], group: usize, lo: u32, hi: u32) -> Vec<Reference> {
    let mut out = vec![];
    dex.references(image, group, lo, hi, &mut |r| {
        out.push(r);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn every_reference_type_reads_and_writes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let image = generate(tmp.path(), 39, 2);
    let dex = Dex::parse(&image).unwrap();
    assert_eq!(dex.size as usize, image.len());
    assert_eq!(dex.groups().len(), TYPE_COUNT);
    let mut pools: Vec<u8> = dex.groups().iter().map(|g| g.pool).collect();
    pools.dedup();
    assert_eq!(
        pools,
        (0..17).collect::<Vec<u8>>(),
        "types grouped by pool, in pool order"
    );
    let mut copy = image.clone();
    for group in 0..TYPE_COUNT {
        let refs = all(&dex, &image, group, 0, dex.size);
        assert!(!refs.is_empty(), "reference type {group} finds nothing");
        assert!(refs.windows(2).all(|w| w[0].location < w[1].location));
        // Clobber every reference, then write it back from (location, target).
        for r in &refs {
            copy[r.location as usize] ^= 0x5a;
            dex.write(&mut copy, group, *r).unwrap();
        }
        assert!(
            copy == image,
            "reference type {group}: the writer is not the reader's inverse"
        );
        // A window sees exactly the references located in it.
        let (lo, hi) = (
            refs[refs.len() / 3].location,
            refs[refs.len() * 2 / 3].location,
        );
        let window = all(&dex, &image, group, lo, hi);
        let expected: Vec<_> = refs
            .iter()
            .filter(|r| (lo..hi).contains(&r.location))
            .copied()
            .collect();
        assert_eq!(window, expected, "reference type {group} over {lo}..{hi}");
    }
}

#[test]
fn instruction_operands_agree_with_dexdump() {
    let tmp = tempfile::tempdir().unwrap();
    for version in [35, 39] {
        let image = generate(tmp.path(), version, 1);
        let dex = Dex::parse(&image).unwrap();
        let path = tmp.path().join(format!("t{version}-1.dex"));
        let dump = Command::new("dexdump")
            .arg("-d")
            .arg(&path)
            .output()
            .unwrap();
        assert!(dump.status.success());
        let text = String::from_utf8_lossy(&dump.stdout);
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        let refs = |groups: &[usize]| -> usize {
            groups
                .iter()
                .map(|&g| all(&dex, &image, g, 0, dex.size).len())
                .sum()
        };
        // Code types: const-string(/jumbo) 5, 6; types 14; protos 15; fields 17; methods 20;
        // call sites 24; method handles 25. dexdump prints one operand per instruction, but
        // invoke-polymorphic carries a method and a proto.
        assert_eq!(count("// string@"), refs(&[5, 6]), "DEX {version} strings");
        assert_eq!(count("// type@"), refs(&[14]), "DEX {version} types");
        assert_eq!(count("// field@"), refs(&[17]), "DEX {version} fields");
        assert_eq!(count("// method@"), refs(&[20]), "DEX {version} methods");
        assert_eq!(count("call_site@"), refs(&[24]), "DEX {version} call sites");
        assert_eq!(
            count("method_handle@"),
            refs(&[25]),
            "DEX {version} method handles"
        );
        assert_eq!(
            count("const-method-type") + count("invoke-polymorphic"),
            refs(&[15])
        );
        assert_eq!(
            count(": goto ") + count(": goto/16") + count(": if-"),
            refs(&[34, 35]),
            "DEX {version} branches"
        );
        assert_eq!(
            count("goto/32") + count("packed-switch v") + count("fill-array-data v"),
            refs(&[36])
        );
    }
}

#[test]
fn not_a_dex_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let image = generate(tmp.path(), 35, 1);
    assert!(
        Dex::parse(&image[..image.len() - 1]).is_none(),
        "file_size past the image"
    );
    // Magic, version 030, version 036, map_off inside the header.
    for (at, byte) in [(0, b'D'), (5, b'0'), (6, b'6'), (0x35, 0)] {
        let mut bad = image.clone();
        bad[at] = byte;
        assert!(Dex::parse(&bad).is_none(), "byte {at} = {byte}");
    }
    let mut bad = image.clone();
    bad[0x34..0x38].copy_from_slice(&0x10u32.to_le_bytes());
    assert!(Dex::parse(&bad).is_none(), "map inside the header");
    // A map item past the file.
    let map = u32::from_le_bytes(image[0x34..0x38].try_into().unwrap()) as usize;
    let mut bad = image.clone();
    bad[map + 4 + 8..map + 4 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Dex::parse(&bad).is_none());
}

/// `zucchini -read FILE -dump`: AOSP's disassembler's references, per type, as (location,
/// target).
fn aosp_dump(path: &Path) -> Vec<Vec<Reference>> {
    let shared =
        std::env::var_os("ABUPDATE_SHARED").map_or_else(|| root().join("../shared"), PathBuf::from);
    let tool = shared.join("tools/aosp-delta/bin/zucchini");
    let out = Command::new(tool)
        .arg("-read")
        .arg(path)
        .arg("-dump")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut types: Vec<Vec<Reference>> = vec![];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with("Type ") {
            types.push(vec![]);
        } else if let Some((l, t)) = line.trim().split_once(' ') {
            let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
            types.last_mut().unwrap().push(Reference {
                location: hex(l),
                target: hex(t),
            });
        }
    }
    types
}

#[test]
fn references_are_aosp_zucchinis() {
    let tmp = tempfile::tempdir().unwrap();
    for (version, build, classes) in [(35, 1, 12), (39, 2, 12), (35, 1, 600)] {
        let path = tmp.path().join(format!("r{version}-{build}-{classes}.dex"));
        let status = Command::new("python3")
            .arg(generator())
            .arg(&path)
            .args([
                "--version",
                &version.to_string(),
                "--build",
                &build.to_string(),
            ])
            .args(["--classes", &classes.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let image = std::fs::read(&path).unwrap();
        let dex = Dex::parse(&image).unwrap();
        let aosp = aosp_dump(&path);
        assert_eq!(aosp.len(), TYPE_COUNT);
        for (group, expected) in aosp.iter().enumerate() {
            let ours = all(&dex, &image, group, 0, dex.size);
            assert!(
                ours == *expected,
                "DEX {version} ({classes} classes) type {group}: {} references here, {} in AOSP",
                ours.len(),
                expected.len()
            );
        }
    }
}
