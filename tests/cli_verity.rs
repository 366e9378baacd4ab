//! `abupdate verity build|verify` by hand: the root digest it prints is the one veritysetup
//! accepts, and a corrupted block is reported with exit code 42.

mod common;

use std::process::Command;

use common::veritysetup::run_veritysetup;

fn abupdate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn build_write_verify_and_detect_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let data = common::mixed_image(&mut common::Rng(3), 300);
    let mut image = data.clone();
    image.resize(data.len() + (64 << 10), 0);
    std::fs::write(&img, &image).unwrap();
    let path = img.to_str().unwrap();
    let size = data.len().to_string();
    let common_args = ["--data-size", &size, "--salt", "c0ffee"];

    let out = abupdate(&[&["verity", "build", path, "--write"], &common_args[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("root digest: "))
        .unwrap()
        .trim()
        .to_owned();
    run_veritysetup(&[
        "verify",
        path,
        path,
        &root,
        "--no-superblock",
        "--salt=c0ffee",
        &format!("--hash-offset={size}"),
        "--data-blocks=300",
    ]);
    let out = abupdate(
        &[
            &["verity", "verify", path, "--root", &root],
            &common_args[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    image = std::fs::read(&img).unwrap();
    image[77 * 4096 + 5] ^= 0x40;
    std::fs::write(&img, &image).unwrap();
    let out = abupdate(&[&["verity", "verify", path], &common_args[..]].concat());
    assert_eq!(out.status.code(), Some(42));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("data block 77"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
