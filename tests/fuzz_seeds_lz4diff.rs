//! Replays the seeds of the `lz4diff_patch` and `lz4_compress` fuzz targets through their
//! own checks (`fuzz/fuzz_targets/lz4diff_check.rs`): none may panic, and each seed listed in
//! `fuzz/seeds/<target>.expected` must give its outcome.
//!
//! `cargo test --test fuzz_seeds_lz4diff regenerate_seeds -- --ignored` rewrites the seeds.

mod common;

#[path = "../fuzz/fuzz_targets/lz4diff_check.rs"]
mod check;

use abupdate::lz4diff::{self, Algorithm, Block, CompressionInfo, Inner, Patch};

#[test]
fn lz4diff_patch_seeds() {
    common::fuzz_seeds::replay("lz4diff_patch", 8, check::lz4diff_patch);
}

#[test]
fn lz4_compress_seeds() {
    common::fuzz_seeds::replay("lz4_compress", 5, check::lz4_compress);
}

fn text(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(format!("name{}={} ", x % 50, x % 9).as_bytes());
    }
    out.truncate(n);
    out
}

/// 1 KiB clusters, each compressed from its offset on (as EROFS does with 4 KiB).
fn clusters(plain: &[u8], algorithm: Algorithm) -> CompressionInfo {
    let (mut blocks, mut at) = (vec![], 0);
    while at < plain.len() {
        let rest = &plain[at..];
        let (n, stored) = if rest.len() <= 1024 {
            (rest.len(), rest.len())
        } else {
            let (_, n) = match algorithm {
                Algorithm::Lz4hc(l) => abupdate::lz4::compress_hc_dest_size(rest, 1024, l),
                _ => abupdate::lz4::compress_dest_size(rest, 1024),
            }
            .unwrap();
            (n, 1024)
        };
        blocks.push(Block {
            uncompressed_offset: at as u64,
            uncompressed_length: n as u64,
            compressed_length: stored as u64,
            ..Default::default()
        });
        at += n;
    }
    CompressionInfo {
        algorithm,
        blocks,
        zero_padding: true,
    }
}

/// `src_len u16 LE`, `dst_len u32 LE`, the source, the blob.
fn input(src: &[u8], dst_len: usize, blob: &[u8]) -> Vec<u8> {
    let mut out = (src.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&(dst_len as u32).to_le_bytes());
    out.extend_from_slice(src);
    out.extend_from_slice(blob);
    out
}

#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    const TARGET: &str = "lz4diff_patch";
    let mut list = common::fuzz_seeds::clear_generated(TARGET, |_| true);
    let dir = common::fuzz_seeds::seeds_dir(TARGET);
    let mut put = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).unwrap();
        list.push_str(&format!("{name} {}\n", check::lz4diff_patch(data)));
    };
    let old_plain = text(9000, 1);
    let mut new_plain = old_plain.clone();
    new_plain[3000..3005].copy_from_slice(b"XXXXX");
    new_plain.extend_from_slice(&text(700, 2));
    let mut valid = None;
    for (name, algorithm) in [
        ("lz4", Algorithm::Lz4),
        ("lz4hc-9", Algorithm::Lz4hc(9)),
        ("lz4hc-12", Algorithm::Lz4hc(12)),
    ] {
        let (src, dst) = (
            clusters(&old_plain, algorithm),
            clusters(&new_plain, algorithm),
        );
        let old = lz4diff::compress(&old_plain, &src).unwrap();
        let new = lz4diff::compress(&new_plain, &dst).unwrap();
        let inner = abupdate::bsdiff::make_bsdf2(&old_plain, &new_plain).unwrap();
        let blob = Patch::encode(&src, &dst, Inner::Bsdiff, &inner).unwrap();
        assert_eq!(
            lz4diff::apply(&old, &blob, new.len(), lz4diff::Limits::DEFAULT).unwrap(),
            new
        );
        put(&format!("{name}.bin"), &input(&old, new.len(), &blob));
        valid.get_or_insert((src, dst, old, new, inner));
    }
    let (src, dst, old, new, inner) = valid.unwrap();
    let blob = Patch::encode(&src, &dst, Inner::Bsdiff, &inner).unwrap();
    let mut bad = blob.clone();
    bad[0] = b'l';
    put("magic.bin", &input(&old, new.len(), &bad));
    let mut bad = blob.clone();
    bad[10] = 7;
    put("version.bin", &input(&old, new.len(), &bad));
    let mut bad = blob.clone();
    bad[11..15].copy_from_slice(&u32::MAX.to_be_bytes());
    put("header-length.bin", &input(&old, new.len(), &bad));
    put(
        "truncated.bin",
        &input(&old, new.len(), &blob[..blob.len() - 20]),
    );
    put("wrong-dst-len.bin", &input(&old, new.len() + 1024, &blob));
    let mut huge = src.clone();
    huge.blocks[0].uncompressed_length = u64::MAX / 2;
    let b = Patch::encode(&huge, &dst, Inner::Bsdiff, &inner).unwrap();
    put("huge-cluster.bin", &input(&old, new.len(), &b));
    let mut gap = dst.clone();
    gap.blocks[2].uncompressed_offset += 1;
    let b = Patch::encode(&src, &gap, Inner::Bsdiff, &inner).unwrap();
    put("cluster-gap.bin", &input(&old, new.len(), &b));
    let mut hashed = dst.clone();
    hashed.blocks[0].sha256 = Some([7; 32]);
    hashed.blocks[0].postfix_bspatch = abupdate::bsdiff::make_bsdf2(b"a", b"b").unwrap();
    let b = Patch::encode(&src, &hashed, Inner::Bsdiff, &inner).unwrap();
    put("postfix-hash.bin", &input(&old, new.len(), &b));
    let b = Patch::encode(&src, &dst, Inner::Puffdiff, &inner).unwrap();
    put("puffdiff-inner.bin", &input(&old, new.len(), &b));
    std::fs::write(common::fuzz_seeds::expected_path(TARGET), list).unwrap();

    const LZ4: &str = "lz4_compress";
    let mut list = common::fuzz_seeds::clear_generated(LZ4, |_| true);
    let dir = common::fuzz_seeds::seeds_dir(LZ4);
    let sample = text(20_000, 3);
    for (level, target) in [
        (0u8, 4096u16),
        (0, 100),
        (1, 4096),
        (10, 4096),
        (11, 300),
        (13, 4096),
        (13, 7),
        (0, 0),
    ] {
        let mut data = vec![level];
        data.extend_from_slice(&target.to_le_bytes());
        data.extend_from_slice(&sample);
        data.extend(std::iter::repeat(0u8).take(level as usize * 100));
        let name = format!("level{level}-target{target}.bin");
        std::fs::write(dir.join(&name), &data).unwrap();
        list.push_str(&format!("{name} {}\n", check::lz4_compress(&data)));
    }
    std::fs::write(common::fuzz_seeds::expected_path(LZ4), list).unwrap();
}
