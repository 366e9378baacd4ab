//! Replays the seeds of the puffin fuzz targets (`puff_decode`, `huff_encode`,
//! `puffin_patch`) through their own checks (`fuzz/fuzz_targets/puffin_check.rs`): none may
//! panic, and each seed listed in `fuzz/seeds/<target>.expected` must give its outcome.
//!
//! `cargo test --test fuzz_seeds_puffin regenerate_seeds -- --ignored` rewrites the seeds
//! (needs AOSP's `puffin`, as `puffin_aosp` does).

mod common;

#[path = "../fuzz/fuzz_targets/puffin_check.rs"]
mod check;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::puffin::{self, locate};

#[test]
fn puff_decode_seeds() {
    common::fuzz_seeds::replay("puff_decode", 5, check::puff_decode);
}

#[test]
fn huff_encode_seeds() {
    common::fuzz_seeds::replay("huff_encode", 5, check::huff_encode);
}

#[test]
fn puffin_patch_seeds() {
    common::fuzz_seeds::replay("puffin_patch", 5, check::puffin_patch);
}

fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn text(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(format!("key{}=value{} ", x % 97, x % 13).as_bytes());
    }
    out.truncate(n);
    out
}

fn patch_input(dst_len: usize, src: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = (dst_len as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&(src.len() as u16).to_le_bytes());
    out.extend_from_slice(src);
    out.extend_from_slice(patch);
    out
}

fn aosp_puffdiff(dir: &Path, src: &[u8], dst: &[u8]) -> Vec<u8> {
    let shared = std::env::var_os("ABUPDATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let (s, d, p) = (dir.join("s.gz"), dir.join("d.gz"), dir.join("p"));
    std::fs::write(&s, src).unwrap();
    std::fs::write(&d, dst).unwrap();
    let _ = std::fs::remove_file(&p);
    let status = Command::new(shared.join("tools/aosp-delta/bin/puffin"))
        .arg("--operation=puffdiff")
        .arg(format!("--src_file={}", s.display()))
        .arg(format!("--dst_file={}", d.display()))
        .arg(format!("--patch_file={}", p.display()))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(p).unwrap()
}

#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut streams = vec![];
    for (i, level) in [0u32, 1, 6, 9].into_iter().enumerate() {
        streams.push((
            format!("level{level}"),
            deflate(&text(3000, i as u32 + 1), level),
        ));
    }
    streams.push(("fixed-tiny".into(), deflate(b"aaaaaaaaaaaaaaaaaaaab", 6)));
    streams.push(("zeros".into(), deflate(&[0u8; 5000], 9)));
    streams.push(("garbage".into(), b"\xff\xfe\xfd\xfc\x00\x01\x02".to_vec()));
    let mut truncated = deflate(&text(2000, 9), 6);
    truncated.truncate(truncated.len() / 2);
    streams.push(("truncated".into(), truncated));

    let mut lists = [String::new(), String::new(), String::new()];
    let put = |target: &str, name: &str, data: &[u8], list: &mut String, outcome: String| {
        let dir = common::fuzz_seeds::seeds_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
        list.push_str(&format!("{name} {outcome}\n"));
    };
    for target in ["puff_decode", "huff_encode", "puffin_patch"] {
        common::fuzz_seeds::clear_generated(target, |_| true);
    }
    for (name, s) in &streams {
        put(
            "puff_decode",
            &format!("{name}.bin"),
            s,
            &mut lists[0],
            check::puff_decode(s),
        );
        if let Ok(p) = puffin::puff(s, 1 << 20) {
            put(
                "huff_encode",
                &format!("{name}.bin"),
                &p,
                &mut lists[1],
                check::huff_encode(&p),
            );
        }
    }
    let bad_puff = [0u8, 0, 0xA0, 5, b'a'];
    put(
        "huff_encode",
        "short-run.bin",
        &bad_puff,
        &mut lists[1],
        check::huff_encode(&bad_puff),
    );

    let (old, new) = (text(6000, 21), {
        let mut n = text(6000, 21);
        n[3000..3010].copy_from_slice(b"0123456789");
        n
    });
    let (src, dst) = (gzip(&old), gzip(&new));
    let aosp = aosp_puffdiff(tmp.path(), &src, &dst);
    let ours = puffin::make(&src, &dst, &locate::gzip(&src), &locate::gzip(&dst)).unwrap();
    let mut cases = vec![
        ("aosp-gzip".to_string(), patch_input(dst.len(), &src, &aosp)),
        ("ours-gzip".to_string(), patch_input(dst.len(), &src, &ours)),
        (
            "wrong-dst-len".to_string(),
            patch_input(dst.len() + 1, &src, &aosp),
        ),
        (
            "truncated".to_string(),
            patch_input(dst.len(), &src, &aosp[..aosp.len() / 2]),
        ),
    ];
    // Hostile headers: a deflate past the source, a puff length far beyond the data.
    let hlen = u32::from_be_bytes(ours[4..8].try_into().unwrap()) as usize;
    let parsed = puffin::Patch::parse(&ours).unwrap();
    let mut past = parsed.src.clone();
    past.deflates[0].offset += 1 << 40;
    let mut huge = parsed.src.clone();
    huge.puff_length = u64::MAX;
    for (name, info) in [("deflate-past-data", past), ("huge-puff-length", huge)] {
        let p = puffin::encode(&info, &parsed.dst, &ours[8 + hlen..]).unwrap();
        cases.push((name.into(), patch_input(dst.len(), &src, &p)));
    }
    for (name, input) in cases {
        let outcome = check::puffin_patch(&input);
        put(
            "puffin_patch",
            &format!("{name}.bin"),
            &input,
            &mut lists[2],
            outcome,
        );
    }
    for (target, list) in ["puff_decode", "huff_encode", "puffin_patch"]
        .iter()
        .zip(lists)
    {
        std::fs::write(common::fuzz_seeds::expected_path(target), list).unwrap();
    }
}
