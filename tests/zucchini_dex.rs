//! ZUCCHINI patches of DEX files against AOSP's own zucchini (`../shared/tools/aosp-delta`):
//! two builds of a generated program (`tests/dex_gen.py`, DEX 035 and 039, checked by Debian's
//! `dexdump`), bare and inside a vdex-like container, patched by `zucchini -gen` and
//! `zucchini_op gen` into `DEX ` elements, apply here byte for byte as `zucchini -apply` does.

mod common;

use abupdate::zucchini::{self, ExeType, Patch, SortOrder};
use abupdate::ErrorCode;

#[test]
fn aosp_zucchini_patches_of_dex_files_apply_here() {
    let tmp = tempfile::tempdir().unwrap();
    for (version, classes, embed) in [
        (35, 12, false),
        (39, 12, false),
        (35, 150, false),
        (39, 120, true),
    ] {
        let name = format!(
            "DEX 0{version}, {classes} classes{}",
            if embed { ", embedded" } else { "" }
        );
        let (old, new) = common::zucchini::dex_pair(tmp.path(), version, classes, embed);
        let bytes = common::zucchini::gen(tmp.path(), &old, &new, &[]);
        let patch = Patch::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dex_elements = patch
            .elements
            .iter()
            .filter(|e| e.exe_type == ExeType::Executable(*b"DEX "))
            .count();
        assert_eq!(dex_elements, 1, "{name}: DEX elements");
        assert!(common::zucchini::aosp_apply(tmp.path(), &old, &bytes) == new);
        let out = zucchini::apply(&old, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out == new, "{name}: applied to different bytes");
        let blob = common::zucchini::op_blob(tmp.path(), &old, &new, "gen");
        let out =
            zucchini::apply_op(&old, &blob, new.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out == new,
            "{name}: the ZUCCHINI blob applied to different bytes"
        );
        eprintln!(
            "{name}: {} -> {} bytes, patch {} bytes, blob {} bytes",
            old.len(),
            new.len(),
            bytes.len(),
            blob.len()
        );
    }
}

#[test]
fn zucchini_operation_with_a_dex_element_applies_in_a_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = common::zucchini::dex_pair(tmp.path(), 39, 120, false);
    let (old, new) = (
        common::zucchini::padded(&old),
        common::zucchini::padded(&new),
    );
    let (result, target) = common::zucchini::apply_zucchini_payload(tmp.path(), &old, &new);
    result.unwrap();
    assert!(target == new);
}

/// Offset of the length of the first element's `index`th stream (0: source skips ... 6:
/// reference delta), after the 28 bytes of header and count and the 22-byte element header.
fn stream_at(patch: &[u8], index: usize) -> usize {
    let mut at = 28 + 22;
    for _ in 0..index {
        at += 4 + u32::from_le_bytes(patch[at..at + 4].try_into().unwrap()) as usize;
    }
    at
}

fn blob_of(patch: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
    w.write_all(patch).unwrap();
    drop(w);
    out
}

#[test]
fn tampered_dex_patches_fail_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = common::zucchini::dex_pair(tmp.path(), 35, 40, false);
    let (old, new) = (
        common::zucchini::padded(&old),
        common::zucchini::padded(&new),
    );
    let patch = common::zucchini::gen(tmp.path(), &old, &new, &[]);
    assert_eq!(&patch[44..48], b"DEX ");
    let reference_delta = stream_at(&patch, 6);
    let len = u32::from_le_bytes(
        patch[reference_delta..reference_delta + 4]
            .try_into()
            .unwrap(),
    );
    assert!(len > 0, "no reference delta");
    let mut cases: Vec<(&str, Vec<u8>)> = vec![];
    let mut far = patch.clone();
    far[reference_delta + 4] = 0x7e; // a delta of +63 pool entries
    cases.push(("reference delta moved", far));
    let mut cut = patch.clone();
    cut[reference_delta + 4 + len as usize - 1] |= 0x80; // the last varint unfinished
    cases.push(("reference delta cut", cut));
    let mut shifted = patch.clone();
    let copy_counts = stream_at(&patch, 2);
    shifted[copy_counts + 4] ^= 0x02; // the first equivalence two bytes longer or shorter
    cases.push(("equivalence length", shifted));
    let mut source = patch.clone();
    source[stream_at(&patch, 0) + 4] ^= 0x04; // the first equivalence copied from elsewhere
    cases.push(("equivalence source", source));
    for (name, bad) in cases {
        let e = match Patch::parse(&bad) {
            Err(e) => e,
            Ok(p) => zucchini::apply(&old, &p).unwrap_err(),
        };
        assert!(
            matches!(e.code, ErrorCode::MalformedPayload | ErrorCode::PayloadHash),
            "{name}: {e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let (result, target) =
            common::zucchini::apply_blob_payload(dir.path(), &old, &new, blob_of(&bad));
        let e2 = result.unwrap_err();
        assert_eq!(e2.code, e.code, "{name}: {e2}");
        assert!(
            target.iter().all(|&b| b == 0),
            "{name}: the target was written"
        );
        eprintln!("{name}: {:?} ({})", e.code, e.code as u32);
    }
}

