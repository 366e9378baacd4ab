//! The COW's block compressors, as libsnapshot_cow's `cow_compress.cpp` and
//! `cow_decompress.cpp` use them: gz is a zlib stream (`compress2`, level 9 by default), lz4 a
//! raw LZ4 block, zstd a frame with the window cut to the compression unit, brotli a stream
//! at quality 11 and window 22. Which of them falls back to storing the data raw is the
//! writer's business, not this module's.

use std::io::{Read, Write};

use super::format::Compression;
use super::CowError;
use crate::decompress::encode::{brotli_compress, ZstdEncoder};
use crate::decompress::{self, Codec, Decompressors};

/// `CompressWorker::GetDefaultCompressionLevel`.
pub fn default_level(alg: Compression) -> i32 {
    match alg {
        Compression::Gz => 9,
        Compression::Brotli => 11,
        Compression::Zstd => 3,
        Compression::Lz4 | Compression::None => 0,
    }
}

/// One compressor; keeps its state (zstd's context) between units. Not shared between threads.
pub struct Compressor {
    alg: Compression,
    level: i32,
    zstd: Option<ZstdEncoder>,
    /// The last output of [`Compressor::compress_slice`], reused so a unit costs no allocation.
    scratch: Vec<u8>,
}

impl Compressor {
    /// `unit` is the largest input size (the block size, or v3's compression factor); zstd's
    /// window is cut to it as AOSP does.
    pub fn new(alg: Compression, level: i32, unit: u32) -> Result<Compressor, CowError> {
        let zstd = if alg == Compression::Zstd {
            let window = unit.max(1 << 10).ilog2();
            Some(ZstdEncoder::new(level, window).map_err(CowError::compression)?)
        } else {
            None
        };
        Ok(Compressor {
            alg,
            level,
            zstd,
            scratch: Vec::new(),
        })
    }

    /// The compressed form of `data` in a buffer the compressor keeps: the same bytes as
    /// [`Compressor::compress`], without allocating once the buffer is large enough (the
    /// writer's hot path).
    pub fn compress_slice(&mut self, data: &[u8]) -> Result<&[u8], CowError> {
        if self.alg == Compression::Lz4 {
            // The buffer keeps its largest size: no zeroing per unit on the hot path.
            let max = lz4_flex::block::get_maximum_output_size(data.len());
            if self.scratch.len() < max {
                self.scratch.resize(max, 0);
            }
            let n = lz4_flex::block::compress_into(data, &mut self.scratch)
                .map_err(CowError::compression)?;
            return Ok(&self.scratch[..n]);
        }
        let mut out = std::mem::take(&mut self.scratch);
        let done = self.compress_into(data, &mut out);
        self.scratch = out;
        done?;
        Ok(&self.scratch)
    }

    /// The compressed form of `data`, whatever its size.
    pub fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>, CowError> {
        let mut out = Vec::new();
        self.compress_into(data, &mut out)?;
        Ok(out)
    }

    /// Replaces `out`'s contents with the compressed form of `data`.
    fn compress_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CowError> {
        out.clear();
        match self.alg {
            Compression::None => out.extend_from_slice(data),
            Compression::Lz4 => {
                out.resize(lz4_flex::block::get_maximum_output_size(data.len()), 0);
                let n = lz4_flex::block::compress_into(data, out).map_err(CowError::compression)?;
                out.truncate(n);
            }
            Compression::Gz => {
                let level = flate2::Compression::new(self.level.clamp(0, 9).unsigned_abs());
                let mut enc = flate2::write::ZlibEncoder::new(out, level);
                enc.write_all(data).map_err(CowError::compression)?;
                enc.finish().map_err(CowError::compression)?;
            }
            Compression::Zstd => match self.zstd.as_mut() {
                Some(c) => c.compress(data, out).map_err(CowError::compression)?,
                None => return Err(CowError::compression("zstd compressor missing")),
            },
            Compression::Brotli => brotli_compress(self.level.clamp(0, 11), data, out)
                .map_err(CowError::compression)?,
        }
        Ok(())
    }
}

/// Decompresses `data` into exactly `out.len()` bytes; anything else (short, long, corrupt)
/// is an error. zstd and brotli go through the payload decompressors ([`decompress`]), gz
/// through flate2, lz4 through lz4_flex.
pub fn decompress(alg: Compression, data: &[u8], out: &mut [u8]) -> Result<(), CowError> {
    let want = out.len();
    let short = |got: usize| {
        CowError::malformed(format!(
            "{} data decompressed to {got} bytes, expected {want}",
            alg.name()
        ))
    };
    let codec_reader = |codec: Codec| {
        decompress::Default::reader(codec, data)
            .map_err(|e| CowError::malformed(format!("{}: {e}", alg.name())))
    };
    match alg {
        Compression::None => {
            if data.len() != want {
                return Err(short(data.len()));
            }
            out.copy_from_slice(data);
        }
        Compression::Lz4 => {
            let got = lz4_flex::block::decompress_into(data, out)
                .map_err(|e| CowError::malformed(format!("lz4: {e}")))?;
            if got != want {
                return Err(short(got));
            }
        }
        Compression::Zstd => read_exact_stream(codec_reader(Codec::Zstd)?, out, alg)?,
        Compression::Gz => read_exact_stream(flate2::read::ZlibDecoder::new(data), out, alg)?,
        Compression::Brotli => read_exact_stream(codec_reader(Codec::Brotli)?, out, alg)?,
    }
    Ok(())
}

/// Fills `out` from a decoding stream, which must then be at its end.
fn read_exact_stream(mut r: impl Read, out: &mut [u8], alg: Compression) -> Result<(), CowError> {
    r.read_exact(out)
        .map_err(|e| CowError::malformed(format!("{}: {e}", alg.name())))?;
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(CowError::malformed(format!(
            "{} data decompresses to more than {} bytes",
            alg.name(),
            out.len()
        ))),
        Err(e) => Err(CowError::malformed(format!("{}: {e}", alg.name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_round_trips() {
        let mut data = vec![0u8; 16384];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 7 % 13) as u8;
        }
        for alg in [
            Compression::None,
            Compression::Gz,
            Compression::Brotli,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut c = Compressor::new(alg, default_level(alg), 16384).unwrap();
            let z = c.compress(&data).unwrap();
            assert_eq!(c.compress_slice(&data).unwrap(), &z[..], "{alg:?}");
            let mut out = vec![0u8; data.len()];
            decompress(alg, &z, &mut out).unwrap();
            assert_eq!(out, data, "{alg:?}");
            let mut small = vec![0u8; data.len() - 1];
            assert!(decompress(alg, &z, &mut small).is_err(), "{alg:?}");
        }
    }
}
