//! The one-shot C encoders of zstd and brotli, called as libsnapshot_cow's compressors call
//! them: zstd through one context whose level and window are set once, then `ZSTD_compress2`
//! per unit; brotli through `BrotliEncoderCompress` (generic mode, default window). They sit
//! beside the decoders because they are the same C libraries: one set of declarations
//! ([`super::ffi`]) and one way of linking them (Android.bp's `static_libs`; on hosts the
//! crates that export the C ABIs, see `c.rs`), so the COW writer runs the same code in both
//! builds.

use std::ffi::c_void;
use std::io;

use super::c::zstd_result;
use super::ffi;

/// A zstd compression context (`ZSTD_CCtx`) with its level and window set.
pub struct ZstdEncoder(*mut c_void);

// SAFETY: a ZSTD_CCtx has no thread affinity: zstd allows using it from any thread, one at a
// time, and `&mut self` on every use rules out concurrent calls.
unsafe impl Send for ZstdEncoder {}

impl ZstdEncoder {
    /// A context compressing at `level` with a window of `1 << window_log` bytes.
    pub fn new(level: i32, window_log: u32) -> io::Result<Self> {
        // SAFETY: creates a context or returns null, which is checked.
        let cctx = unsafe { ffi::ZSTD_createCCtx() };
        if cctx.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "ZSTD_createCCtx failed",
            ));
        }
        let encoder = ZstdEncoder(cctx);
        let window = i32::try_from(window_log)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "zstd window too large"))?;
        for (param, value) in [
            (ffi::ZSTD_C_COMPRESSION_LEVEL, level),
            (ffi::ZSTD_C_WINDOW_LOG, window),
        ] {
            // SAFETY: `cctx` is a live context; zstd checks the value and reports an error
            // code for one out of range.
            zstd_result(unsafe { ffi::ZSTD_CCtx_setParameter(cctx, param, value) })?;
        }
        Ok(encoder)
    }

    /// Replaces `out`'s contents with one zstd frame of `data`.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        // SAFETY: a pure function of the number; an input too large gives an error code.
        let bound = zstd_result(unsafe { ffi::ZSTD_compressBound(data.len()) })?;
        out.clear();
        out.resize(bound, 0);
        // SAFETY: `self.0` is a live context; `out` holds `bound` writable bytes and `data`
        // its own length, and zstd writes at most `dst_capacity` bytes.
        let n = zstd_result(unsafe {
            ffi::ZSTD_compress2(
                self.0,
                out.as_mut_ptr().cast(),
                bound,
                data.as_ptr().cast(),
                data.len(),
            )
        })?;
        out.truncate(n);
        Ok(())
    }
}

impl Drop for ZstdEncoder {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from ZSTD_createCCtx and is freed exactly once, here.
        unsafe { ffi::ZSTD_freeCCtx(self.0) };
    }
}

/// Replaces `out`'s contents with `data` as one brotli stream at `quality` (0 to 11).
pub fn brotli_compress(quality: i32, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    // SAFETY: a pure function of the number.
    let bound = unsafe { ffi::BrotliEncoderMaxCompressedSize(data.len()) };
    if bound == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "brotli input too large",
        ));
    }
    out.clear();
    out.resize(bound, 0);
    let mut size = bound;
    // SAFETY: `data` and `out` are valid for their lengths; the encoder reads `input_size`
    // bytes, writes at most `*encoded_size` (= `out.len()`) bytes and stores the count there.
    let ok = unsafe {
        ffi::BrotliEncoderCompress(
            quality,
            ffi::BROTLI_DEFAULT_WINDOW,
            ffi::BROTLI_MODE_GENERIC,
            data.len(),
            data.as_ptr(),
            &mut size,
            out.as_mut_ptr(),
        )
    };
    if ok != ffi::BROTLI_TRUE || size > bound {
        return Err(io::Error::other("BrotliEncoderCompress failed"));
    }
    out.truncate(size);
    Ok(())
}
