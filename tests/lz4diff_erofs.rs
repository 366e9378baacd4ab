//! LZ4DIFF against real EROFS images: `mkfs.erofs` (erofs-utils, with liblz4) compresses two
//! trees of files with lz4hc and lz4; the clusters of each file (from `dump.erofs -e`) are
//! decompressed, patched and recompressed by `abupdate::lz4diff`, which must give back
//! mkfs.erofs's bytes exactly, and patches between the two images' files apply (BSDF2 inner
//! patches, and PUFFDIFF ones for a zip with deflated entries).
//! Needs erofs-utils (.ci/run installs it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::lz4diff::{self, Algorithm, Block, CompressionInfo, Inner, Patch};
use abupdate::puffin::{self, locate};

fn words(n: usize, seed: u64) -> Vec<u8> {
    let list = [
        "update",
        "engine",
        "payload",
        "partition",
        "android",
        "slot",
        "block",
        "the",
        "of",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(list[(x % 9) as usize].as_bytes());
        out.extend_from_slice(format!("{} ", x % 1000).as_bytes());
    }
    out.truncate(n);
    out
}

/// Record-like binary data: counters, flags, zero runs.
fn records(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    let mut i = seed;
    while out.len() < n {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x40, (i % 7) as u8, 0, 0, 0, 0]);
        out.extend_from_slice(&((i * 2_654_435_761) % 5000).to_le_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Two trees: `new` edits, inserts into and extends `old`'s files.
fn trees(dir: &Path) -> (PathBuf, PathBuf) {
    let (old, new) = (dir.join("old"), dir.join("new"));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    let text = words(160_000, 7);
    let mut text2 = text.clone();
    text2[50_000..50_020].copy_from_slice(b"an edited stretch...");
    text2.splice(120_000..120_000, words(3000, 9));
    text2.extend_from_slice(&words(20_000, 11));
    let bin = records(120_000, 1);
    let mut bin2 = records(120_000, 1);
    bin2[5000..5100].fill(0x77);
    bin2.splice(60_000..60_000, records(777, 90_000));
    std::fs::write(old.join("app.zip"), app_zip(&text[..40_000], 0)).unwrap();
    std::fs::write(new.join("app.zip"), app_zip(&text2[..40_000], 1)).unwrap();
    std::fs::write(old.join("text"), &text).unwrap();
    std::fs::write(new.join("text"), &text2).unwrap();
    std::fs::write(old.join("records"), &bin).unwrap();
    std::fs::write(new.join("records"), &bin2).unwrap();
    (old, new)
}

/// An APK-like zip: deflated entries and a stored one (which lz4 compresses).
fn app_zip(text: &[u8], version: u8) -> Vec<u8> {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..6 {
        z.start_file(format!("res/{i}.xml"), deflated).unwrap();
        let mut body = words(8_000, 100 + i);
        if i == 2 {
            body[500 + usize::from(version)] ^= 1;
        }
        z.write_all(&body).unwrap();
    }
    z.start_file("resources.arsc", stored).unwrap();
    z.write_all(text).unwrap();
    z.finish().unwrap().into_inner()
}

fn mkfs(dir: &Path, name: &str, compressor: &str, tree: &Path) -> Vec<u8> {
    let img = dir.join(name);
    let out = Command::new("mkfs.erofs")
        .arg(format!("-z{compressor}"))
        .arg("-T0")
        .arg(&img)
        .arg(tree)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(img).unwrap()
}

/// A file's clusters as update_engine's generator records them (erofs_filesystem.cc): one
/// per extent, an uncompressed one as long as it is stored; and the bytes they occupy.
fn clusters(
    dir: &Path,
    image: &[u8],
    name: &str,
    algorithm: Algorithm,
) -> (CompressionInfo, Vec<u8>) {
    let img = dir.join("probe.img");
    std::fs::write(&img, image).unwrap();
    let out = Command::new("dump.erofs")
        .arg(format!("--path=/{name}"))
        .arg("-e")
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut blocks = Vec::new();
    let mut data = Vec::new();
    let mut offset = 0u64;
    for line in text.lines() {
        // "   3:    27722..   36854 |    9132 :      16384..     20480 |    4096"
        let Some((_, rest)) = line.split_once(':') else {
            continue;
        };
        let nums: Vec<u64> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        if nums.len() != 6 || !line.contains('|') {
            continue;
        }
        let (llen, pstart, plen) = (nums[2], nums[3], nums[5]);
        let llen = if plen >= llen { plen } else { llen };
        blocks.push(Block {
            uncompressed_offset: offset,
            uncompressed_length: llen,
            compressed_length: plen,
            ..Default::default()
        });
        offset += llen;
        data.extend_from_slice(&image[pstart as usize..(pstart + plen) as usize]);
    }
    assert!(blocks.len() > 3, "{name}: {text}");
    (
        CompressionInfo {
            algorithm,
            blocks,
            // erofs-utils 1.5 and later pad LZ4 clusters at the front (`lz4_0padding`).
            zero_padding: true,
        },
        data,
    )
}

/// The decompressed clusters are the file, then the zeros of a stored last cluster.
fn same_file(plain: &[u8], path: &Path) {
    let file = std::fs::read(path).unwrap();
    assert!(
        plain.len() >= file.len(),
        "{path:?}: {} of {} bytes",
        plain.len(),
        file.len()
    );
    assert!(
        plain[..file.len()] == file[..],
        "{path:?} decompresses differently"
    );
    assert!(plain[file.len()..].iter().all(|&b| b == 0));
}

const COMPRESSORS: [(&str, Algorithm); 3] = [
    ("lz4hc,9", Algorithm::Lz4hc(9)),
    ("lz4hc,12", Algorithm::Lz4hc(12)),
    ("lz4", Algorithm::Lz4),
];

#[test]
fn recompression_reproduces_mkfs_erofs_and_patches_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let (old_tree, new_tree) = trees(tmp.path());
    for (compressor, algorithm) in COMPRESSORS {
        let old_img = mkfs(tmp.path(), "old.img", compressor, &old_tree);
        let new_img = mkfs(tmp.path(), "new.img", compressor, &new_tree);
        for file in ["text", "records", "app.zip"] {
            // One compressor is enough for the PUFFDIFF path (puffing is the slow part).
            if file == "app.zip" && compressor != "lz4hc,9" {
                continue;
            }
            let (src, old) = clusters(tmp.path(), &old_img, file, algorithm);
            let (dst, new) = clusters(tmp.path(), &new_img, file, algorithm);
            let limits = lz4diff::Limits::DEFAULT;
            let old_plain = lz4diff::decompress(&old, &src, limits).unwrap();
            let new_plain = lz4diff::decompress(&new, &dst, limits).unwrap();
            same_file(&old_plain, &old_tree.join(file));
            same_file(&new_plain, &new_tree.join(file));
            // liblz4's clusters, byte for byte.
            let again = lz4diff::compress(&new_plain, &dst).unwrap();
            assert!(
                again == new,
                "{compressor} {file}: recompressed clusters differ"
            );
            // update_engine's generator takes PUFFDIFF where deflates are found and smaller.
            let (inner_kind, inner) = if file.ends_with(".zip") {
                let (o, n) = (locate::any(&old_plain), locate::any(&new_plain));
                assert!(o.len() >= 6 && n.len() >= 6);
                let puff = puffin::make(&old_plain, &new_plain, &o, &n).unwrap();
                let bsdiff = abupdate::bsdiff::make_bsdf2(&old_plain, &new_plain).unwrap();
                assert!(
                    puff.len() < bsdiff.len(),
                    "{} vs {}",
                    puff.len(),
                    bsdiff.len()
                );
                (Inner::Puffdiff, puff)
            } else {
                let bsdiff = abupdate::bsdiff::make_bsdf2(&old_plain, &new_plain).unwrap();
                (Inner::Bsdiff, bsdiff)
            };
            let blob = Patch::encode(&src, &dst, inner_kind, &inner).unwrap();
            assert!(
                blob.len() * 4 < new.len(),
                "{compressor} {file}: patch of {}",
                blob.len()
            );
            let out = lz4diff::apply(&old, &blob, new.len(), limits).unwrap();
            assert!(out == new, "{compressor} {file}: patched clusters differ");
        }
    }
}
