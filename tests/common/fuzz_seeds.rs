//! The seed corpora of the fuzz targets (`fuzz/seeds/<target>/`), replayed in `cargo test`:
//! every seed runs through the target's own checks, and each seed listed in
//! `fuzz/seeds/<target>.expected` (`<name> <outcome>` lines) must give its listed outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/seeds/{target}"))
}

pub fn expected_path(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/seeds/{target}.expected"))
}

/// Runs every seed of `target` through `outcome` and compares the listed ones; at least
/// `min_listed` seeds must be listed, and every listed seed must exist.
pub fn replay(target: &str, min_listed: usize, outcome: impl Fn(&[u8]) -> String) {
    let listed = std::fs::read_to_string(expected_path(target)).unwrap();
    let mut expected: BTreeMap<&str, &str> = listed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    assert!(expected.len() >= min_listed, "expected list too short");
    let mut seen = 0;
    for entry in std::fs::read_dir(seeds_dir(target)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let got = outcome(&std::fs::read(&path).unwrap());
        seen += 1;
        if let Some(want) = expected.remove(name.as_str()) {
            assert_eq!(got, want, "{name}");
        }
    }
    assert!(
        expected.is_empty(),
        "listed seeds missing: {:?}",
        expected.keys()
    );
    assert!(seen >= min_listed, "only {seen} seeds replayed");
}

/// Before regenerating `target`'s seeds: removes every generated seed (the `crash-*`
/// reproducers stay) and returns the `crash-*` lines of the list that `keep` accepts.
pub fn clear_generated(target: &str, keep: impl Fn(&str) -> bool) -> String {
    let dir = seeds_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    let listed = std::fs::read_to_string(expected_path(target)).unwrap_or_default();
    let list = listed
        .lines()
        .filter(|l| l.starts_with("crash-") && keep(l))
        .map(|l| format!("{l}\n"))
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("crash-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    list
}
