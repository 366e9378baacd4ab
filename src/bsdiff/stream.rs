//! One of a patch's three streams, decompressed on demand.
//!
//! The decoders pull compressed input only as the caller asks for output, so a stream that
//! would inflate to gigabytes costs no more memory than the bytes actually taken from it
//! (bzip2 keeps at most one 900 kB block, brotli at most its 16 MiB window: large-window
//! brotli is not enabled).

use std::io::{self, Read};

use super::header::Compressor;
use crate::decompress::{Codec, Decompressors, Default as Backend};
use crate::error::Result;

pub(crate) struct Stream<'p> {
    name: &'static str,
    source: Source<'p>,
    /// Whether any output was asked of the stream (AOSP checks only used brotli streams).
    used: bool,
}

enum Source<'p> {
    Stored(&'p [u8]),
    Bz2(Box<dyn Read + 'p>),
    Brotli(Box<dyn Read + 'p>),
    /// The decoder could not be set up (out of memory): every read fails with this.
    Failed(io::ErrorKind, String),
}

impl<'p> Stream<'p> {
    /// A stream named `name` (for messages) reading `data` compressed with `compressor`.
    pub(crate) fn new(name: &'static str, compressor: Compressor, data: &'p [u8]) -> Self {
        let source = match compressor {
            Compressor::None => Source::Stored(data),
            Compressor::Bz2 => match Backend::reader(Codec::Bzip2, data) {
                Ok(reader) => Source::Bz2(reader),
                Err(e) => Source::Failed(e.kind(), e.to_string()),
            },
            Compressor::Brotli => match Backend::reader(Codec::Brotli, data) {
                Ok(reader) => Source::Brotli(reader),
                Err(e) => Source::Failed(e.kind(), e.to_string()),
            },
        };
        Stream {
            name,
            source,
            used: false,
        }
    }

    /// Fills `buf` completely, or fails with MalformedPayload when the stream ends early or
    /// does not decode.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.used |= !buf.is_empty();
        let result = match &mut self.source {
            Source::Stored(data) => data.read_exact(buf),
            Source::Bz2(decoder) => decoder.read_exact(buf),
            Source::Brotli(decoder) => decoder.read_exact(buf),
            Source::Failed(kind, message) => Err(io::Error::new(*kind, message.clone())),
        };
        result.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                crate::err!(MalformedPayload, "bsdiff: {} stream ends early", self.name)
            }
            _ => crate::err!(
                MalformedPayload,
                "bsdiff: {} stream does not decode: {e}",
                self.name
            ),
        })
    }

    /// Checks the stream's end once the output is complete, as AOSP's `Close()` does: a
    /// brotli stream that was read from must end where the output did (AOSP:
    /// `BrotliDecoderIsFinished`). bzip2 and stored streams may go on; AOSP ignores the rest.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let Source::Brotli(decoder) = &mut self.source else {
            return Ok(());
        };
        if !self.used {
            return Ok(());
        }
        match decoder.read(&mut [0u8; 1]) {
            Ok(0) => Ok(()),
            Ok(_) => Err(crate::err!(
                MalformedPayload,
                "bsdiff: {} stream holds more than the patch uses",
                self.name
            )),
            Err(e) => Err(crate::err!(
                MalformedPayload,
                "bsdiff: {} stream does not end cleanly: {e}",
                self.name
            )),
        }
    }
}

// The tests compress with the host crates, which AOSP lacks.
#[cfg(all(test, not(soong)))]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::ErrorCode;

    fn bz2(data: &[u8]) -> Vec<u8> {
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let params = brotli::enc::BrotliEncoderParams::default();
        brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
        out
    }

    #[test]
    fn reads_each_compressor_in_pieces() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for (compressor, packed) in [
            (Compressor::None, data.clone()),
            (Compressor::Bz2, bz2(&data)),
            (Compressor::Brotli, brotli(&data)),
        ] {
            let mut s = Stream::new("diff", compressor, &packed);
            let mut a = vec![0u8; 24];
            let mut b = vec![0u8; data.len() - 24];
            s.read_exact(&mut a).unwrap();
            s.read_exact(&mut b).unwrap();
            a.extend_from_slice(&b);
            assert_eq!(a, data, "{compressor:?}");
            let err = s.read_exact(&mut [0u8; 1]).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedPayload);
            assert!(
                err.message.contains("diff stream ends early"),
                "{compressor:?}: {err}"
            );
        }
    }

    #[test]
    fn corrupt_input_is_malformed() {
        for compressor in [Compressor::Bz2, Compressor::Brotli] {
            let mut s = Stream::new(
                "extra",
                compressor,
                b"definitely not compressed data at all",
            );
            let err = s.read_exact(&mut [0u8; 16]).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedPayload, "{compressor:?}");
        }
    }

    #[test]
    fn truncated_input_is_malformed() {
        let data = vec![42u8; 10_000];
        for (compressor, packed) in [
            (Compressor::Bz2, bz2(&data)),
            (Compressor::Brotli, brotli(&data)),
        ] {
            let cut = &packed[..packed.len() / 2];
            let mut s = Stream::new("control", compressor, cut);
            let mut out = vec![0u8; data.len()];
            assert_eq!(
                s.read_exact(&mut out).unwrap_err().code,
                ErrorCode::MalformedPayload,
                "{compressor:?}"
            );
        }
    }
}
