//! Replays every seed of the `bsdf2_apply` fuzz target through `bsdiff::apply`: none may
//! panic, and each seed listed in `fuzz/seeds/bsdf2_apply.expected` must give its listed
//! result (`ok <sha256 of the new data that was diffed>` or `err`).
//!
//! `cargo test --test fuzz_seeds_bsdiff regenerate_seeds -- --ignored` rewrites the seeds and
//! the list (run it alone; needs Debian `bsdiff` and the AOSP samples as `bsdiff_interop` does).

#[path = "common/shared.rs"]
mod shared;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::bsdiff;
use sha2::{Digest, Sha256};

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/bsdf2_apply")
}

fn expected_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/bsdf2_apply.expected")
}

/// The fuzz target's input layout: `new_len: u16 LE`, `old_len: u16 LE`, old, patch.
fn split(data: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    let new_len = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let old_len = usize::from(u16::from_le_bytes([head[2], head[3]])).min(rest.len());
    let (old, patch) = rest.split_at(old_len);
    Some((new_len, old, patch))
}

fn join(new_len: usize, old: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(new_len).unwrap().to_le_bytes().to_vec();
    out.extend_from_slice(&u16::try_from(old.len()).unwrap().to_le_bytes());
    out.extend_from_slice(old);
    out.extend_from_slice(patch);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    abupdate::hex::encode(&Sha256::digest(data))
}

#[test]
fn seeds_replay() {
    let listed = std::fs::read_to_string(expected_path()).unwrap();
    let mut expected: BTreeMap<String, String> = listed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, want) = l.split_once(' ').unwrap();
            (name.to_string(), want.to_string())
        })
        .collect();
    assert!(expected.len() >= 10, "expected list too short");

    let mut seen = 0;
    for entry in std::fs::read_dir(seeds_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        // Inputs too short for the layout are fine for the fuzzer; nothing to apply.
        let Some((new_len, old, patch)) = split(&data) else {
            continue;
        };
        let result = bsdiff::apply(old, patch, new_len);
        if let Ok(new) = &result {
            assert_eq!(new.len(), new_len, "{name}");
        }
        seen += 1;
        let Some(want) = expected.remove(&name) else {
            continue;
        };
        match (want.split_once(' '), &result) {
            (Some(("ok", hash)), Ok(new)) => {
                assert_eq!(sha256_hex(new), hash, "{name}: wrong output")
            }
            (None, Err(e)) if want == "err" => {
                assert_eq!(e.code, abupdate::ErrorCode::MalformedPayload, "{name}: {e}")
            }
            _ => panic!("{name}: expected {want}, got {result:?}"),
        }
    }
    assert!(
        expected.is_empty(),
        "listed seeds missing: {:?}",
        expected.keys()
    );
    assert!(seen >= 10, "only {seen} seeds replayed");
}

/// Rewrites the seeds: valid patches from every producer, and broken ones.
#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    let dir = seeds_dir();
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut list = String::new();
    let mut put = |name: &str, input: Vec<u8>, new: Option<&[u8]>| {
        std::fs::write(dir.join(name), input).unwrap();
        match new {
            Some(new) => list.push_str(&format!("{name} ok {}\n", sha256_hex(new))),
            None => list.push_str(&format!("{name} err\n")),
        }
    };

    let old =
        b"ro.build.version.release=13\nro.build.id=TQ3A.230805.001\nro.product.model=cuttlefish\n"
            .repeat(3);
    let new = String::from_utf8(old.clone())
        .unwrap()
        .replace("13", "14")
        .replace("TQ3A.230805.001", "UQ1A.240105.002")
        .into_bytes();
    let mut new = new;
    new.extend_from_slice(b"ro.build.flavor=aosp_cf_x86_64_phone-userdebug\n");

    let brotli = bsdiff::make_bsdf2(&old, &new).unwrap();
    put(
        "bsdf2-brotli.bin",
        join(new.len(), &old, &brotli),
        Some(&new),
    );
    put(
        "bsdiff40-qbsdiff.bin",
        join(new.len(), &old, &bsdiff::make_bsdiff40(&old, &new).unwrap()),
        Some(&new),
    );
    put(
        "bsdiff40-debian.bin",
        join(new.len(), &old, &debian_bsdiff(&old, &new)),
        Some(&new),
    );
    put(
        "bsdf2-empty-new.bin",
        join(0, &old, &bsdiff::make_bsdf2(&old, b"").unwrap()),
        Some(b""),
    );

    // The same streams under other compressors: stored, and bz2 / brotli / stored mixed.
    let streams = brotli_streams(&brotli);
    put(
        "bsdf2-stored.bin",
        join(new.len(), &old, &bsdf2_raw([0, 0, 0], &streams, new.len())),
        Some(&new),
    );
    let mixed = [bz2(&streams[0]), streams[1].clone(), streams[2].clone()];
    let mixed_patch = bsdf2_raw([1, 0, 0], &mixed, new.len());
    put(
        "bsdf2-mixed.bin",
        join(new.len(), &old, &mixed_patch),
        Some(&new),
    );

    // A real one: AOSP delta_generator's BROTLI_BSDIFF for the sample kernel partition.
    let (aosp_old, aosp_patch, aosp_new) = aosp_kernel_op();
    put(
        "aosp-kernel-brotli.bin",
        join(aosp_new.len(), &aosp_old, &aosp_patch),
        Some(&aosp_new),
    );

    // Broken ones.
    put(
        "truncated.bin",
        join(new.len(), &old, &brotli[..brotli.len() / 2]),
        None,
    );
    let mut magic = brotli.clone();
    magic[..5].copy_from_slice(b"BSDF3");
    put("bad-magic.bin", join(new.len(), &old, &magic), None);
    let mut unknown = brotli.clone();
    unknown[6] = 7;
    put(
        "unknown-compressor.bin",
        join(new.len(), &old, &unknown),
        None,
    );
    put(
        "size-mismatch.bin",
        join(new.len() + 1, &old, &brotli),
        None,
    );
    let negative = stored_entries(&[(0, -4, 0)], b"", b"abcd", 4);
    put("negative-extra.bin", join(4, &old, &negative), None);
    let cursor = stored_entries(&[(0, 0, -1), (2, 0, 0)], b"\x01\x02", b"", 2);
    put("old-cursor-negative.bin", join(2, &old, &cursor), None);
    let bomb = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bsdiff/zeros-1gib.bz2"),
    )
    .unwrap();
    put(
        "control-bomb-bz2.bin",
        join(
            4096,
            &old,
            &bsdf2_raw([1, 0, 0], &[bomb, vec![], vec![]], 4096),
        ),
        None,
    );

    std::fs::write(expected_path(), list).unwrap();
}

