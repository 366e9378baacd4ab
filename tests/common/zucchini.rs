//! Zucchini material for the tests: raw firmware-like image pairs, and ZUCCHINI operation
//! blobs made by AOSP's `zucchini_op gen` (update_engine's generator: brotli of a zucchini
//! ensemble patch).

use std::path::Path;
use std::process::Command;

use super::Rng;

/// A firmware-like image of `len` bytes (random runs, text, tables, zeros) and its next
/// version: blocks inserted and deleted (so the rest shifts), bytes changed in place, and a
/// region moved, the changes Zucchini's raw matching turns into equivalences, extra data and
/// raw delta.
pub fn raw_pair(rng: &mut Rng, len: usize) -> (Vec<u8>, Vec<u8>) {
    let blocks = len.div_ceil(4096);
    let mut old = super::mixed_image(rng, blocks);
    // Tables of little-endian words that differ by small amounts from version to version.
    for word in old.chunks_mut(4).skip(7).step_by(97) {
        word.copy_from_slice(&(rng.below(1 << 20) as u32).to_le_bytes());
    }
    old.truncate(len);
    let mut new = old.clone();
    for _ in 0..40 {
        let at = rng.below(new.len() as u64) as usize;
        new[at] = new[at].wrapping_add(1 + rng.below(200) as u8);
    }
    let at = rng.below((new.len() / 2) as u64) as usize;
    let mut inserted = vec![0u8; 3000];
    rng.fill(&mut inserted);
    new.splice(at..at, inserted);
    let at = new.len() / 2 + rng.below((new.len() / 4) as u64) as usize;
    new.drain(at..at + 1500);
    let (from, to, moved) = (new.len() / 8, new.len() * 5 / 8, (new.len() / 8).min(8192));
    new.copy_within(from..from + moved, to);
    new.truncate(len);
    new.resize(len, 0x33);
    (old, new)
}

/// AOSP's ZUCCHINI operation blob from `old` to `new` (`zucchini_op gen`, or `raw-gen` for
/// Zucchini's raw matching without element detection), made in `dir`.
pub fn op_blob(dir: &Path, old: &[u8], new: &[u8], mode: &str) -> Vec<u8> {
    let (o, n, b) = (
        dir.join("zop.old"),
        dir.join("zop.new"),
        dir.join("zop.blob"),
    );
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    let out = Command::new(super::shared::aosp_delta_tool("zucchini_op"))
        .arg(mode)
        .args([&o, &n, &b])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zucchini_op {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(b).unwrap()
}

/// C source of a program of `functions` functions calling each other, a table of pointers to
/// them (relocated pointers in a PIE) and strings; `version` 2 inserts functions early and
/// changes constants, so code and data shift the way a new build's do.
fn program_source(functions: usize, version: u32) -> String {
    let mut src = String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n");
    let extra = if version == 2 { 7 } else { 0 };
    for i in 0..functions + extra {
        // Version 2's extra functions come first, so everything after them moves.
        let (name, k) = if i < extra {
            (format!("extra{i}"), i as u32 * 31 + 5)
        } else {
            let j = i - extra;
            let k = if version == 2 && j % 11 == 3 { j * 7 + 1 } else { j * 7 };
            (format!("f{j}"), k as u32)
        };
        src.push_str(&format!(
            "__attribute__((noinline)) int {name}(int x) {{ static const char s[] = \"{name}-{k}\"; \
             return x * {k} + (int)strlen(s) + (x > {k} ? {prev}(x - 1) : 0); }}\n",
            prev = if i == 0 { "abs".to_string() } else if i <= extra { format!("extra{}", i - 1) } else { format!("f{}", i - extra - 1) },
        ));
    }
    src.push_str("int (*const table[])(int) = {");
    for j in 0..functions {
        src.push_str(&format!("f{j},"));
    }
    src.push_str("};\nint main(int argc, char **argv) { int t = 0; (void)argv;\n");
    src.push_str(&format!(
        "for (unsigned i = 0; i < sizeof table / sizeof *table; i++) t += table[i](argc + (int)i);\n\
         printf(\"%d {version}\\n\", t); return 0; }}\n"
    ));
    src
}

/// `gcc -O2` builds (`extra_flags` added) of version 1 and 2 of a generated program of
/// `functions` functions, made in `dir`: an x86-64 PIE by default.
pub fn gcc_pair(dir: &Path, functions: usize, extra_flags: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let build = |version: u32| {
        let (c, out) = (
            dir.join(format!("prog{version}.c")),
            dir.join(format!("prog{version}")),
        );
        std::fs::write(&c, program_source(functions, version)).unwrap();
        let status = Command::new("gcc")
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(&c)
            .args(extra_flags)
            .status()
            .unwrap();
        assert!(status.success(), "gcc failed");
        std::fs::read(out).unwrap()
    };
    (build(1), build(2))
}
