//! Replays the seeds of the `zucchini_patch` fuzz target through its own check
//! (`fuzz/fuzz_targets/zucchini_check.rs`): none may panic, and each seed listed in
//! `fuzz/seeds/zucchini_patch.expected` must give its outcome.
//!
//! `cargo test --test fuzz_seeds_zucchini regenerate_seeds -- --ignored` rewrites the seeds
//! (needs AOSP's `zucchini`, as `zucchini_aosp` does).

mod common;

#[path = "../fuzz/fuzz_targets/zucchini_check.rs"]
mod check;

use common::Rng;

#[test]
fn zucchini_patch_seeds() {
    common::fuzz_seeds::replay("zucchini_patch", 8, check::zucchini_patch);
}

/// `src_len u16 LE`, the source, the patch.
fn input(src: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = (src.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(src);
    out.extend_from_slice(patch);
    out
}

#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    const TARGET: &str = "zucchini_patch";
    let tmp = tempfile::tempdir().unwrap();
    let mut list = common::fuzz_seeds::clear_generated(TARGET, |_| true);
    let dir = common::fuzz_seeds::seeds_dir(TARGET);
    let mut put = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).unwrap();
        list.push_str(&format!("{name} {}\n", check::zucchini_patch(data)));
    };
    let mut rng = Rng(0x2cc0_5eed);
    let mut aosp = vec![];
    for (i, len) in [6000usize, 20000, 40000].into_iter().enumerate() {
        let (old, new) = common::zucchini::raw_pair(&mut rng, len);
        let patch = common::zucchini::gen(tmp.path(), &old, &new, &["-raw"]);
        put(&format!("aosp-raw-{i}.bin"), &input(&old, &patch));
        aosp.push((old, patch));
    }
    let (old, patch) = &aosp[0];
    // Hostile variants of the first AOSP patch.
    let mut wrong_source = old.clone();
    wrong_source[10] ^= 1;
    put("wrong-source.bin", &input(&wrong_source, patch));
    put("truncated.bin", &input(old, &patch[..patch.len() / 2]));
    let mut trailing = patch.clone();
    trailing.push(0);
    put("trailing.bin", &input(old, &trailing));
    let mut elf = patch.clone();
    // Element header after the 24-byte header and the count: type at 16..20. (A raw element
    // retagged DEX: not a DEX file, so 21.)
    elf[28 + 16..28 + 20].copy_from_slice(b"DEX ");
    put("elf-element.bin", &input(old, &elf));
    let mut huge_stream = patch.clone();
    // The first stream's length follows the 22-byte element header.
    huge_stream[28 + 22..28 + 26].copy_from_slice(&u32::MAX.to_le_bytes());
    put("huge-stream.bin", &input(old, &huge_stream));
    let mut big = patch.clone();
    big[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    put("huge-new-size.bin", &input(old, &big));
    let mut bad_crc = patch.clone();
    bad_crc[20] ^= 1;
    put("new-crc.bin", &input(old, &bad_crc));
    // ELF elements: AOSP's patches between two builds of AArch64, x86, Thumb-2 and x86-64 code, and
    // the AArch64 one with its reference delta and extra targets tampered with.
    let mut elf_patches = vec![];
    for (name, (old, new)) in [
        (
            "aarch64",
            common::zucchini::llvm_pair(tmp.path(), "aarch64-linux-gnu", 150),
        ),
        (
            "x86",
            common::zucchini::llvm_pair(tmp.path(), "i686-linux-gnu", 150),
        ),
        (
            "thumb2",
            common::zucchini::llvm_pair(tmp.path(), "thumbv7a-linux-gnueabihf", 150),
        ),
        (
            "x86-64",
            common::zucchini::gcc_pair(tmp.path(), 120, &["-no-pie"]),
        ),
    ] {
        let patch = common::zucchini::gen(tmp.path(), &old, &new, &[]);
        put(&format!("aosp-elf-{name}.bin"), &input(&old, &patch));
        // With the old CRC-32 zeroed, the check puts the source's there: mutants of the
        // source reach the disassembler.
        let mut any_source = patch.clone();
        any_source[12..16].fill(0);
        put(
            &format!("aosp-elf-{name}-any-source.bin"),
            &input(&old, &any_source),
        );
        elf_patches.push((old, patch));
    }
    let (old, patch) = &elf_patches[0];
    let at = reference_delta_at(patch);
    let len = u32::from_le_bytes(patch[at..at + 4].try_into().unwrap()) as usize;
    assert!(len > 0, "no reference delta");
    let mut far = patch.clone();
    far[at + 4] = 0x7e; // a delta of +63 entries
    put("elf-ref-delta-far.bin", &input(old, &far));
    let mut cut = patch.clone();
    cut[at + 4 + len - 1] |= 0x80; // the last varint unfinished
    put("elf-ref-delta-cut.bin", &input(old, &cut));
    let mut pool = patch.clone();
    // The pool count follows the reference delta; its first tag after that.
    pool[at + 4 + len + 4] = 0xff;
    put("elf-pool-tag.bin", &input(old, &pool));
    // DEX elements: AOSP's patches between two builds of a generated DEX program (035 and
    // 039, `tests/dex_gen.py`), and the 039 one with its reference delta tampered with.
    let mut dex_patches = vec![];
    for version in [35, 39] {
        let (old, new) = common::zucchini::dex_pair(tmp.path(), version, 12, false);
        let patch = common::zucchini::gen(tmp.path(), &old, &new, &[]);
        assert_eq!(&patch[44..48], b"DEX ");
        put(&format!("aosp-dex-0{version}.bin"), &input(&old, &patch));
        let mut any_source = patch.clone();
        any_source[12..16].fill(0);
        put(
            &format!("aosp-dex-0{version}-any-source.bin"),
            &input(&old, &any_source),
        );
        dex_patches.push((old, patch));
    }
    let (old, patch) = &dex_patches[1];
    let at = reference_delta_at(patch);
    let mut far = patch.clone();
    far[at + 4] = 0x7e;
    put("dex-ref-delta-far.bin", &input(old, &far));
    let mut cut = patch.clone();
    let len = u32::from_le_bytes(patch[at..at + 4].try_into().unwrap()) as usize;
    cut[at + 4 + len - 1] |= 0x80;
    put("dex-ref-delta-cut.bin", &input(old, &cut));
    std::fs::write(common::fuzz_seeds::expected_path(TARGET), list).unwrap();
}