fn debian_bsdiff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (o, n, p) = (
        dir.path().join("o"),
        dir.path().join("n"),
        dir.path().join("p"),
    );
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    let status = Command::new("bsdiff")
        .args([&o, &n, &p])
        .status()
        .expect("Debian bsdiff");
    assert!(status.success());
    std::fs::read(p).unwrap()
}

/// The three streams of a BSDF2 patch with brotli streams, decompressed.
fn brotli_streams(patch: &[u8]) -> [Vec<u8>; 3] {
    let h = bsdiff::PatchHeader::parse(patch).unwrap();
    let body = &patch[bsdiff::HEADER_LEN..];
    let (ctrl, rest) = body.split_at(h.ctrl_len);
    let (diff, extra) = rest.split_at(h.diff_len);
    [ctrl, diff, extra].map(|s| {
        let mut out = Vec::new();
        brotli::Decompressor::new(s, 4096)
            .read_to_end(&mut out)
            .unwrap();
        out
    })
}

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn offtin(v: i64) -> [u8; 8] {
    let sign = if v < 0 { 1u64 << 63 } else { 0 };
    (v.unsigned_abs() | sign).to_le_bytes()
}

/// A BSDF2 patch from already-compressed streams.
fn bsdf2_raw(types: [u8; 3], streams: &[Vec<u8>; 3], new_len: usize) -> Vec<u8> {
    let mut p = b"BSDF2".to_vec();
    p.extend_from_slice(&types);
    for v in [streams[0].len(), streams[1].len(), new_len] {
        p.extend_from_slice(&offtin(v as i64));
    }
    streams.iter().for_each(|s| p.extend_from_slice(s));
    p
}

fn stored_entries(
    entries: &[(i64, i64, i64)],
    diff: &[u8],
    extra: &[u8],
    new_len: usize,
) -> Vec<u8> {
    let ctrl: Vec<u8> = entries
        .iter()
        .flat_map(|&(d, e, s)| [offtin(d), offtin(e), offtin(s)])
        .flatten()
        .collect();
    bsdf2_raw([0, 0, 0], &[ctrl, diff.to_vec(), extra.to_vec()], new_len)
}

/// The BROTLI_BSDIFF operation of AOSP's sample delta payload (see `bsdiff_interop.rs`).
fn aosp_kernel_op() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let samples = shared::aosp_samples();
    let dir = tempfile::tempdir().unwrap();
    for archive in ["sample_images.tar.bz2", "sample_payloads.tar.xz"] {
        let status = Command::new("tar")
            .arg("xf")
            .arg(samples.join(archive))
            .arg("-C")
            .arg(dir.path())
            .status();
        assert!(status.unwrap().success());
    }
    let payload = std::fs::read(dir.path().join("delta_payload.bin")).unwrap();
    let old = std::fs::read(dir.path().join("disk_ext2_4k_empty.img")).unwrap();
    let new = std::fs::read(dir.path().join("disk_ext2_4k.img")).unwrap();
    let mut want = new[..5 * 4096].to_vec();
    want.extend_from_slice(&new[47 * 4096..48 * 4096]);
    (
        old[..5 * 4096].to_vec(),
        payload[783..783 + 641].to_vec(),
        want,
    )
}
