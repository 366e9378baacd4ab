//! [`Decompressors`] over the C libraries AOSP ships (xz-embedded, bzip2, zstd, brotli): the
//! backend under Soong. Each library is driven by a [`Step`]: feed some input, get some
//! output; [`CReader`] turns that into [`Read`].
//!
//! Cargo builds (hosts) link the same C APIs from crates.io: zstd's C library (`zstd-sys`,
//! under the `zstd` crate), xz-embedded's C sources (`xz-embedded-sys`), and the C ABIs that
//! `libbz2-rs-sys` (bzip2) and `brotli` (`ffi-api`: `brotli-decompressor`'s decoder and its
//! own encoder) export.

use std::ffi::CStr;
use std::io::{self, Read};
use std::ptr;

use super::ffi;
use super::{Codec, Decompressors, XZ_DICT_MAX, ZSTD_WINDOW_LOG_MAX};

// Link the host builds of the C APIs into Cargo builds (Soong links its `static_libs`).
#[cfg(not(soong))]
use {brotli as _, libbz2_rs_sys as _, xz_embedded_sys as _, zstd as _};

/// The C libraries, as AOSP's update_engine uses them.
pub struct CLibraries;

impl Decompressors for CLibraries {
    fn reader<'a>(codec: Codec, data: &'a [u8]) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match codec {
            Codec::Xz => Box::new(CReader::new(Xz::new()?, data)),
            Codec::Bzip2 => Box::new(CReader::new(Bzip2::new()?, data)),
            Codec::Zstd => Box::new(CReader::new(Zstd::new()?, data)),
            Codec::Brotli => Box::new(CReader::new(Brotli::new()?, data)),
        })
    }
}

/// What one call into a C decoder did.
struct Progress {
    consumed: usize,
    produced: usize,
    /// The stream ended (all of it decoded and flushed).
    finished: bool,
}

/// One C decoder: decodes from `input` into `output` as far as it can in one call.
trait Step {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<Progress>;
}

/// [`Read`] over a [`Step`] and the compressed bytes.
struct CReader<'a, S> {
    decoder: S,
    input: &'a [u8],
    finished: bool,
}

impl<'a, S: Step> CReader<'a, S> {
    fn new(decoder: S, input: &'a [u8]) -> Self {
        CReader {
            decoder,
            input,
            finished: false,
        }
    }
}

impl<S: Step> Read for CReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.finished {
                return Ok(0);
            }
            let p = self.decoder.step(self.input, buf)?;
            self.input = self.input.get(p.consumed..).unwrap_or_default();
            self.finished = p.finished;
            if p.produced > 0 {
                return Ok(p.produced);
            }
            if p.consumed == 0 && !p.finished {
                return Err(if self.input.is_empty() {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "stream ends early")
                } else {
                    io::Error::new(io::ErrorKind::InvalidData, "decoder makes no progress")
                });
            }
        }
    }
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// xz-embedded in multi-call mode with the dictionary bounded by [`XZ_DICT_MAX`].
struct Xz(*mut std::ffi::c_void);

impl Xz {
    fn new() -> io::Result<Self> {
        // SAFETY: the crc init functions only fill static tables (idempotent); xz_dec_init
        // allocates a decoder or returns null, which is checked.
        let dec = unsafe {
            ffi::xz_crc32_init();
            ffi::xz_crc64_init();
            ffi::xz_dec_init(ffi::XZ_DYNALLOC, XZ_DICT_MAX)
        };
        if dec.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "xz_dec_init failed",
            ));
        }
        Ok(Xz(dec))
    }
}

impl Step for Xz {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<Progress> {
        let mut b = ffi::xz_buf {
            in_: input.as_ptr(),
            in_pos: 0,
            in_size: input.len(),
            out: output.as_mut_ptr(),
            out_pos: 0,
            out_size: output.len(),
        };
        // SAFETY: `self.0` is a live decoder; `b` points into `input` and `output` with their
        // true lengths, and xz_dec_run writes only below `out_size`.
        let ret = unsafe { ffi::xz_dec_run(self.0, &mut b) };
        let progress = Progress {
            consumed: b.in_pos,
            produced: b.out_pos,
            finished: ret == ffi::XZ_STREAM_END,
        };
        match ret {
            // An integrity check this build does not verify (e.g. CRC64): decoding goes on, as
            // xz.h allows; the payload's SHA-256 still covers the blob.
            ffi::XZ_OK | ffi::XZ_STREAM_END | ffi::XZ_UNSUPPORTED_CHECK => Ok(progress),
            // XZ_BUF_ERROR: no progress possible, i.e. truncated input; CReader reports it.
            8 => Ok(progress),
            other => Err(corrupt(format!("xz-embedded error {other}"))),
        }
    }
}

impl Drop for Xz {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from xz_dec_init and is freed exactly once, here.
        unsafe { ffi::xz_dec_end(self.0) }
    }
}

/// libbzip2's streaming decoder. The `bz_stream` is boxed: the library keeps a pointer to it.
struct Bzip2(Box<ffi::bz_stream>);

impl Bzip2 {
    fn new() -> io::Result<Self> {
        let mut strm = Box::new(ffi::bz_stream {
            next_in: ptr::null_mut(),
            avail_in: 0,
            total_in_lo32: 0,
            total_in_hi32: 0,
            next_out: ptr::null_mut(),
            avail_out: 0,
            total_out_lo32: 0,
            total_out_hi32: 0,
            state: ptr::null_mut(),
            bzalloc: ptr::null_mut(),
            bzfree: ptr::null_mut(),
            opaque: ptr::null_mut(),
        });
        // SAFETY: `strm` is a zeroed bz_stream at a stable (boxed) address, as the API needs.
        let ret = unsafe { ffi::BZ2_bzDecompressInit(&mut *strm, 0, 0) };
        if ret != ffi::BZ_OK {
            return Err(io::Error::other(format!("BZ2_bzDecompressInit: {ret}")));
        }
        Ok(Bzip2(strm))
    }
}

