//! `veritysetup` (Debian cryptsetup-bin) as an oracle for hash trees and FEC. Tests that use it
//! fail when it is missing.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::verity::HashAlgorithm;

pub struct Formatted {
    pub root: Vec<u8>,
    pub tree: Vec<u8>,
    pub fec: Vec<u8>,
}

pub fn veritysetup_format(
    dir: &Path,
    data: &[u8],
    alg: HashAlgorithm,
    salt: &[u8],
    block_size: u32,
    fec_roots: Option<u32>,
) -> Formatted {
    let (data_path, tree_path, fec_path) = (dir.join("data"), dir.join("tree"), dir.join("fec"));
    fs::write(&data_path, data).unwrap();
    for stale in [&tree_path, &fec_path] {
        let _ = fs::remove_file(stale);
    }
    // `--salt=-` means no salt; without `--salt` veritysetup would pick a random one.
    let salt_arg = if salt.is_empty() {
        "-".to_string()
    } else {
        hex(salt)
    };
    let mut args: Vec<String> = vec![
        "format".into(),
        path_arg(&data_path),
        path_arg(&tree_path),
        "--format=1".into(),
        format!("--hash={alg}"),
        format!("--data-block-size={block_size}"),
        format!("--hash-block-size={block_size}"),
        format!("--salt={salt_arg}"),
        "--no-superblock".into(),
    ];
    if let Some(roots) = fec_roots {
        args.extend([
            format!("--fec-device={}", path_arg(&fec_path)),
            format!("--fec-roots={roots}"),
        ]);
    }
    let stdout = run_veritysetup(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| unhex(h.trim()))
        .unwrap_or_else(|| panic!("no root hash in veritysetup output:\n{stdout}"));
    Formatted {
        root,
        tree: fs::read(&tree_path).unwrap_or_default(),
        fec: fec_roots
            .map(|_| fs::read(&fec_path).unwrap())
            .unwrap_or_default(),
    }
}

pub fn run_veritysetup(args: &[&str]) -> String {
    let binary = veritysetup_binary();
    run(Command::new(binary).args(args))
}

pub fn veritysetup_binary() -> PathBuf {
    // Debian installs it in /usr/sbin, which is not always on a test runner's PATH.
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("veritysetup"))
        .find(|p| p.is_file())
        .expect("veritysetup not found: install Debian package cryptsetup-bin")
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

pub use abupdate::hex::encode as hex;

pub fn unhex(s: &str) -> Vec<u8> {
    abupdate::hex::decode(s).unwrap()
}
