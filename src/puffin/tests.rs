//! Round trips over deflate from flate2 (miniz) at every level, patches made and applied here,
//! and hostile headers. Interop with AOSP's own `puffin` is in `tests/puffin_aosp.rs`.

use std::io::Write;

use super::*;
use crate::ErrorCode;

fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Text-like data with repeats at all distances, plus some noise.
fn sample(n: usize, seed: u32) -> Vec<u8> {
    let words = [
        &b"system "[..],
        b"vendor ",
        b"product ",
        b"apk ",
        b"\n",
        b"0123456789",
    ];
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x % 7 == 0 {
            out.push((x >> 8) as u8);
        } else {
            out.extend_from_slice(words[(x % 6) as usize]);
        }
    }
    out.truncate(n);
    out
}

/// Checks the blocks of a raw deflate stream (`gzip` false) or a gzip file round-trip.
fn round_trip(stream: &[u8], gzip: bool) -> StreamInfo {
    let blocks = if gzip {
        locate::gzip(stream)
    } else {
        locate::deflate_stream(stream, 0).unwrap().0
    };
    for b in &blocks {
        assert!(locate::round_trips(stream, *b), "block {b:?}");
    }
    let info = stream_info(stream, &blocks).unwrap();
    let puff = puff_stream(stream, &info, u64::MAX).unwrap();
    assert_eq!(puff.len() as u64, info.puff_length);
    assert_eq!(huff_stream(&puff, &info, stream.len()).unwrap(), stream);
    info
}

#[test]
fn every_level_round_trips() {
    for level in [0, 1, 2, 4, 6, 9] {
        for (n, seed) in [(0, 1), (1, 2), (100, 3), (70_000, 4)] {
            let data = sample(n, seed);
            let info = round_trip(&deflate(&data, level), false);
            if level > 0 && n >= 100 {
                assert!(!info.deflates.is_empty(), "level {level} n {n}");
            }
            let gz = round_trip(&gzip(&data, level), true);
            assert_eq!(gz.deflates.len(), info.deflates.len());
        }
    }
}

#[test]
fn runs_and_long_copies() {
    // Long literal runs (incompressible), 258-byte copies (zeros), distance 32768.
    let mut data = vec![0u8; 100_000];
    data.extend((0..70_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let far: Vec<u8> = data[100_000..132_768].to_vec();
    data.extend_from_slice(&far);
    for level in [1, 6, 9] {
        round_trip(&deflate(&data, level), false);
    }
}

#[test]
fn patch_made_here_applies() {
    let old = sample(200_000, 7);
    let mut new = old.clone();
    new[1000..1010].copy_from_slice(b"CHANGED!!!");
    new.extend_from_slice(b"appended tail");
    let (src, dst) = (gzip(&old, 6), gzip(&new, 6));
    let patch = make(&src, &dst, &locate::gzip(&src), &locate::gzip(&dst)).unwrap();
    assert_eq!(&patch[..4], MAGIC);
    assert!(patch.len() < 2000, "patch of {} bytes", patch.len());
    assert_eq!(
        apply(&src, &patch, dst.len(), Limits::DEFAULT).unwrap(),
        dst
    );
    // The wrong source is refused, not patched into garbage silently: either the puff
    // extents do not fit it or the bsdiff output does not huff.
    let other = gzip(&sample(200_000, 8), 6);
    assert!(apply(&other, &patch, dst.len(), Limits::DEFAULT).is_err());
}

fn header_with(src: StreamInfo, dst: StreamInfo) -> Vec<u8> {
    encode(&src, &dst, b"").unwrap()
}

#[test]
fn hostile_headers_refused() {
    let src = gzip(&sample(10_000, 9), 6);
    let blocks = locate::gzip(&src);
    let mut info = stream_info(&src, &blocks).unwrap();
    let dst = info.clone();
    let code = |patch: &[u8], dst_len: usize| {
        apply(&src, patch, dst_len, Limits::DEFAULT)
            .unwrap_err()
            .code
    };
    // A deflate extent past the source.
    let mut past = info.clone();
    past.deflates[0].offset = src.len() as u64 * 8 + 8;
    assert_eq!(
        code(&header_with(past, dst.clone()), src.len()),
        ErrorCode::MalformedPayload
    );
    // A puffed length beyond the cap, and one within it but far beyond the data: refused
    // before anything of that size exists.
    info.puff_length = 1 << 40;
    assert_eq!(
        code(&header_with(info.clone(), dst.clone()), src.len()),
        ErrorCode::MalformedPayload
    );
    info.puff_length = 400 << 20;
    assert_eq!(
        code(&header_with(info, dst.clone()), src.len()),
        ErrorCode::MalformedPayload
    );
    // A destination over 150 MiB.
    assert_eq!(
        code(&header_with(StreamInfo::default(), dst.clone()), 151 << 20),
        ErrorCode::MalformedPayload
    );
    // Bad magic, truncated header, a zucchini inner patch that is not brotli.
    assert_eq!(code(b"PUF2\0\0\0\0", 1), ErrorCode::MalformedPayload);
    assert_eq!(code(b"PUF1\0\0\0\x10ab", 1), ErrorCode::MalformedPayload);
    let mut zuc = header_with(StreamInfo::default(), StreamInfo::default());
    // type = ZUCCHINI (field 4, varint 1) appended to the header, and its length fixed.
    let hlen = u32::from_be_bytes(zuc[4..8].try_into().unwrap()) + 2;
    zuc.splice(8 + hlen as usize - 2..8 + hlen as usize - 2, [0x20, 0x01]);
    zuc[4..8].copy_from_slice(&hlen.to_be_bytes());
    assert_eq!(code(&zuc, 1), ErrorCode::MalformedPayload);
}

#[test]
fn puff_format_bytes() {
    // A fixed block holding "aaaaa" as miniz writes it: 'a', 'a', a copy of 3 at distance 1.
    let stream = deflate(b"aaaaa", 6);
    let info = round_trip(&stream, false);
    let puff = puff_stream(&stream, &info, u64::MAX).unwrap();
    // metadata (len 1, header: final, fixed), a run of 2, the copy, end of block, then the
    // padding bits of the last byte as one byte after the block.
    assert_eq!(puff, [0, 0, 0xA0, 1, b'a', b'a', 0x80, 0, 0, 0xFF, 0x81, 0]);
}
