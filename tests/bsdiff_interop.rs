//! bsdiff against independent implementations: Debian's `bsdiff`/`bspatch` 4.3 (BSDIFF40),
//! the `brotli` and `bzip2` CLIs (for BSDF2 streams), and a BROTLI_BSDIFF patch written by
//! AOSP's own `delta_generator` (the sample delta payload).
//!
//! Needs the Debian packages `bsdiff`, `brotli`, `bzip2`; a missing tool fails the test.

#[path = "common/shared.rs"]
mod shared;

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::bsdiff::{self, Compressor, PatchHeader};

/// Runs a tool and returns its stdout; panics (failing the test) if it is missing or fails.
fn run(program: &str, args: &[&Path]) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` (install the Debian package): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Debian `bsdiff` on two byte strings.
fn debian_bsdiff(dir: &Path, old: &[u8], new: &[u8]) -> Vec<u8> {
    let (o, n, p) = (dir.join("old"), dir.join("new"), dir.join("patch"));
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    run("bsdiff", &[&o, &n, &p]);
    std::fs::read(p).unwrap()
}

/// Debian `bspatch` on a byte string.
fn debian_bspatch(dir: &Path, old: &[u8], patch: &[u8]) -> Vec<u8> {
    let (o, n, p) = (dir.join("old"), dir.join("out"), dir.join("patch"));
    std::fs::write(&o, old).unwrap();
    std::fs::write(&p, patch).unwrap();
    run("bspatch", &[&o, &n, &p]);
    std::fs::read(n).unwrap()
}

/// xorshift64*: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Something like a binary: a table of 32-bit pointers, text, zero padding, random code.
fn binary_like(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match rng.below(4) {
            0 => (0..64u32)
                .for_each(|i| out.extend_from_slice(&(0x1000_0000 + i * 0x40).to_le_bytes())),
            1 => out.extend_from_slice(b"/system/lib64/libupdate_engine.so: relocation R_AARCH64 "),
            2 => out.resize(out.len() + rng.below(600), 0),
            _ => {
                let n = rng.below(300);
                out.extend(rng.bytes(n));
            }
        }
    }
    out.truncate(len);
    out
}

/// Old/new pairs covering the shapes deltas take.
fn cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let mut rng = Rng(0x5eed_b5d1_ff00_0001);
    let base = binary_like(&mut rng, 60_000);

    let mut scattered = base.clone();
    for _ in 0..300 {
        let at = rng.below(scattered.len());
        scattered[at] = rng.next() as u8;
    }
    let mut inserted = base.clone();
    for _ in 0..8 {
        let at = rng.below(inserted.len());
        let n = 1 + rng.below(700);
        let piece = rng.bytes(n);
        inserted.splice(at..at, piece);
    }
    let mut deleted = base.clone();
    for _ in 0..8 {
        let at = rng.below(deleted.len() - 1000);
        let n = rng.below(1000);
        deleted.drain(at..at + n);
    }
    // Pointers moved by a constant: what bsdiff's add-diff is made for.
    let relocated: Vec<u8> = base
        .chunks(4)
        .flat_map(|w| match <[u8; 4]>::try_from(w) {
            Ok(w) if u32::from_le_bytes(w) >> 28 == 1 => {
                (u32::from_le_bytes(w) + 0x2000).to_le_bytes().to_vec()
            }
            _ => w.to_vec(),
        })
        .collect();
    let unrelated = rng.bytes(20_000);

    vec![
        ("scattered changes", base.clone(), scattered),
        ("insertions", base.clone(), inserted),
        ("deletions", base.clone(), deleted),
        ("relocated pointers", base.clone(), relocated),
        ("unrelated", base.clone(), unrelated),
        ("empty old", Vec::new(), base[..5000].to_vec()),
        ("empty new", base.clone(), Vec::new()),
        ("both empty", Vec::new(), Vec::new()),
        ("identical", base.clone(), base),
    ]
}

#[test]
fn debian_bsdiff_patches_apply() {
    let dir = tempfile::tempdir().unwrap();
    // Debian's bsdiff mmaps both files and cannot take an empty one.
    for (name, old, new) in cases()
        .into_iter()
        .filter(|(_, old, new)| !old.is_empty() && !new.is_empty())
    {
        let patch = debian_bsdiff(dir.path(), &old, &new);
        assert_eq!(&patch[..8], b"BSDIFF40", "{name}");
        let got = bsdiff::apply(&old, &patch, new.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == new, "{name}: output differs");
        // The declared size is binding.
        assert!(
            bsdiff::apply(&old, &patch, new.len() + 1).is_err(),
            "{name}"
        );
    }
}

#[test]
fn our_bsdiff40_applies_with_debian_bspatch() {
    let dir = tempfile::tempdir().unwrap();
    for (name, old, new) in cases() {
        let patch = bsdiff::make_bsdiff40(&old, &new).unwrap();
        assert!(
            debian_bspatch(dir.path(), &old, &patch) == new,
            "{name}: bspatch output differs"
        );
        assert!(
            bsdiff::apply(&old, &patch, new.len()).unwrap() == new,
            "{name}"
        );
    }
}

/// Our BSDF2 patches, their brotli streams decoded by the `brotli` CLI and re-packed as
/// BSDIFF40 with the `bzip2` CLI, apply with Debian's bspatch: the container and the streams
/// mean what AOSP's reader takes them to mean.
#[test]
fn our_bsdf2_streams_decode_independently() {
    let dir = tempfile::tempdir().unwrap();
    for (name, old, new) in cases() {
        let patch = bsdiff::make_bsdf2_with_quality(&old, &new, 9).unwrap();
        let header = PatchHeader::parse(&patch).unwrap();
        assert_eq!(header.compressors, [Compressor::Brotli; 3], "{name}");
        assert_eq!(header.new_size, new.len() as u64, "{name}");

        let body = &patch[32..];
        let (ctrl, rest) = body.split_at(header.ctrl_len);
        let (diff, extra) = rest.split_at(header.diff_len);
        let streams: Vec<Vec<u8>> = [ctrl, diff, extra]
            .iter()
            .map(|s| {
                let br = dir.path().join("s.br");
                std::fs::write(&br, s).unwrap();
                let raw = run("brotli", &[Path::new("-d"), Path::new("-c"), &br]);
                let plain = dir.path().join("s");
                std::fs::write(&plain, raw).unwrap();
                run("bzip2", &[Path::new("-c"), &plain])
            })
            .collect();
        let mut classic = b"BSDIFF40".to_vec();
        for len in [
            streams[0].len() as u64,
            streams[1].len() as u64,
            new.len() as u64,
        ] {
            classic.extend_from_slice(&len.to_le_bytes());
        }
        streams.iter().for_each(|s| classic.extend_from_slice(s));
        assert!(
            debian_bspatch(dir.path(), &old, &classic) == new,
            "{name}: bspatch output differs"
        );
        assert!(
            bsdiff::apply(&old, &patch, new.len()).unwrap() == new,
            "{name}"
        );
    }
}

/// The sample AOSP payloads (see `common/shared.rs`).
fn aosp_samples() -> PathBuf {
    shared::aosp_samples()
}

/// The one BROTLI_BSDIFF operation of AOSP's `delta_payload.bin` (kernel partition), as its
/// manifest describes it: blob at offset 783 (24-byte header + 759-byte manifest, no metadata
/// signature), 641 bytes; source blocks 0..5 of `disk_ext2_4k_empty.img`; destination blocks
/// 0..5 and 47 of `disk_ext2_4k.img`.
#[test]
fn aosp_brotli_bsdiff_operation_applies() {
    let dir = tempfile::tempdir().unwrap();
    for archive in ["sample_images.tar.bz2", "sample_payloads.tar.xz"] {
        let archive = aosp_samples().join(archive);
        run(
            "tar",
            &[Path::new("xf"), &archive, Path::new("-C"), dir.path()],
        );
    }
    let payload = std::fs::read(dir.path().join("delta_payload.bin")).unwrap();
    let old_image = std::fs::read(dir.path().join("disk_ext2_4k_empty.img")).unwrap();
    let new_image = std::fs::read(dir.path().join("disk_ext2_4k.img")).unwrap();
    assert_eq!(&payload[..4], b"CrAU");
    assert_eq!(
        u64::from_be_bytes(payload[12..20].try_into().unwrap()),
        759,
        "manifest size"
    );

    let patch = &payload[783..783 + 641];
    let header = PatchHeader::parse(patch).unwrap();
    assert_eq!(header.compressors, [Compressor::Brotli; 3]);
    let old = &old_image[..5 * 4096];
    let mut expected = new_image[..5 * 4096].to_vec();
    expected.extend_from_slice(&new_image[47 * 4096..48 * 4096]);

    let got = bsdiff::apply(old, patch, expected.len()).unwrap();
    assert!(got == expected, "output differs from the new image");
    // Truncations fail cleanly: at the header, or in the diff stream once the header is
    // made to agree (ctrl 43 bytes, diff 565, extra 1). The extra stream is never read (no
    // entry has extra bytes), so, as in AOSP, losing its one byte goes unnoticed.
    for cut in [0, 31, 32, 74, 75, 639] {
        assert!(
            bsdiff::apply(old, &patch[..cut], expected.len()).is_err(),
            "cut at {cut}"
        );
    }
    assert!(bsdiff::apply(old, &patch[..640], expected.len()).unwrap() == expected);
    assert_eq!((header.ctrl_len, header.diff_len), (43, 565));
    let mut short_diff = patch[..32 + 43 + 564].to_vec();
    short_diff[16..24].copy_from_slice(&564u64.to_le_bytes());
    short_diff.push(patch[640]);
    let err = bsdiff::apply(old, &short_diff, expected.len()).unwrap_err();
    assert_eq!(err.code, abupdate::ErrorCode::MalformedPayload, "{err}");
}

/// Throughput of `apply` on 32 MiB (run in release:
/// `cargo test --release --test bsdiff_interop apply_throughput -- --ignored --nocapture`).
#[test]
#[ignore = "measurement, run in release"]
fn apply_throughput() {
    let mut rng = Rng(7);
    let old = binary_like(&mut rng, 32 << 20);
    let mut new = old.clone();
    for _ in 0..20_000 {
        let at = rng.below(new.len());
        new[at] = rng.next() as u8;
    }
    let start = std::time::Instant::now();
    let patch = bsdiff::make_bsdf2_with_quality(&old, &new, 5).unwrap();
    eprintln!(
        "make_bsdf2 (quality 5): {:?}, patch {} bytes",
        start.elapsed(),
        patch.len()
    );
    let classic = bsdiff::make_bsdiff40(&old, &new).unwrap();
    for (name, patch) in [("BSDF2/brotli", &patch), ("BSDIFF40/bz2", &classic)] {
        let start = std::time::Instant::now();
        let out = bsdiff::apply(&old, patch, new.len()).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert!(out == new);
        eprintln!("apply {name}: {:.0} MB/s", new.len() as f64 / secs / 1e6);
    }
}
