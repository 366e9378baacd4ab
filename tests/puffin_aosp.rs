//! PUFFDIFF against AOSP's own `puffin` (external/puffin, built in
//! `../shared/tools/aosp-delta`): our puffed streams are byte-identical to its `puff`
//! operation's, its `puffdiff` patches apply here byte-exactly (standalone and as a PUFFDIFF
//! operation of a payload applied end to end), and its `puffpatch` applies ours. Inputs are
//! APK-like zips from python's zipfile (zlib levels 1, 6, 9) and Info-ZIP's `zip`, and gzip
//! files (`tests/data/puffin/make_inputs.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::puffin::{self, locate, Limits};

fn shared() -> PathBuf {
    std::env::var_os("ABUPDATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// AOSP's `puffin`; the test fails (not skips) without it.
fn puffin_tool() -> PathBuf {
    let p = shared().join("tools/aosp-delta/bin/puffin");
    assert!(p.is_file(), "AOSP puffin missing at {}", p.display());
    p
}

fn run_puffin(args: &[String]) {
    let out = Command::new(puffin_tool()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "puffin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The old/new pairs: (path of old, path of new).
fn inputs(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/puffin/make_inputs.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(dir)
        .arg("infozip")
        .status()
        .expect("python3");
    assert!(status.success());
    [
        "py6.zip",
        "py9.zip",
        "py1.zip",
        "gz9.gz",
        "gz1.gz",
        "infozip.zip",
    ]
    .iter()
    .map(|n| {
        let (stem, ext) = n.split_once('.').unwrap();
        (
            dir.join(format!("{stem}.old.{ext}")),
            dir.join(format!("{stem}.new.{ext}")),
        )
    })
    .collect()
}

fn blocks(path: &Path, data: &[u8]) -> Vec<puffin::BitExtent> {
    if path.extension().unwrap() == "gz" {
        locate::gzip(data)
    } else {
        locate::zip(data)
    }
}

fn arg(k: &str, p: &Path) -> String {
    format!("--{k}={}", p.display())
}

#[test]
fn puffed_streams_match_aosp_puff() {
    let tmp = tempfile::tempdir().unwrap();
    for (old, new) in inputs(tmp.path()) {
        for file in [old, new] {
            let data = std::fs::read(&file).unwrap();
            let found = blocks(&file, &data);
            assert!(
                found.len() >= 2,
                "{}: {} blocks",
                file.display(),
                found.len()
            );
            let info = puffin::stream_info(&data, &found).unwrap();
            let ours = puffin::puff_stream(&data, &info, u64::MAX).unwrap();
            let theirs_path = tmp.path().join("puffed");
            let _ = std::fs::remove_file(&theirs_path);
            run_puffin(&[
                "--operation=puff".into(),
                arg("src_file", &file),
                arg("dst_file", &theirs_path),
            ]);
            let theirs = std::fs::read(&theirs_path).unwrap();
            assert!(ours == theirs, "{}: puffed streams differ", file.display());
            assert_eq!(
                puffin::huff_stream(&ours, &info, data.len()).unwrap(),
                data,
                "{}",
                file.display()
            );
        }
    }
}

#[test]
fn aosp_puffdiff_applies_here_and_ours_with_aosp_puffpatch() {
    let tmp = tempfile::tempdir().unwrap();
    for (old, new) in inputs(tmp.path()) {
        let (src, dst) = (std::fs::read(&old).unwrap(), std::fs::read(&new).unwrap());
        let name = old.display().to_string();

        // AOSP's patch, applied here.
        let patch_path = tmp.path().join("aosp.puffdiff");
        // puffin opens its outputs without truncating them.
        let _ = std::fs::remove_file(&patch_path);
        run_puffin(&[
            "--operation=puffdiff".into(),
            arg("src_file", &old),
            arg("dst_file", &new),
            arg("patch_file", &patch_path),
        ]);
        let aosp_patch = std::fs::read(&patch_path).unwrap();
        let out = puffin::apply(&src, &aosp_patch, dst.len(), Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out == dst, "{name}: AOSP patch applied to different bytes");

        // Our patch, applied by AOSP.
        let ours = puffin::make(&src, &dst, &blocks(&old, &src), &blocks(&new, &dst)).unwrap();
        let ours_path = tmp.path().join("ours.puffdiff");
        std::fs::write(&ours_path, &ours).unwrap();
        let out_path = tmp.path().join("out");
        let _ = std::fs::remove_file(&out_path);
        run_puffin(&[
            "--operation=puffpatch".into(),
            arg("src_file", &old),
            arg("dst_file", &out_path),
            arg("patch_file", &ours_path),
        ]);
        assert!(
            std::fs::read(&out_path).unwrap() == dst,
            "{name}: AOSP puffpatch made different bytes from our patch"
        );
        // Both shrink the change to far below the compressed files' size.
        eprintln!(
            "{name}: {} bytes new, AOSP patch {}, ours {}",
            dst.len(),
            aosp_patch.len(),
            ours.len()
        );
        assert!(
            ours.len() * 4 < dst.len(),
            "{name}: our patch {} bytes",
            ours.len()
        );
    }
}

#[test]
fn aosp_puffdiff_with_a_zucchini_inner_patch_applies_here() {
    let tmp = tempfile::tempdir().unwrap();
    for (old, new) in inputs(tmp.path()).into_iter().take(4) {
        let (src, dst) = (std::fs::read(&old).unwrap(), std::fs::read(&new).unwrap());
        let patch_path = tmp.path().join("aosp-zucchini.puffdiff");
        let _ = std::fs::remove_file(&patch_path);
        run_puffin(&[
            "--operation=puffdiff".into(),
            "--patch_algorithm=1".into(),
            arg("src_file", &old),
            arg("dst_file", &new),
            arg("patch_file", &patch_path),
        ]);
        let patch = std::fs::read(&patch_path).unwrap();
        assert_eq!(
            puffin::Patch::parse(&patch).unwrap().inner,
            puffin::Inner::Zucchini
        );
        let out = puffin::apply(&src, &patch, dst.len(), Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{}: {e}", old.display()));
        assert!(out == dst, "{}: applied to different bytes", old.display());
    }
}

/// `data` padded with zeros to whole 4096-byte blocks, at least `len` bytes.
fn padded(data: &[u8], len: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(len.max(data.len()).next_multiple_of(4096), 0);
    out
}

#[test]
fn aosp_puffdiff_operation_applies_in_a_payload() {
    use abupdate::payload::proto::update_metadata::install_operation::Type;
    use abupdate::payload::proto::update_metadata::{Extent, InstallOperation};

    let tmp = tempfile::tempdir().unwrap();
    let pairs = inputs(&tmp.path().join("in"));
    let (old_zip, new_zip) = &pairs[0];
    let (old_raw, new_raw) = (
        std::fs::read(old_zip).unwrap(),
        std::fs::read(new_zip).unwrap(),
    );
    let len = old_raw.len().max(new_raw.len()) + 3 * 4096;
    let (old, new) = (padded(&old_raw, len), padded(&new_raw, len));
    // puffin finds the deflates by the file name's extension.
    let (old_img, new_img) = (tmp.path().join("old.zip"), tmp.path().join("new.zip"));
    std::fs::write(&old_img, &old).unwrap();
    std::fs::write(&new_img, &new).unwrap();
    let patch_path = tmp.path().join("op.puffdiff");
    run_puffin(&[
        "--operation=puffdiff".into(),
        arg("src_file", &old_img),
        arg("dst_file", &new_img),
        arg("patch_file", &patch_path),
    ]);
    let patch = std::fs::read(&patch_path).unwrap();

    // A delta payload from our builder, its `system` operations replaced by the one
    // PUFFDIFF operation AOSP's generator would write for the whole image.
    let payload_path = tmp.path().join("payload.bin");
    common::build_payload(
        &payload_path,
        &[("system", new_img.clone(), Some(old_img.clone()))],
    );
    let mut forge = common::forge::Forge::read(&payload_path);
    let blocks = (new.len() / 4096) as u64;
    forge.edit(|m| {
        let mut op = InstallOperation::new();
        op.set_type(Type::PUFFDIFF);
        let mut e = Extent::new();
        e.set_start_block(0);
        e.set_num_blocks(blocks);
        op.src_extents.push(e.clone());
        op.dst_extents.push(e);
        op.set_src_sha256_hash(common::forge::sha256(&old).to_vec());
        m.partitions[0].operations = vec![op];
    });
    forge.edit_ops(|_, _, op, blob| {
        assert_eq!(op.type_(), Type::PUFFDIFF);
        *blob = patch.clone();
    });
    std::fs::write(&payload_path, forge.to_bytes()).unwrap();

    let (result, target) = common::apply_to_system(tmp.path(), &payload_path, &old, new.len());
    assert_eq!(
        result.unwrap().metadata.manifest.partitions[0]
            .operations
            .len(),
        1
    );
    assert!(target == new);
}

/// A stored block that follows a block ending at bit 1 or 2 of a byte skips 6 or 7 padding
/// bits, and puffin (`puffer.cc`: `block_header |= skipped_bits`) ORs them into the puff's
/// block header, over its type bits: set padding bits (never from zlib, which pads with zeros;
/// the fuzzer's `puff_decode` found this input) make a puff that no huffer takes back. Ours
/// puffs it byte for byte as AOSP's does, and both huffers refuse it, ours with 21.
#[test]
fn stored_block_padding_in_the_header_puffs_as_aosp_and_huffs_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data: &[u8] = &[
        0x4b, 0x02, 0xc4, 0x01, 0x00, 0xfe, 0xff, 0x4b, 0x02, 0xc4, 0x01, 0x00, 0xfe, 0xff, 0xb9,
        0x02, 0x01, 0x00, 0xc4, 0x01, 0x00, 0xfe, 0xff, 0xb9, 0x02, 0xc4, 0x01, 0x00, 0xfe, 0xff,
        0xb9,
    ];
    let input = tmp.path().join("in.deflate");
    std::fs::write(&input, data).unwrap();
    let ours = puffin::puff(data, 1 << 20).unwrap();
    let theirs_path = tmp.path().join("puffed");
    run_puffin(&[
        "--operation=puff".into(),
        arg("src_file", &input),
        arg("dst_file", &theirs_path),
        "--src_file_type=raw".into(),
        format!("--src_deflates_bit=0:{}", data.len() * 8),
    ]);
    let theirs = std::fs::read(&theirs_path).unwrap();
    assert!(
        ours == theirs,
        "puffed streams differ: {ours:02x?} / {theirs:02x?}"
    );
    let err = puffin::huff(&ours, 1 << 20).unwrap_err();
    assert_eq!(err.code.as_i32(), 21, "{err}");
    let out = Command::new(puffin_tool())
        .args([
            "--operation=huff".into(),
            arg("src_file", &theirs_path),
            arg("dst_file", &tmp.path().join("huffed")),
            format!("--src_puffs=0:{}", theirs.len()),
            format!("--dst_deflates_bit=0:{}", data.len() * 8),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "AOSP's huffer took it");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid block compression type: 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
