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

/// The C encoders (`encode`) make streams both backends decode, the zstd one with the window
/// it was given (a decoder limited to that window takes it, one limited below refuses it).
#[test]
fn c_encoders_round_trip_through_both_backends() {
    let data = sample();
    let mut zstd_enc = encode::ZstdEncoder::new(3, 16).unwrap();
    let mut zstd_out = Vec::new();
    zstd_enc.compress(&data, &mut zstd_out).unwrap();
    let mut brotli_out = Vec::new();
    encode::brotli_compress(5, &data, &mut brotli_out).unwrap();
    for (codec, packed) in [(Codec::Zstd, &zstd_out), (Codec::Brotli, &brotli_out)] {
        assert!(packed.len() < data.len() / 2, "{codec:?}");
        let c = CLibraries::decode(codec, packed, data.len(), Vec::new()).unwrap();
        let rust = RustCrates::decode(codec, packed, data.len(), Vec::new()).unwrap();
        assert!(c == data && rust == data, "{codec:?}");
    }
    // The context keeps its parameters: a second unit with the same encoder decodes too.
    zstd_enc.compress(&data[..4096], &mut zstd_out).unwrap();
    assert_eq!(
        zstd::bulk::decompress(&zstd_out, 4096).unwrap(),
        &data[..4096]
    );

    // The same bytes as the zstd crate's compressor with that level and window: both call
    // ZSTD_compress2 of the same C library.
    zstd_enc.compress(&data, &mut zstd_out).unwrap();
    let mut crate_enc = zstd::bulk::Compressor::new(3).unwrap();
    crate_enc
        .set_parameter(zstd::zstd_safe::CParameter::WindowLog(16))
        .unwrap();
    assert!(zstd_out == crate_enc.compress(&data).unwrap());
    let window = |max: u32| {
        let mut out = Vec::new();
        let mut d = zstd::stream::read::Decoder::new(&zstd_out[..]).unwrap();
        d.window_log_max(max).unwrap();
        d.read_to_end(&mut out).map(|_| out)
    };
    assert_eq!(window(16).unwrap(), data);
    assert!(window(15).is_err());
    assert!(encode::ZstdEncoder::new(3, 40).is_err());
}