/// The offset of the first element's reference delta stream (its u32 length): after the 28
/// bytes of header and count, the 22-byte element header and six streams (u32 length, bytes).
fn reference_delta_at(patch: &[u8]) -> usize {
    let mut at = 28 + 22;
    for _ in 0..6 {
        at += 4 + u32::from_le_bytes(patch[at..at + 4].try_into().unwrap()) as usize;
    }
    at
}

/// A soak without cargo-fuzz (overflow checks on, as in the test profile): the ELF and DEX seeds'
/// sources and patches with a few bytes changed, through the fuzz target's check.
/// `ZUCCHINI_SOAK_RUNS` (default 2000) sets the number of inputs:
/// `ZUCCHINI_SOAK_RUNS=100000 cargo test --release --test fuzz_seeds_zucchini soak -- --ignored`.
#[test]
#[ignore = "a soak; run by hand"]
fn soak_elf_seeds() {
    let runs: u64 = std::env::var("ZUCCHINI_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = common::fuzz_seeds::seeds_dir("zucchini_patch");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("any-source"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(!seeds.is_empty());
    let mut rng = Rng(0x50a4_2cc0);
    let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..runs {
        let mut input = seeds[rng.below(seeds.len() as u64) as usize].clone();
        let src_len = u16::from_le_bytes([input[0], input[1]]) as u64;
        for _ in 0..1 + rng.below(6) {
            // Mostly the ELF's headers and tables (its start and end), else anywhere.
            let at = match rng.below(4) {
                0 => 2 + rng.below(512),
                1 => 2 + src_len - 1 - rng.below(src_len.min(4096)),
                _ => rng.below(input.len() as u64),
            } as usize;
            let at = at.min(input.len() - 1);
            input[at] = match rng.below(3) {
                0 => input[at] ^ (1 << rng.below(8)),
                1 => rng.below(256) as u8,
                _ => [0, 0xff, 0x7f, 0x80][rng.below(4) as usize],
            };
        }
        let outcome = check::zucchini_patch(&input);
        // "ok:<size>" counts as "ok"; refusals by code.
        let kind = if outcome.starts_with("ok") {
            "ok".to_string()
        } else {
            outcome
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    eprintln!("{runs} inputs: {outcomes:?}");
}
