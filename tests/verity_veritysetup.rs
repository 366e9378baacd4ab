//! The verity module against real tools: `veritysetup` (Debian cryptsetup-bin) as the oracle
//! for hash trees and FEC, `reedsolo` (PyPI) as an independent FEC decoder. Both must be
//! installed; these tests fail without them.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use abupdate::device::verity_image::{build_image, verify_image, write_image};
use abupdate::verity::VerityLayout;
use abupdate::verity::{
    fec_size, hash_tree_size, FecEncoder, FecRoots, HashAlgorithm, HashTreeBuilder,
};
use abupdate::ErrorCode;
use common::veritysetup::{hex, run, run_veritysetup, veritysetup_format};

mod common;

const ALGS: [HashAlgorithm; 3] = [
    HashAlgorithm::Sha1,
    HashAlgorithm::Sha256,
    HashAlgorithm::Sha512,
];
const SALT: &[u8] = b"\x5e\xed\x00\x11abupdate verity salt, 32 bytes!";

#[test]
fn tree_matches_veritysetup_small() {
    let dir = tempfile::tempdir().unwrap();
    for blocks in [1u64, 2, 127, 128, 129] {
        let data = random_bytes(blocks * 4096, blocks);
        for alg in ALGS {
            for salt in [&[][..], SALT] {
                check_tree(dir.path(), &data, alg, salt, 4096);
            }
        }
    }
}

#[test]
fn tree_matches_veritysetup_large() {
    let dir = tempfile::tempdir().unwrap();
    // 4096 blocks fill two levels exactly for SHA-256; 16513 = 128 * 129 + 1 needs a third.
    let data = random_bytes(4096 * 4096, 1);
    check_tree(dir.path(), &data, HashAlgorithm::Sha256, SALT, 4096);
    check_tree(dir.path(), &data, HashAlgorithm::Sha1, &[], 4096);
    let data = random_bytes(16513 * 4096, 2);
    for alg in ALGS {
        check_tree(dir.path(), &data, alg, SALT, 4096);
    }
}

#[test]
fn tree_matches_veritysetup_other_block_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(3 << 20, 3);
    check_tree(dir.path(), &data, HashAlgorithm::Sha256, SALT, 512);
    check_tree(dir.path(), &data, HashAlgorithm::Sha512, &[], 1024);
}

#[test]
fn fec_matches_veritysetup() {
    let dir = tempfile::tempdir().unwrap();
    for (roots, blocks) in [(2u32, 1000u64), (8, 700), (24, 300)] {
        let data = random_bytes(blocks * 4096, roots.into());
        let out = veritysetup_format(
            dir.path(),
            &data,
            HashAlgorithm::Sha256,
            SALT,
            4096,
            Some(roots),
        );
        let roots = FecRoots::new(roots).unwrap();
        let input = [data.as_slice(), &out.tree].concat();
        assert_eq!(out.fec.len() as u64, fec_size(input.len() as u64, roots));
        let mut enc = FecEncoder::new(input.len() as u64, roots).unwrap();
        input.chunks(123_457).for_each(|c| enc.update(c).unwrap());
        assert_eq!(enc.finish().unwrap(), out.fec, "roots {}", roots.get());
    }
}

/// One image holding data, tree and FEC, as avbtool lays it out: our build matches
/// veritysetup's, `veritysetup verify` accepts ours, and `verify_image` names corruption.
#[test]
fn image_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(600 * 4096, 4);
    let out = veritysetup_format(
        dir.path(),
        &data,
        HashAlgorithm::Sha512,
        SALT,
        4096,
        Some(2),
    );
    let layout = VerityLayout {
        fec_roots: Some(FecRoots::DEFAULT),
        ..VerityLayout::new(HashAlgorithm::Sha512, SALT, data.len() as u64)
    };
    let path = dir.path().join("image");
    fs::write(&path, &data).unwrap();
    let image = File::options().read(true).write(true).open(&path).unwrap();
    image.set_len(layout.end().unwrap()).unwrap();

    let built = build_image(&image, &layout).unwrap();
    assert_eq!(
        (&built.root_digest, &built.tree, &built.fec),
        (&out.root, &out.tree, &out.fec)
    );
    write_image(&image, &layout, &built).unwrap();
    assert_eq!(
        verify_image(&image, &layout, Some(&out.root)).unwrap(),
        built
    );
    let tree_offset = layout.tree_offset.to_string();
    let fec_offset = layout.fec_offset().unwrap().to_string();
    let path_str = path.to_str().unwrap();
    #[rustfmt::skip]
    run_veritysetup(&[
        "verify", path_str, path_str, &hex(&out.root), "--no-superblock", "--format=1",
        "--hash=sha512", "--data-blocks=600", "--hash-offset", &tree_offset, "--salt", &hex(SALT),
        "--fec-device", path_str, "--fec-offset", &fec_offset, "--fec-roots=2",
    ]);

    let corrupt = |offset: u64, expected: &str| {
        let mut byte = [0u8];
        image.read_exact_at(&mut byte, offset).unwrap();
        image.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
        let err = verify_image(&image, &layout, Some(&out.root)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Verity);
        assert!(err.message.contains(expected), "{err}");
        image.write_all_at(&byte, offset).unwrap();
    };
    corrupt(417 * 4096 + 5, "data block 417 ");
    corrupt(layout.tree_offset + 3, "hash tree block 0 ");
    corrupt(
        layout.fec_offset().unwrap() + 10,
        "FEC area differs at byte 10 ",
    );
    let err = verify_image(&image, &layout, Some(&[0; 64])).unwrap_err();
    assert!(err.message.contains("root digest"), "{err}");
    verify_image(&image, &layout, Some(&out.root)).unwrap();
}

