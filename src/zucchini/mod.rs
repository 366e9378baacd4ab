//! Zucchini: Chromium's patch format that AOSP's ZUCCHINI operation carries (brotli of an
//! "ensemble" patch, `Zucc`). Facts from AOSP's `external/zucchini` (Chromium
//! `components/zucchini`) and update_engine's `ExecuteZucchiniOperation`; patches from AOSP's
//! `zucchini -gen` and the generator's ZUCCHINI blobs apply here byte for byte.
//!
//! This build applies raw (`NoOp`) elements: equivalences, extra data and raw delta. Elements
//! of executables (ELF, DEX) also carry reference corrections that need Zucchini's
//! disassemblers, which are not implemented: such a patch fails with Unsupported (32) before
//! any output is produced.
//!
//! Sans-I/O: bytes in, bytes out. Streams are borrowed from the patch and checked against the
//! element they describe; no buffer is sized by what a patch claims.

mod apply;
mod patch;

pub use apply::{apply, apply_op};
pub use patch::{Element, ExeType, Header, Patch, MAGIC};

#[cfg(test)]
mod tests;
