//! [`Decompressors`] over the `liblzma`, `bzip2`, `zstd` and `brotli` crates: the host
//! backend. AOSP carries none of them, so Soong builds use [`super::CLibraries`].

use std::io::{self, Read};

use super::{read_exactly, Codec, Decompressors, ZSTD_WINDOW_LOG_MAX};

/// liblzma's memory limit: enough for [`super::XZ_DICT_MAX`] plus the decoder's own state.
const XZ_MEMLIMIT: u64 = 80 << 20;
/// Size of the brotli decoder's input buffer.
const BROTLI_INPUT_BUFFER: usize = 64 * 1024;

/// The Rust crates (liblzma, bzip2, zstd, brotli).
pub struct RustCrates;

impl Decompressors for RustCrates {
    fn reader<'a>(codec: Codec, data: &'a [u8]) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match codec {
            Codec::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
                    .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(data, stream))
            }
            Codec::Bzip2 => Box::new(bzip2::read::BzDecoder::new(data)),
            Codec::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(data)?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(decoder)
            }
            Codec::Brotli => Box::new(brotli::Decompressor::new(data, BROTLI_INPUT_BUFFER)),
        })
    }

    fn decode(codec: Codec, blob: &[u8], dst_len: usize, out: Vec<u8>) -> Result<Vec<u8>, String> {
        match codec {
            Codec::Xz => decode_xz(blob, dst_len, out),
            _ => {
                let reader = Self::reader(codec, blob)
                    .map_err(|e| format!("{} decoder: {e}", codec.name()))?;
                read_exactly(reader, dst_len, codec.name(), out)
            }
        }
    }
}

/// Decodes an XZ blob straight into the spare capacity of `out`: no zeroing pass and no copy
/// through an intermediate reader buffer. Room for one byte more than the destination is what
/// tells a stream that is too long (a bomb, or the wrong payload) from one that fits; decoding
/// stops when the room is full, so a bomb costs no more memory than an honest blob.
fn decode_xz(blob: &[u8], dst_len: usize, mut out: Vec<u8>) -> Result<Vec<u8>, String> {
    use liblzma::stream::{Action, Status, Stream};
    let corrupt = |e: &dyn std::fmt::Display| format!("xz blob is corrupt: {e}");
    let mut stream =
        Stream::new_stream_decoder(XZ_MEMLIMIT, 0).map_err(|e| format!("xz decoder: {e}"))?;
    out.clear();
    out.reserve_exact(dst_len.saturating_add(1));
    loop {
        let consumed = usize::try_from(stream.total_in()).unwrap_or(usize::MAX);
        let input = blob.get(consumed..).unwrap_or_default();
        let before = (stream.total_in(), out.len());
        let status = stream
            .process_vec(input, &mut out, Action::Finish)
            .map_err(|e| corrupt(&e))?;
        if out.len() > dst_len {
            return Err(format!(
                "xz blob decompresses to more than its {dst_len}-byte destination"
            ));
        }
        match status {
            Status::StreamEnd => break,
            _ if before == (stream.total_in(), out.len()) => return Err(corrupt(&"truncated")),
            _ => {}
        }
    }
    if out.len() != dst_len {
        return Err(format!(
            "xz blob decompresses to {} bytes, destination is {dst_len}",
            out.len()
        ));
    }
    Ok(out)
}
