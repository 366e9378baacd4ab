use super::*;
use crate::ErrorCode;

fn text(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::new();
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(format!("entry{} value{} ", x % 97, x % 13).as_bytes());
    }
    out.truncate(n);
    out
}

/// Cuts `plain` into 4 KiB clusters as mkfs.erofs does: each filled from its offset on.
fn clusters(plain: &[u8], algorithm: Algorithm, zero_padding: bool) -> CompressionInfo {
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < plain.len() {
        let (_, n) = match algorithm {
            Algorithm::Lz4hc(l) => crate::lz4::compress_hc_dest_size(&plain[at..], 4096, l),
            _ => crate::lz4::compress_dest_size(&plain[at..], 4096),
        }
        .unwrap();
        blocks.push(Block {
            uncompressed_offset: at as u64,
            uncompressed_length: n as u64,
            // A tail that fits a cluster uncompressed is stored as is.
            compressed_length: (n as u64).min(4096),
            ..Default::default()
        });
        at += n;
    }
    CompressionInfo {
        algorithm,
        blocks,
        zero_padding,
    }
}

fn code(r: crate::error::Result<Vec<u8>>) -> ErrorCode {
    r.err().unwrap().code
}

#[test]
fn clusters_round_trip() {
    let plain = text(60_000, 3);
    for (algo, zp) in [
        (Algorithm::Lz4, false),
        (Algorithm::Lz4, true),
        (Algorithm::Lz4hc(9), true),
        (Algorithm::Lz4hc(12), false),
    ] {
        let info = clusters(&plain, algo, zp);
        let image = compress(&plain, &info).unwrap();
        assert_eq!(image.len() as u64, info.compressed_len());
        assert_eq!(decompress(&image, &info, Limits::DEFAULT).unwrap(), plain);
    }
}

#[test]
fn applies_a_bsdiff_inner_patch() {
    let old_plain = text(50_000, 5);
    let mut new_plain = old_plain.clone();
    new_plain[1000..1010].copy_from_slice(b"0123456789");
    new_plain.extend_from_slice(&text(3000, 9));
    let src = clusters(&old_plain, Algorithm::Lz4hc(9), true);
    let dst = clusters(&new_plain, Algorithm::Lz4hc(9), true);
    let old = compress(&old_plain, &src).unwrap();
    let new = compress(&new_plain, &dst).unwrap();
    let inner = crate::bsdiff::make_bsdf2(&old_plain, &new_plain).unwrap();
    let blob = Patch::encode(&src, &dst, Inner::Bsdiff, &inner).unwrap();
    assert_eq!(apply(&old, &blob, new.len(), Limits::DEFAULT).unwrap(), new);
}

#[test]
fn refuses_hostile_headers() {
    let plain = text(20_000, 7);
    let src = clusters(&plain, Algorithm::Lz4, false);
    let old = compress(&plain, &src).unwrap();
    let inner = crate::bsdiff::make_bsdf2(&plain, &plain).unwrap();
    let ok = Patch::encode(&src, &src, Inner::Bsdiff, &inner).unwrap();
    assert_eq!(apply(&old, &ok, old.len(), Limits::DEFAULT).unwrap(), old);

    // Bad magic, version, header length past the blob.
    let mut bad = ok.clone();
    bad[0] = b'X';
    assert_eq!(
        code(apply(&old, &bad, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );
    let mut bad = ok.clone();
    bad[10] = 2;
    assert_eq!(
        code(apply(&old, &bad, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );
    let mut bad = ok.clone();
    bad[11..15].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        code(apply(&old, &bad, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );

    // A cluster claiming a huge decompressed size, clusters out of order, clusters past
    // the extents.
    let mut huge = src.clone();
    huge.blocks[0].uncompressed_length = 1 << 40;
    let blob = Patch::encode(&huge, &src, Inner::Bsdiff, &inner).unwrap();
    assert_eq!(
        code(apply(&old, &blob, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );
    let mut gap = src.clone();
    gap.blocks[1].uncompressed_offset += 1;
    let blob = Patch::encode(&gap, &src, Inner::Bsdiff, &inner).unwrap();
    assert_eq!(
        code(apply(&old, &blob, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );
    let mut past = src.clone();
    past.blocks[0].compressed_length += 4096;
    let blob = Patch::encode(&past, &src, Inner::Bsdiff, &inner).unwrap();
    assert_eq!(
        code(apply(&old, &blob, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );
    // A destination whose clusters exceed the operation.
    let blob = Patch::encode(&src, &past, Inner::Bsdiff, &inner).unwrap();
    assert_eq!(
        code(apply(&old, &blob, old.len(), Limits::DEFAULT)),
        ErrorCode::MalformedPayload
    );
    // Over the limit.
    let small = Limits {
        max_decompressed: 1000,
    };
    assert_eq!(
        code(apply(&old, &ok, old.len(), small)),
        ErrorCode::MalformedPayload
    );
}

#[test]
fn postfix_patches_fix_clusters_and_hashes_guard_them() {
    let plain = text(20_000, 11);
    let mut dst = clusters(&plain, Algorithm::Lz4, true);
    let good = compress(&plain, &dst).unwrap();
    // Pretend the image's first cluster differs from what this compressor makes.
    let mut image = good.clone();
    image[4095] ^= 0xFF;
    let recompressed = &good[..4096];
    dst.blocks[0].postfix_bspatch =
        crate::bsdiff::make_bsdf2(recompressed, &image[..4096]).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, recompressed);
    dst.blocks[0].sha256 = Some(digest.as_ref().try_into().unwrap());
    assert_eq!(compress(&plain, &dst).unwrap(), image);
    dst.blocks[0].sha256 = Some([0; 32]);
    assert_eq!(code(compress(&plain, &dst)), ErrorCode::PayloadHash);
}
