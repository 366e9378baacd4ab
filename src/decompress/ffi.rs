//! The C APIs of the four decompression libraries, declared by hand: a few stable functions
//! and two plain structs each, from `xz.h` (xz-embedded), `bzlib.h`, `zstd.h` and
//! `brotli/decode.h`, plus the one-shot encoders of `zstd.h` and `brotli/encode.h` that the
//! COW writer uses ([`super::encode`]). Android.bp links the C libraries; Cargo builds link the
//! crates.io builds of the same APIs (see `decompress/c.rs`), and the host tests exercise
//! every declaration.
#![allow(non_camel_case_types, non_snake_case, missing_docs)]

use std::ffi::{c_char, c_int, c_uint, c_void};

// ---- xz-embedded (xz.h)

/// `enum xz_mode`: multi-call mode, dictionary allocated once the header gave its size.
pub const XZ_DYNALLOC: c_int = 2;
pub const XZ_OK: c_int = 0;
pub const XZ_STREAM_END: c_int = 1;
pub const XZ_UNSUPPORTED_CHECK: c_int = 2;

/// `struct xz_buf`.
#[repr(C)]
pub struct xz_buf {
    pub in_: *const u8,
    pub in_pos: usize,
    pub in_size: usize,
    pub out: *mut u8,
    pub out_pos: usize,
    pub out_size: usize,
}

extern "C" {
    pub fn xz_crc32_init();
    /// Present when xz-embedded is built with XZ_USE_CRC64 (liblzma's default check).
    pub fn xz_crc64_init();
    pub fn xz_dec_init(mode: c_int, dict_max: u32) -> *mut c_void;
    pub fn xz_dec_run(s: *mut c_void, b: *mut xz_buf) -> c_int;
    pub fn xz_dec_end(s: *mut c_void);
}

// ---- bzip2 (bzlib.h)

pub const BZ_OK: c_int = 0;
pub const BZ_STREAM_END: c_int = 4;

/// `bz_stream`.
#[repr(C)]
pub struct bz_stream {
    pub next_in: *mut c_char,
    pub avail_in: c_uint,
    pub total_in_lo32: c_uint,
    pub total_in_hi32: c_uint,
    pub next_out: *mut c_char,
    pub avail_out: c_uint,
    pub total_out_lo32: c_uint,
    pub total_out_hi32: c_uint,
    pub state: *mut c_void,
    /// Allocator callbacks; null selects malloc/free (we never set them).
    pub bzalloc: *mut c_void,
    pub bzfree: *mut c_void,
    pub opaque: *mut c_void,
}

extern "C" {
    pub fn BZ2_bzDecompressInit(strm: *mut bz_stream, verbosity: c_int, small: c_int) -> c_int;
    pub fn BZ2_bzDecompress(strm: *mut bz_stream) -> c_int;
    pub fn BZ2_bzDecompressEnd(strm: *mut bz_stream) -> c_int;
}

// ---- zstd (zstd.h)

/// `ZSTD_d_windowLogMax`.
pub const ZSTD_D_WINDOW_LOG_MAX: c_int = 100;

/// `ZSTD_inBuffer`.
#[repr(C)]
pub struct ZSTD_inBuffer {
    pub src: *const c_void,
    pub size: usize,
    pub pos: usize,
}

/// `ZSTD_outBuffer`.
#[repr(C)]
pub struct ZSTD_outBuffer {
    pub dst: *mut c_void,
    pub size: usize,
    pub pos: usize,
}

extern "C" {
    pub fn ZSTD_createDStream() -> *mut c_void;
    pub fn ZSTD_freeDStream(zds: *mut c_void) -> usize;
    pub fn ZSTD_DCtx_setParameter(dctx: *mut c_void, param: c_int, value: c_int) -> usize;
    pub fn ZSTD_decompressStream(
        zds: *mut c_void,
        output: *mut ZSTD_outBuffer,
        input: *mut ZSTD_inBuffer,
    ) -> usize;
    pub fn ZSTD_isError(code: usize) -> c_uint;
    pub fn ZSTD_getErrorName(code: usize) -> *const c_char;
}

/// `ZSTD_c_compressionLevel`.
pub const ZSTD_C_COMPRESSION_LEVEL: c_int = 100;
/// `ZSTD_c_windowLog`.
pub const ZSTD_C_WINDOW_LOG: c_int = 101;

extern "C" {
    pub fn ZSTD_createCCtx() -> *mut c_void;
    pub fn ZSTD_freeCCtx(cctx: *mut c_void) -> usize;
    pub fn ZSTD_CCtx_setParameter(cctx: *mut c_void, param: c_int, value: c_int) -> usize;
    pub fn ZSTD_compressBound(src_size: usize) -> usize;
    pub fn ZSTD_compress2(
        cctx: *mut c_void,
        dst: *mut c_void,
        dst_capacity: usize,
        src: *const c_void,
        src_size: usize,
    ) -> usize;
}

// ---- brotli (brotli/decode.h)

pub const BROTLI_DECODER_RESULT_ERROR: c_int = 0;
pub const BROTLI_DECODER_RESULT_SUCCESS: c_int = 1;
pub const BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT: c_int = 2;
pub const BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT: c_int = 3;

extern "C" {
    pub fn BrotliDecoderCreateInstance(
        // Allocator callbacks (function pointers); null selects malloc/free.
        alloc_func: *mut c_void,
        free_func: *mut c_void,
        opaque: *mut c_void,
    ) -> *mut c_void;
    pub fn BrotliDecoderDestroyInstance(state: *mut c_void);
    pub fn BrotliDecoderDecompressStream(
        state: *mut c_void,
        available_in: *mut usize,
        next_in: *mut *const u8,
        available_out: *mut usize,
        next_out: *mut *mut u8,
        total_out: *mut usize,
    ) -> c_int;
}

// ---- brotli (brotli/encode.h)

/// `BROTLI_MODE_GENERIC` (`BrotliEncoderMode`).
pub const BROTLI_MODE_GENERIC: c_int = 0;
/// `BROTLI_DEFAULT_WINDOW`: log2 of the window, 4 MiB.
pub const BROTLI_DEFAULT_WINDOW: c_int = 22;
/// `BROTLI_TRUE`.
pub const BROTLI_TRUE: c_int = 1;

extern "C" {
    /// 0 when the bound does not fit a `size_t`.
    pub fn BrotliEncoderMaxCompressedSize(input_size: usize) -> usize;
    pub fn BrotliEncoderCompress(
        quality: c_int,
        lgwin: c_int,
        mode: c_int,
        input_size: usize,
        input_buffer: *const u8,
        encoded_size: *mut usize,
        encoded_buffer: *mut u8,
    ) -> c_int;
}
