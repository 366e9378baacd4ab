//! bsdiff patches, as SOURCE_BSDIFF and BROTLI_BSDIFF operations carry them.
//!
//! Two containers exist, both a 32-byte header followed by three compressed streams
//! (control, diff, extra):
//! - `BSDIFF40`, bsdiff 4.x's own: all three streams bzip2;
//! - `BSDF2`, AOSP's `external/bsdiff`: bytes 5..8 name each stream's compressor.
//!
//! Applying follows AOSP's `bspatch` (see [`apply`] for where abupdate is stricter) and
//! never trusts a length: output never exceeds the size the caller expects, and every
//! stream is decompressed incrementally, only as far as the output needs.
//!
//! Making patches ([`make_bsdf2`]) uses the `qbsdiff` crate for the match search, then
//! re-packs its streams the way AOSP's `delta_generator` does for BROTLI_BSDIFF.

mod apply;
mod header;
#[cfg(feature = "host-tools")]
mod make;
mod stream;

pub use apply::{apply, apply_into};
pub use header::{Compressor, Format, PatchHeader, HEADER_LEN};
#[cfg(feature = "host-tools")]
pub use make::{make_bsdf2, make_bsdf2_with_quality, make_bsdiff40, BROTLI_LGWIN, BROTLI_QUALITY};