/// The size win: AOSP's ZUCCHINI blob with the DEX disassembler against Zucchini's raw
/// matching (`zucchini_op raw-gen`) and AOSP's BSDF2 bsdiff with brotli (BROTLI_BSDIFF).
#[test]
fn dex_patches_are_smaller_than_raw_and_bsdiff_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = common::zucchini::dex_pair(tmp.path(), 35, 600, false);
    let dex = common::zucchini::op_blob(tmp.path(), &old, &new, "gen");
    let raw = common::zucchini::op_blob(tmp.path(), &old, &new, "raw-gen");
    let (o, n, p) = (
        tmp.path().join("bo"),
        tmp.path().join("bn"),
        tmp.path().join("bp"),
    );
    std::fs::write(&o, &old).unwrap();
    std::fs::write(&n, &new).unwrap();
    let status = std::process::Command::new(common::shared::aosp_delta_tool("bsdiff"))
        .args(["--format=bsdf2", "--type=brotli"])
        .args([&o, &n, &p])
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let bsdiff = std::fs::metadata(&p).unwrap().len() as usize;
    assert!(zucchini::apply_op(&old, &dex, new.len()).unwrap() == new);
    eprintln!(
        "DEX {} -> {} bytes: ZUCCHINI blob {} bytes (DEX elements), {} (raw matching), BROTLI_BSDIFF {}",
        old.len(),
        new.len(),
        dex.len(),
        raw.len(),
        bsdiff
    );
    assert!(dex.len() < raw.len() && dex.len() < bsdiff);
}

/// A wider sweep (DEX 035-039, 3 to 900 classes, bare and embedded), run by hand:
/// `cargo test --test zucchini_dex sweep -- --ignored`.
#[test]
#[ignore = "a sweep; run by hand"]
fn sweep_dex_patches() {
    let tmp = tempfile::tempdir().unwrap();
    for version in [35, 37, 38, 39] {
        for classes in [3, 30, 77, 200, 400, 900] {
            for embed in [false, true] {
                let name = format!("DEX 0{version}, {classes} classes, embedded {embed}");
                let (old, new) = common::zucchini::dex_pair(tmp.path(), version, classes, embed);
                let bytes = common::zucchini::gen(tmp.path(), &old, &new, &[]);
                let patch = Patch::parse(&bytes).unwrap();
                let out = zucchini::apply(&old, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(out == new, "{name}: applied to different bytes");
                eprintln!("{name}: ok, patch {} bytes", bytes.len());
            }
        }
    }
}

/// AOSP's `zucchini` here is built with g++, so its patches break equal-source ties in
/// libstdc++'s `std::sort` order. Where libc++'s order (tried first, as AOSP's clang builds
/// make real patches) prunes the equivalences differently, reference correction in that
/// order misses and `apply` must redo the patch in libstdc++'s order.
#[test]
fn libstdcxx_ordered_patches_apply_through_the_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fallbacks = 0;
    for (version, classes) in [(35, 600), (39, 400), (35, 200)] {
        let name = format!("DEX 0{version}, {classes} classes");
        let (old, new) = common::zucchini::dex_pair(tmp.path(), version, classes, false);
        let bytes = common::zucchini::gen(tmp.path(), &old, &new, &[]);
        let patch = Patch::parse(&bytes).unwrap();
        let gnu = zucchini::apply_in_order(&old, &patch, SortOrder::Libstdcxx);
        assert!(gnu.unwrap() == new, "{name}: libstdc++ order");
        let out = zucchini::apply(&old, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out == new, "{name}: applied to different bytes");
        match zucchini::apply_in_order(&old, &patch, SortOrder::Libcxx) {
            Ok(out) => {
                assert!(out == new, "{name}: libc++ order");
                eprintln!("{name}: both orders apply");
            }
            Err(e) => {
                assert!(
                    matches!(e.code, ErrorCode::PayloadHash | ErrorCode::MalformedPayload),
                    "{name}: {e}"
                );
                eprintln!("{name}: libc++ order fails ({e}); applied by the fallback");
                fallbacks += 1;
            }
        }
    }
    assert!(fallbacks > 0, "no patch took the fallback");
}

/// The other side, run by hand: with `ABUPDATE_SHARED` naming a tree whose
/// `tools/aosp-delta/bin/zucchini` is AOSP's zucchini built with `clang++ -stdlib=libc++`
/// (the aosp-delta Makefile with `CXX="clang++-19 -stdlib=libc++"`), its patches apply in
/// libc++'s order directly, and some of them fail in libstdc++'s order.
/// `cargo test --test zucchini_dex libcxx_ordered -- --ignored`.
#[test]
#[ignore = "needs a libc++-built AOSP zucchini; run by hand"]
fn libcxx_ordered_patches_apply_in_libcxx_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gnu_fails = 0;
    for (version, classes) in [(35, 600), (39, 400), (35, 200), (38, 900), (39, 77)] {
        let name = format!("DEX 0{version}, {classes} classes");
        let (old, new) = common::zucchini::dex_pair(tmp.path(), version, classes, false);
        let bytes = common::zucchini::gen(tmp.path(), &old, &new, &[]);
        let patch = Patch::parse(&bytes).unwrap();
        let llvm = zucchini::apply_in_order(&old, &patch, SortOrder::Libcxx);
        assert!(llvm.unwrap() == new, "{name}: libc++ order");
        assert!(zucchini::apply(&old, &patch).unwrap() == new, "{name}");
        if let Err(e) = zucchini::apply_in_order(&old, &patch, SortOrder::Libstdcxx) {
            eprintln!("{name}: libstdc++ order fails ({e})");
            gnu_fails += 1;
        }
    }
    assert!(gnu_fails > 0, "no patch depends on libc++'s order");
}
