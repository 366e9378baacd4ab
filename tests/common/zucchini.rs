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
