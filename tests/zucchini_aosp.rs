//! ZUCCHINI against AOSP's own zucchini (external/zucchini, built in
//! `../shared/tools/aosp-delta`): patches its `zucchini -gen` makes from raw firmware-like data
//! apply here byte-exactly, and so do the ZUCCHINI operation blobs of `zucchini_op gen`
//! (update_engine's generator: brotli of the patch), standalone and as the operation of a
//! payload applied end to end. ELF binaries (`ls`/`dir`, and two gcc builds of a generated
//! program) get x86-64 ELF elements, whose references are corrected here as AOSP does; element
//! types without a disassembler here (Windows) fail with 32 and leave the target unwritten. DEX
//! elements are in `tests/zucchini_dex.rs`.

mod common;

use std::path::Path;

use abupdate::zucchini::{self, ExeType, Patch};
use abupdate::ErrorCode;
use common::Rng;

fn pairs() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut rng = Rng(0x2cc0_0000_0000_0001);
    [64 << 10, 256 << 10, 700 << 10]
        .into_iter()
        .map(|len| {
            let (old, new) = common::zucchini::raw_pair(&mut rng, len);
            (format!("raw {len}"), old, new)
        })
        .collect()
}

#[test]
fn aosp_zucchini_patches_of_raw_data_apply_here() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, old, new) in pairs() {
        for flags in [&[][..], &["-raw"][..]] {
            let bytes = common::zucchini::gen(tmp.path(), &old, &new, flags);
            let patch = Patch::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(patch.elements.iter().all(|e| e.exe_type == ExeType::NoOp));
            let out = zucchini::apply(&old, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(out == new, "{name} {flags:?}: applied to different bytes");
            eprintln!("{name} {flags:?}: patch {} bytes", bytes.len());
        }
        let blob = common::zucchini::op_blob(tmp.path(), &old, &new, "gen");
        let out = zucchini::apply_op(&old, &blob, new.len()).unwrap();
        assert!(
            out == new,
            "{name}: the ZUCCHINI blob applied to different bytes"
        );
        // The blob's patch is for this source only.
        let mut other = old.clone();
        other[100] ^= 0xff;
        let e = zucchini::apply_op(&other, &blob, new.len()).unwrap_err();
        assert_eq!(e.code, ErrorCode::SourceHash, "{e}");
        eprintln!("{name}: ZUCCHINI blob {} bytes", blob.len());
    }
}

/// Two builds of one program: `/usr/bin/ls` and `/usr/bin/dir` (coreutils builds them from one
/// source with one default changed).
fn elf_pair() -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read("/usr/bin/ls").unwrap(),
        std::fs::read("/usr/bin/dir").unwrap(),
    )
}

/// AOSP's patch from `old` to `new` has elements of type `tag` and applies here byte-exactly,
/// both as `zucchini -gen` writes it and as `zucchini_op gen`'s ZUCCHINI blob.
fn assert_elf_pair_applies(dir: &Path, name: &str, old: &[u8], new: &[u8], tag: &[u8; 4]) {
    let bytes = common::zucchini::gen(dir, old, new, &[]);
    let patch = Patch::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        patch
            .elements
            .iter()
            .any(|e| e.exe_type == ExeType::Executable(*tag)),
        "{name}: no {tag:?} element"
    );
    let out = zucchini::apply(old, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(out == new, "{name}: applied to different bytes");
    let blob = common::zucchini::op_blob(dir, old, new, "gen");
    let out = zucchini::apply_op(old, &blob, new.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
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

#[test]
fn aosp_zucchini_patches_of_x86_64_elf_binaries_apply_here() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = elf_pair();
    assert_elf_pair_applies(tmp.path(), "ls -> dir", &old, &new, b"Ex64");
    // A PIE (Debian's default): relocated pointers as well as calls and RIP-relative operands.
    let (old, new) = common::zucchini::gcc_pair(tmp.path(), 120, &[]);
    assert_elf_pair_applies(tmp.path(), "gcc PIE", &old, &new, b"Ex64");
}

#[test]
fn aosp_zucchini_operation_applies_in_a_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, old, new) = pairs().swap_remove(1);
    let (result, target) = common::zucchini::apply_zucchini_payload(tmp.path(), &old, &new);
    result.unwrap();
    assert!(target == new);
}

/// Two builds of a generated AArch64 library, built once for the tests that use it.
fn aarch64_pair() -> &'static (Vec<u8>, Vec<u8>) {
    type Pair = (Vec<u8>, Vec<u8>);
    static PAIR: std::sync::OnceLock<(tempfile::TempDir, Pair)> = std::sync::OnceLock::new();
    let (_, pair) = PAIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pair = common::zucchini::llvm_pair(dir.path(), "aarch64-linux-gnu", 60);
        (dir, pair)
    });
    pair
}

#[test]
fn aosp_zucchini_patches_of_arm_and_x86_elf_libraries_apply_here() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = aarch64_pair();
    assert_elf_pair_applies(tmp.path(), "aarch64", old, new, b"EA64");
    for (triple, tag) in [
        ("armv7a-linux-gnueabihf", b"EA32"),
        ("thumbv7a-linux-gnueabihf", b"EA32"),
        ("i686-linux-gnu", b"Ex86"),
    ] {
        let (old, new) = common::zucchini::llvm_pair(tmp.path(), triple, 60);
        assert_elf_pair_applies(tmp.path(), triple, &old, &new, tag);
    }
}

#[test]
fn zucchini_operation_with_elf_elements_applies_in_a_payload() {
    let tmp = tempfile::tempdir().unwrap();
    // The Android case: AArch64 code.
    let (old, new) = aarch64_pair();
    let (old, new) = (common::zucchini::padded(old), common::zucchini::padded(new));
    let (result, target) = common::zucchini::apply_zucchini_payload(tmp.path(), &old, &new);
    result.unwrap();
    assert!(target == new);
}

/// `blob` (brotli of a patch) with its first element's type replaced by `tag`.
fn retagged(blob: &[u8], tag: &[u8; 4]) -> Vec<u8> {
    use std::io::Write;
    let mut patch = Vec::new();
    brotli::BrotliDecompress(&mut &blob[..], &mut patch).unwrap();
    // 24-byte header, element count, then the first element: 4 words, its type.
    assert_eq!(&patch[44..48], b"Ex64");
    patch[44..48].copy_from_slice(tag);
    let mut out = Vec::new();
    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
    w.write_all(&patch).unwrap();
    drop(w);
    out
}

#[test]
fn zucchini_operation_with_an_unsupported_element_fails_32_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = elf_pair();
    let (old, new) = (
        common::zucchini::padded(&old),
        common::zucchini::padded(&new),
    );
    let blob = common::zucchini::op_blob(tmp.path(), &old, &new, "gen");
    // Windows elements have no disassembler here (AOSP does not build one); an ELF element
    // retagged DEX is not a DEX file, which the DEX disassembler refuses as malformed.
    for (tag, code) in [
        (b"Px86", ErrorCode::Unsupported),
        (b"DEX ", ErrorCode::MalformedPayload),
    ] {
        let blob = retagged(&blob, tag);
        let e = zucchini::apply_op(&old, &blob, new.len()).unwrap_err();
        assert_eq!(e.code, code, "{e}");
        let dir = tempfile::tempdir().unwrap();
        let (result, target) = common::zucchini::apply_blob_payload(dir.path(), &old, &new, blob);
        let e = result.unwrap_err();
        assert_eq!(e.code, code, "{e}");
        assert!(target.iter().all(|&b| b == 0), "the target was written");
    }
}
