//! The C libraries' backend against the Rust crates' on streams the host encoders make:
//! same output, and the same refusals for truncated, corrupt and oversized streams.

use std::io::{Read, Write};

use super::*;

fn sample() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| ((i * 7) % 251) as u8 ^ (i >> 11) as u8)
        .collect()
}

fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Xz => {
            let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        Codec::Bzip2 => {
            let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
        Codec::Brotli => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams::default();
            brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
            out
        }
    }
}

const CODECS: [Codec; 4] = [Codec::Xz, Codec::Bzip2, Codec::Zstd, Codec::Brotli];

#[test]
fn c_libraries_decode_what_the_crates_decode() {
    let data = sample();
    for codec in CODECS {
        let packed = compress(codec, &data);
        let c = CLibraries::decode(codec, &packed, data.len(), Vec::new()).unwrap();
        let rust = RustCrates::decode(codec, &packed, data.len(), Vec::new()).unwrap();
        assert!(c == data && rust == data, "{codec:?}");

        // Streaming in odd-sized pieces gives the same bytes.
        let mut reader = CLibraries::reader(codec, &packed).unwrap();
        let mut out = Vec::new();
        let mut piece = [0u8; 777];
        loop {
            let n = reader.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&piece[..n]);
        }
        assert!(out == data, "{codec:?} streamed");
    }
}

#[test]
fn both_refuse_truncated_corrupt_and_oversized_streams() {
    let data = sample();
    for codec in CODECS {
        let packed = compress(codec, &data);
        let truncated = &packed[..packed.len() / 2];
        let mut garbage = packed.clone();
        for b in garbage.iter_mut().skip(8).step_by(5) {
            *b ^= 0x5a;
        }
        for (name, blob, len) in [
            ("truncated", truncated, data.len()),
            ("corrupt", &garbage[..], data.len()),
            ("too long", &packed[..], data.len() - 1),
            ("too short", &packed[..], data.len() + 1),
        ] {
            let c = CLibraries::decode(codec, blob, len, Vec::new());
            let rust = RustCrates::decode(codec, blob, len, Vec::new());
            assert!(c.is_err() && rust.is_err(), "{codec:?} {name}: {c:?}");
        }
        let e = CLibraries::decode(codec, &packed, data.len() - 1, Vec::new()).unwrap_err();
        assert!(e.contains("more than its"), "{codec:?}: {e}");
    }
}
