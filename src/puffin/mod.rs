//! Puffin: AOSP's PUFFDIFF patch format, and the puff/huff transform under it.
//!
//! A PUFFDIFF operation diffs files holding deflate data (APKs, JARs, gzip) in a form where
//! a small change stays small: each deflate block is "puffed" into a byte-aligned stream of
//! its literals and copies ([`puff`]), the bsdiff runs between the puffed source and the
//! puffed destination, and the patched puff is "huffed" back into deflate ([`huff`]), bit for
//! bit what the destination held, because a puff records the block types, code lengths and
//! symbol choices. The formats and the stream mapping follow AOSP's `external/puffin`; patches
//! from its `puffin --operation=puffdiff` apply here and ours apply with its `puffpatch`.
//!
//! Sans-I/O: bytes in, bytes out. Every length a patch claims is checked against the data
//! and the [`Limits`] before it is used, and no buffer is sized by a claim alone.

mod bits;
mod huff;
mod huffman;
pub mod locate;
mod patch;
mod puff;
mod stream;

/// The rust-protobuf messages generated from `proto/puffin.proto`: by build.rs under Cargo,
/// by the `rust_protobuf` module `libabupdate_proto` under Soong, which runs no build script.
#[cfg(not(soong))]
#[path = "proto_cargo.rs"]
// Generated code: its accessors unwrap fields they have just set, which is not ours to change.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod proto;

/// The rust-protobuf messages of `proto/puffin.proto`, from Soong's `rust_protobuf` crate.
#[cfg(soong)]
mod proto {
    pub use abupdate_proto::puffin;
}

#[cfg(feature = "host-tools")]
pub use patch::make;
pub use patch::{apply, encode, Inner, Limits, Patch, MAGIC};
pub use puff::BitExtent;
pub use stream::{huff, huff_stream, puff, puff_stream, stream_info, ByteExtent, StreamInfo};

// The tests make patches and deflate streams with host tools.
#[cfg(all(test, feature = "host-tools"))]
mod tests;
