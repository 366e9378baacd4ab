//! The C++ oracle of the `std::sort` mirrors' tests (`gnu_sort.rs`, `llvm_sort.rs`): one
//! program, built by the compiler and standard library under test, prints where its
//! `std::sort` and heapsort put ties, and each mirror must put them in the same places.

use std::io::Write;
use std::process::{Command, Stdio};

/// A program reading sequences of keys (after a mode: 0 `std::sort`, 1 `std::partial_sort`
/// over the whole range, the library's heapsort) and printing the original positions in the
/// order it sorted them, ties included. `std::pair` and a lambda keep libc++ off its
/// branchless path, as Zucchini's equivalences and comparator are.
const PROGRAM: &str = r#"
#include <algorithm>
#include <cstdio>
#include <vector>
#include <utility>
int main() {
  unsigned mode, n, k;
  while (scanf("%u %u", &mode, &n) == 2) {
    std::vector<std::pair<unsigned, unsigned>> v(n);
    for (unsigned i = 0; i < n; ++i) { scanf("%u", &k); v[i] = {k, i}; }
    auto less = [](const auto& a, const auto& b) { return a.first < b.first; };
    if (mode == 0) std::sort(v.begin(), v.end(), less);
    else std::partial_sort(v.begin(), v.end(), v.end(), less);
    for (auto& e : v) printf("%u ", e.second);
    printf("\n");
  }
}
"#;

/// Mode of a case: sort with `std::sort`.
pub(super) const SORT: u32 = 0;

/// The keys of the cases: a 64-bit LCG's high bits.
pub(super) struct Keys(pub(super) u64);

impl Keys {
    pub(super) fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

/// Builds the oracle with `compiler` and `flags` and runs every `(mode, keys)` case through
/// it; for each, `ours` sorts `(key, position)` records in that mode and must leave the
/// positions in the oracle's order.
pub(super) fn check(
    compiler: &str,
    flags: &[&str],
    cases: &[(u32, Vec<u32>)],
    mut ours: impl FnMut(u32, &mut [(u32, usize)]),
) {
    let lines = run(compiler, flags, cases);
    assert_eq!(lines.len(), cases.len());
    for ((mode, v), line) in cases.iter().zip(lines) {
        let mut records: Vec<(u32, usize)> = v.iter().copied().zip(0..).collect();
        ours(*mode, &mut records);
        let positions: String = records.iter().map(|e| format!("{} ", e.1)).collect();
        assert_eq!(
            positions.trim_end(),
            line.trim_end(),
            "mode {mode}, {} keys {v:?}",
            v.len()
        );
    }
}

/// The oracle's output line for each case.
fn run(compiler: &str, flags: &[&str], cases: &[(u32, Vec<u32>)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (src, bin) = (dir.path().join("sort.cc"), dir.path().join("sort"));
    std::fs::write(&src, PROGRAM).unwrap();
    let built = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(built.success(), "{compiler} {flags:?} failed");
    let mut input = String::new();
    for (mode, v) in cases {
        input.push_str(&format!("{mode} {}", v.len()));
        for k in v {
            input.push_str(&format!(" {k}"));
        }
        input.push('\n');
    }
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread: the oracle's output could fill the pipe before it has
    // read all its input.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "the oracle failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}
