//! The decompressors payloads need (XZ, bzip2 and zstd blobs; bzip2 and brotli bsdiff
//! streams), behind one small trait so both builds run the same engine code:
//! - [`CLibraries`]: the C libraries AOSP builds update_engine with (xz-embedded, bzip2,
//!   zstd, brotli), through their C APIs ([`ffi`]); the backend under Soong (`--cfg soong`),
//!   which links them as `static_libs`. Hosts link the same C APIs from the crates.io builds
//!   of these libraries, so the host tests run this backend too;
//! - `RustCrates` (hosts only): the `liblzma`, `bzip2`, `zstd` and `brotli` crates, which
//!   AOSP lacks.
//!
//! Every decoder pulls input only as output is asked of it, so a blob that would inflate to
//! gigabytes costs no more memory than the bytes actually taken from it.
//!
//! [`encode`] holds the zstd and brotli encoders the COW writer needs, over the same C
//! libraries, in both builds.

mod c;
#[cfg(not(soong))]
mod crates;
pub mod encode;
pub mod ffi;

use std::io::{self, Read};

pub use c::CLibraries;
#[cfg(not(soong))]
pub use crates::RustCrates;

/// The backend this build uses: the C libraries under Soong, the Rust crates elsewhere.
#[cfg(soong)]
pub type Default = CLibraries;
/// The backend this build uses: the C libraries under Soong, the Rust crates elsewhere.
#[cfg(not(soong))]
pub type Default = RustCrates;

/// Largest XZ dictionary accepted: AOSP uses 2 MiB, `xz -9` 64 MiB. This bounds the decoder's
/// memory whatever a hostile blob's header asks for.
pub const XZ_DICT_MAX: u32 = 64 << 20;
/// Largest zstd window: log 27 = 128 MiB is zstd's own default maximum for decoding.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// A compression format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// `.xz` (LZMA2), REPLACE_XZ.
    Xz,
    /// bzip2, REPLACE_BZ and BSDIFF40 streams.
    Bzip2,
    /// zstd, ZSTD operations.
    Zstd,
    /// brotli, BSDF2 streams of BROTLI_BSDIFF.
    Brotli,
}

impl Codec {
    /// The format's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Xz => "xz",
            Codec::Bzip2 => "bzip2",
            Codec::Zstd => "zstd",
            Codec::Brotli => "brotli",
        }
    }
}

/// One decompression backend.
pub trait Decompressors {
    /// A reader of `data` decompressed with `codec`. It reports
    /// [`io::ErrorKind::UnexpectedEof`] when the input ends inside the stream and
    /// [`io::ErrorKind::InvalidData`] when it does not decode.
    fn reader<'a>(codec: Codec, data: &'a [u8]) -> io::Result<Box<dyn Read + 'a>>;

    /// Decompresses all of `blob`, which must hold exactly `dst_len` bytes, into `out`
    /// (cleared first; its capacity is reused). A stream that would produce more is a
    /// decompression bomb (or a wrong payload) and is refused after one byte too many.
    fn decode(codec: Codec, blob: &[u8], dst_len: usize, out: Vec<u8>) -> Result<Vec<u8>, String> {
        let reader =
            Self::reader(codec, blob).map_err(|e| format!("{} decoder: {e}", codec.name()))?;
        read_exactly(reader, dst_len, codec.name(), out)
    }
}

/// Reads exactly `dst_len` bytes from `reader` into `out`, then checks that nothing follows.
pub(crate) fn read_exactly(
    mut reader: impl Read,
    dst_len: usize,
    what: &str,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, String> {
    // Every byte is overwritten below (or the blob refused): no need to zero what a reused
    // buffer already holds.
    out.resize(dst_len, 0);
    let mut filled = 0;
    while filled < dst_len {
        match reader.read(&mut out[filled..]) {
            Ok(0) => {
                return Err(format!(
                    "{what} blob decompresses to {filled} bytes, destination is {dst_len}"
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{what} blob is corrupt: {e}")),
        }
    }
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(out),
        Ok(_) => Err(format!(
            "{what} blob decompresses to more than its {dst_len}-byte destination"
        )),
        Err(e) => Err(format!("{what} blob is corrupt: {e}")),
    }
}

#[cfg(all(test, not(soong)))]
mod tests;
