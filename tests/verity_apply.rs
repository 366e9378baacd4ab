//! End to end: a delta payload whose manifest carries verity fields leaves the hash tree and FEC
//! to the device; the engine computes them, and `veritysetup` agrees with every byte and accepts
//! the written partition. FEC is then shown to repair a corrupted copy with `reedsolo`.

mod common;

use std::path::Path;
use std::process::Command;

use abupdate::boot_control::MiscBootControl;
use abupdate::build::avb_image::add_hashtree_footer;
use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::engine::Quiet;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::verity::FecRoots;
use common::veritysetup::{hex, run, run_veritysetup, veritysetup_format};

const SALT: &[u8] = b"abupdate verity end-to-end salt!";
const PARTITION: u64 = 3 << 20;
const DATA_BLOCKS: usize = 512;

/// A device on slot A holding `old`, and a delta to `new`; returns the built manifest.
fn apply_delta(
    dir: &Path,
    old: &[u8],
    new: &[u8],
    append_verity: bool,
) -> abupdate::payload::Manifest {
    let dev = dir.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("system_a.img"), old).unwrap();
    common::put_image(&dev, "system", 'b', &[], PARTITION);
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
    std::fs::write(dir.join("old.img"), old).unwrap();
    std::fs::write(dir.join("new.img"), new).unwrap();
    let spec = PartitionSpec {
        name: "system".into(),
        new: dir.join("new.img"),
        old: Some(dir.join("old.img")),
        append_verity,
    };
    let options = BuildOptions {
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        ..Default::default()
    };
    let report = build::build(&[spec], &options, &dir.join("delta.bin")).unwrap();
    let updater = Updater::open_host(&dev, &HostOptions::default()).unwrap();
    updater
        .apply(
            &mut Source::file(&dir.join("delta.bin")).unwrap(),
            &common::unsigned_options(),
            &Quiet,
        )
        .unwrap();
    report.manifest
}

fn data(seed: u64) -> Vec<u8> {
    common::mixed_image(&mut common::Rng(seed), DATA_BLOCKS)
}

#[test]
fn device_computes_tree_and_fec_identical_to_veritysetup() {
    let tmp = tempfile::tempdir().unwrap();
    let (old_data, mut new_data) = (data(11), data(11));
    new_data[100 * 4096..101 * 4096].fill(7);
    let roots = FecRoots::new(2).unwrap();
    let (old, _) = add_hashtree_footer(&old_data, PARTITION, "system", SALT, roots).unwrap();
    let (new, desc) = add_hashtree_footer(&new_data, PARTITION, "system", SALT, roots).unwrap();
    let manifest = apply_delta(tmp.path(), &old, &new, false);

    // The payload left the tree and FEC to the device: no operation writes those blocks.
    let part = &manifest.partitions[0];
    let layout = part
        .verity
        .as_ref()
        .expect("verity fields from the AVB footer");
    let fec = layout.fec.as_ref().expect("FEC fields");
    let computed = layout.hash_tree.start_block..fec.fec.end_block();
    for op in &part.operations {
        for e in &op.dst_extents {
            let overlaps = e.start_block < computed.end && computed.start < e.end_block();
            assert!(!overlaps, "{:?} writes verity blocks {e:?}", op.kind);
        }
    }

    let written = std::fs::read(tmp.path().join("dev/system_b.img")).unwrap();
    assert!(
        written == new,
        "written partition differs from the new image"
    );
    let oracle = veritysetup_format(
        tmp.path(),
        &new_data,
        abupdate::verity::HashAlgorithm::Sha256,
        SALT,
        4096,
        Some(2),
    );
    assert_eq!(oracle.root, desc.root_digest);
    let tree_at = layout.hash_tree.byte_offset() as usize;
    assert!(
        written[tree_at..tree_at + oracle.tree.len()] == oracle.tree[..],
        "tree differs from veritysetup's"
    );
    let fec_at = fec.fec.byte_offset() as usize;
    assert!(
        written[fec_at..fec_at + oracle.fec.len()] == oracle.fec[..],
        "FEC differs from veritysetup's"
    );

    // veritysetup accepts the partition as written, FEC included.
    let path = tmp.path().join("dev/system_b.img");
    let path = path.to_str().unwrap();
    run_veritysetup(&[
        "verify",
        path,
        path,
        &hex(&desc.root_digest),
        "--no-superblock",
        "--format=1",
        "--hash=sha256",
        &format!("--data-blocks={DATA_BLOCKS}"),
        &format!("--hash-offset={tree_at}"),
        &format!("--salt={}", hex(SALT)),
        &format!("--fec-device={path}"),
        &format!("--fec-offset={fec_at}"),
        "--fec-roots=2",
    ]);

    // FEC repairs: spoil one symbol in each of a few codewords of a copy, decode with reedsolo.
    let input = &written[..fec_at];
    let stripe = oracle.fec.len() / 2;
    let mut spoiled = input.to_vec();
    let codewords = [0usize, 5, stripe / 2, stripe - 1];
    for (i, &c) in codewords.iter().enumerate() {
        let offset = c + (i * 37 % 200) * stripe;
        spoiled[offset] ^= 0xa5;
    }
    let (in_path, fec_path, out_path) = (
        tmp.path().join("spoiled"),
        tmp.path().join("fec"),
        tmp.path().join("repaired"),
    );
    std::fs::write(&in_path, &spoiled).unwrap();
    std::fs::write(&fec_path, &written[fec_at..fec_at + oracle.fec.len()]).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fec_decode.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(&in_path)
        .arg(&fec_path)
        .arg("2")
        .arg(&out_path);
    cmd.args(codewords.iter().map(|c| c.to_string()));
    let out = run(&mut cmd);
    assert_eq!(
        out.lines().filter(|l| l.ends_with("corrected 1")).count(),
        codewords.len(),
        "{out}"
    );
    assert!(
        std::fs::read(&out_path).unwrap() == input,
        "reedsolo did not restore the partition"
    );
}

#[test]
fn appended_verity_without_a_footer() {
    let tmp = tempfile::tempdir().unwrap();
    let old = data(21);
    let mut new = data(21);
    new[3 * 4096] ^= 1;
    let manifest = apply_delta(tmp.path(), &old, &new, true);
    let part = &manifest.partitions[0];
    let layout = part
        .verity
        .as_ref()
        .expect("verity fields for --append-verity");
    let fec = layout.fec.as_ref().unwrap();
    let written = std::fs::read(tmp.path().join("dev/system_b.img")).unwrap();
    let oracle = veritysetup_format(
        tmp.path(),
        &new,
        abupdate::verity::HashAlgorithm::Sha256,
        &layout.salt,
        4096,
        Some(2),
    );
    let tree_at = layout.hash_tree.byte_offset() as usize;
    assert_eq!(tree_at, new.len(), "tree right after the data");
    assert!(written[..tree_at] == new[..]);
    assert!(written[tree_at..tree_at + oracle.tree.len()] == oracle.tree[..]);
    let fec_at = fec.fec.byte_offset() as usize;
    assert!(written[fec_at..fec_at + oracle.fec.len()] == oracle.fec[..]);
}
