//! Zucchini: Chromium's patch format that AOSP's ZUCCHINI operation carries (brotli of an
//! "ensemble" patch, `Zucc`). Facts from AOSP's `external/zucchini` (Chromium
//! `components/zucchini`) and update_engine's `ExecuteZucchiniOperation`; patches from AOSP's
//! `zucchini -gen` and the generator's ZUCCHINI blobs apply here byte for byte.
//!
//! This build applies raw (`NoOp`) elements (equivalences, extra data, raw delta), ELF
//! elements of x86 (`Ex86`), x86-64 (`Ex64`), ARM (`EA32`) and AArch64 (`EA64`), and DEX
//! elements (`DEX `), whose references are then corrected by Zucchini's ELF or DEX
//! disassembler. The Windows and ZTF types AOSP does not build fail with Unsupported (32)
//! before any output is produced.
//!
//! Sans-I/O: bytes in, bytes out. Streams are borrowed from the patch and checked against the
//! element they describe; no buffer is sized by what a patch claims.

mod address;
mod apply;
mod arm;
mod dex;
mod dex_code;
mod dex_refs;
mod elf;
mod gnu_sort;
mod llvm_sort;
mod patch;
mod references;

pub use apply::{apply, apply_in_order, apply_op};
pub use patch::{Element, ExeType, Header, Patch, MAGIC};
pub use references::SortOrder;

#[cfg(test)]
mod dex_tests;
#[cfg(test)]
mod elf_tests;
#[cfg(test)]
mod sort_oracle;
#[cfg(test)]
mod tests;
