//! LZ4DIFF: AOSP's patch format for files an EROFS image stores LZ4-compressed.
//!
//! A small change to such a file changes its compressed clusters wholesale, so the
//! generator diffs the decompressed contents instead: the operation's blob is `LZ4DIFF`, a
//! big-endian version (1) and header length, an `Lz4diffHeader` protobuf (how the source and
//! destination extents are cut into compressed clusters, and the destination's algorithm and
//! level) and an inner patch, BSDF2 (LZ4DIFF_BSDIFF) or PUFFDIFF (LZ4DIFF_PUFFDIFF). The
//! engine decompresses the source clusters, patches, and recompresses each destination
//! cluster with liblz4's algorithm at the recorded level ([`crate::lz4`]), which must give
//! the destination's exact bytes (a per-cluster `postfix_bspatch` may fix up a cluster the
//! generator's liblz4 compressed differently). Layout and semantics follow update_engine's
//! `lz4diff/`.
//!
//! Sans-I/O: bytes in, bytes out. Every length the header claims is checked against the
//! data and the [`Limits`] before it sizes anything.

mod apply;
mod header;

/// The rust-protobuf messages generated from `proto/lz4diff.proto`: by build.rs under Cargo,
/// by the `rust_protobuf` module `libabupdate_proto` under Soong, which runs no build script.
#[cfg(not(soong))]
#[path = "proto_cargo.rs"]
// Generated code: its accessors unwrap fields they have just set, which is not ours to change.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod proto;

/// The rust-protobuf messages of `proto/lz4diff.proto`, from Soong's `rust_protobuf` crate.
#[cfg(soong)]
mod proto {
    pub use abupdate_proto::lz4diff;
}

pub use apply::{apply, compress, decompress, Limits};
pub use header::{Algorithm, Block, CompressionInfo, Inner, Patch, MAGIC, VERSION};

// The tests make bsdiff patches with the host tools.
#[cfg(all(test, feature = "host-tools"))]
mod tests;
