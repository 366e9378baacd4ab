//! Virtual A/B copy-on-write images: the libsnapshot_cow format (Android 15's
//! `fs_mgr/libsnapshot/libsnapshot_cow`), versions 2 and 3. Sans-I/O: the writer hands bytes
//! and offsets to a [`CowSink`], the reader asks a [`ReadAt`] for ranges; neither opens files.
//!
//! - [`format`]: header, op and footer structs, byte for byte;
//! - [`compress`]: none, gz (zlib), lz4 (raw block), zstd, brotli, as AOSP calls them;
//! - [`writer`]: a streaming writer (bounded memory) for v2 (clusters, footer) and v3 (scratch,
//!   sequence data, resume points, op area, multi-block compression from 4 KiB to 256 KiB);
//! - [`reader`]: parses both versions (up to a label, or whole), reads op data, gives the merge
//!   order and checks it, and applies a COW over a base image;
//! - [`view`]: the snapshot's view (base plus COW) read block by block, at any offset.

pub mod compress;
pub mod format;
pub mod image;
pub mod reader;
pub mod view;
pub mod writer;

pub use format::{Compression, Header, OpType};
pub use image::write_image_cow;
pub use reader::{CowReader, Op, ReadAt};
pub use view::{BlockMap, SnapshotView, UnitCache};
pub use writer::{CowOptions, CowSink, CowSummary, CowWriter};

/// An error of the COW format module.
#[derive(Debug, thiserror::Error)]
pub enum CowError {
    /// The COW's bytes break the format: a bad header, op, offset or compressed stream.
    #[error("malformed COW: {0}")]
    Malformed(String),
    /// The caller asked for something the format cannot hold.
    #[error("invalid COW request: {0}")]
    Invalid(String),
    /// A compressor failed.
    #[error("COW compression failed: {0}")]
    Compression(String),
    /// The sink or the source failed.
    #[error("COW I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl CowError {
    pub(crate) fn malformed(m: impl Into<String>) -> Self {
        CowError::Malformed(m.into())
    }
    pub(crate) fn invalid(m: impl Into<String>) -> Self {
        CowError::Invalid(m.into())
    }
    pub(crate) fn compression(m: impl std::fmt::Display) -> Self {
        CowError::Compression(m.to_string())
    }
}