/// Our FEC repairs corruption when decoded by an independent implementation.
#[test]
fn fec_corrects_with_reedsolo() {
    let dir = tempfile::tempdir().unwrap();
    for (roots, blocks) in [(2u32, 300u64), (8, 500), (24, 200)] {
        let input = random_bytes(blocks * 4096, 100 + u64::from(roots));
        let mut enc = FecEncoder::new(input.len() as u64, FecRoots::new(roots).unwrap()).unwrap();
        enc.update(&input).unwrap();
        let fec = enc.finish().unwrap();
        let stripe = fec.len() / roots as usize;
        let rsn = 255 - roots as usize;

        // Spoil roots/2 symbols of a few codewords (at most what RS can correct), at spread
        // positions; symbols past the end of the input are implicit zeros and stay intact.
        let mut corrupted = input.clone();
        let mut rng = common::Rng(roots.into());
        let codewords = [0, 1, stripe / 3, stripe - 1];
        for &c in &codewords {
            let mut hit = Vec::new();
            while hit.len() < roots as usize / 2 {
                let j = (rng.next() % rsn as u64) as usize;
                let offset = c + j * stripe;
                if offset < input.len() && !hit.contains(&offset) {
                    corrupted[offset] ^= (rng.next() % 255 + 1) as u8;
                    hit.push(offset);
                }
            }
        }
        assert_ne!(corrupted, input);
        let (input_path, fec_path, output_path) = (
            dir.path().join("input"),
            dir.path().join("fec"),
            dir.path().join("output"),
        );
        fs::write(&input_path, &corrupted).unwrap();
        fs::write(&fec_path, &fec).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fec_decode.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args([&input_path, &fec_path])
            .arg(roots.to_string())
            .arg(&output_path);
        cmd.args(codewords.iter().map(|c| c.to_string()));
        let stdout = run(&mut cmd);
        assert_eq!(fs::read(&output_path).unwrap(), input, "roots {roots}");
        let expected = format!("corrected {}", roots / 2);
        assert_eq!(
            stdout.lines().filter(|l| l.ends_with(&expected)).count(),
            codewords.len(),
            "{stdout}"
        );
    }
}

/// Builds our tree of `data` (fed in awkward chunks) and compares it with veritysetup's.
fn check_tree(dir: &Path, data: &[u8], alg: HashAlgorithm, salt: &[u8], block_size: u32) {
    let out = veritysetup_format(dir, data, alg, salt, block_size, None);
    let mut builder =
        HashTreeBuilder::with_block_size(alg, salt, data.len() as u64, block_size).unwrap();
    data.chunks(block_size as usize * 33 + 7)
        .for_each(|c| builder.update(c).unwrap());
    let tree = builder.finish().unwrap();
    let what = format!(
        "{alg} salt {} bytes, {} blocks of {block_size}",
        salt.len(),
        data.len() / block_size as usize
    );
    assert_eq!(tree.root_digest, out.root, "root: {what}");
    assert!(tree.tree == out.tree, "tree: {what}");
    assert_eq!(
        hash_tree_size(data.len() as u64, block_size, alg).unwrap(),
        out.tree.len() as u64,
        "{what}"
    );
}

fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut rng = common::Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len as usize);
    out
}