impl Step for Bzip2 {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<Progress> {
        // bzlib counts in `unsigned int`: offer at most that much per call.
        let in_len = input.len().min(u32::MAX as usize);
        let out_len = output.len().min(u32::MAX as usize);
        let strm = &mut *self.0;
        strm.next_in = input.as_ptr().cast_mut().cast();
        strm.avail_in = in_len as u32;
        strm.next_out = output.as_mut_ptr().cast();
        strm.avail_out = out_len as u32;
        // SAFETY: the stream was initialised by BZ2_bzDecompressInit; next_in/next_out point
        // into `input`/`output` with the lengths given (bzlib only reads next_in).
        let ret = unsafe { ffi::BZ2_bzDecompress(strm) };
        let progress = Progress {
            consumed: in_len - strm.avail_in as usize,
            produced: out_len - strm.avail_out as usize,
            finished: ret == ffi::BZ_STREAM_END,
        };
        strm.next_in = ptr::null_mut();
        strm.next_out = ptr::null_mut();
        match ret {
            ffi::BZ_OK | ffi::BZ_STREAM_END => Ok(progress),
            other => Err(corrupt(format!("bzip2 error {other}"))),
        }
    }
}

impl Drop for Bzip2 {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised and is ended exactly once, here.
        unsafe { ffi::BZ2_bzDecompressEnd(&mut *self.0) };
    }
}

/// zstd's streaming decoder with the window bounded by [`ZSTD_WINDOW_LOG_MAX`]. Frames that
/// follow each other are decoded one after the other, as `zstd -d` does.
struct Zstd(*mut std::ffi::c_void);

impl Zstd {
    fn new() -> io::Result<Self> {
        // SAFETY: creates a decoder or returns null, which is checked.
        let ds = unsafe { ffi::ZSTD_createDStream() };
        if ds.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "ZSTD_createDStream failed",
            ));
        }
        let zstd = Zstd(ds);
        // SAFETY: `ds` is a live decoder; the parameter and value are valid for it.
        let ret = unsafe {
            ffi::ZSTD_DCtx_setParameter(ds, ffi::ZSTD_D_WINDOW_LOG_MAX, ZSTD_WINDOW_LOG_MAX as i32)
        };
        zstd_result(ret)?;
        Ok(zstd)
    }
}

/// `ret` as a result: zstd's error codes become errors.
pub(super) fn zstd_result(ret: usize) -> io::Result<usize> {
    // SAFETY: both only look at the number; ZSTD_getErrorName returns a static C string.
    unsafe {
        if ffi::ZSTD_isError(ret) != 0 {
            let name = CStr::from_ptr(ffi::ZSTD_getErrorName(ret));
            return Err(corrupt(format!("zstd: {}", name.to_string_lossy())));
        }
    }
    Ok(ret)
}

impl Step for Zstd {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<Progress> {
        let mut inb = ffi::ZSTD_inBuffer {
            src: input.as_ptr().cast(),
            size: input.len(),
            pos: 0,
        };
        let mut outb = ffi::ZSTD_outBuffer {
            dst: output.as_mut_ptr().cast(),
            size: output.len(),
            pos: 0,
        };
        // SAFETY: `self.0` is a live decoder; the buffers describe `input` and `output`.
        let ret = zstd_result(unsafe { ffi::ZSTD_decompressStream(self.0, &mut outb, &mut inb) })?;
        Ok(Progress {
            consumed: inb.pos,
            produced: outb.pos,
            // 0: a frame is complete and flushed; the stream ends if no input follows.
            finished: ret == 0 && inb.pos == input.len(),
        })
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from ZSTD_createDStream and is freed exactly once, here.
        unsafe { ffi::ZSTD_freeDStream(self.0) };
    }
}

/// brotli's streaming decoder (window up to 16 MiB: large windows are not enabled).
struct Brotli(*mut std::ffi::c_void);

impl Brotli {
    fn new() -> io::Result<Self> {
        // SAFETY: null allocator callbacks select malloc/free; null result is checked.
        let state = unsafe {
            ffi::BrotliDecoderCreateInstance(ptr::null_mut(), ptr::null_mut(), ptr::null_mut())
        };
        if state.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "BrotliDecoderCreateInstance failed",
            ));
        }
        Ok(Brotli(state))
    }
}

impl Step for Brotli {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<Progress> {
        let mut avail_in = input.len();
        let mut next_in = input.as_ptr();
        let mut avail_out = output.len();
        let mut next_out = output.as_mut_ptr();
        let mut total = 0usize;
        // SAFETY: `self.0` is a live decoder; the pointers and lengths describe `input` and
        // `output`, and the decoder advances them within those bounds.
        let ret = unsafe {
            ffi::BrotliDecoderDecompressStream(
                self.0,
                &mut avail_in,
                &mut next_in,
                &mut avail_out,
                &mut next_out,
                &mut total,
            )
        };
        let progress = Progress {
            consumed: input.len() - avail_in,
            produced: output.len() - avail_out,
            finished: ret == ffi::BROTLI_DECODER_RESULT_SUCCESS,
        };
        match ret {
            ffi::BROTLI_DECODER_RESULT_SUCCESS
            | ffi::BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT
            | ffi::BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT => Ok(progress),
            _ => Err(corrupt("brotli stream is corrupt".to_string())),
        }
    }
}

impl Drop for Brotli {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from BrotliDecoderCreateInstance and is freed once, here.
        unsafe { ffi::BrotliDecoderDestroyInstance(self.0) }
    }
}
