//! The error of the liblp format module, and the status code each kind maps to.

use crate::error::{Error, ErrorCode};

/// What went wrong; each kind maps to one status code (see [`LpError::code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LpErrorKind {
    /// The on-disk metadata (geometry, header, tables) is malformed or hostile.
    Malformed,
    /// The partitions asked for do not fit: super's free space, a group's maximum size, the
    /// space limit of an update, or the metadata slot size.
    NoSpace,
    /// The layout asked for is impossible on its face: an unknown or duplicate group or
    /// partition, a bad name, a partition the update lists but gives no size.
    BadRequest,
}

/// An error of the liblp format: its kind and a precise message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LpError {
    /// What kind of failure.
    pub kind: LpErrorKind,
    /// What went wrong.
    pub message: String,
}

impl LpError {
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        LpError {
            kind: LpErrorKind::Malformed,
            message: message.into(),
        }
    }

    pub(crate) fn no_space(message: impl Into<String>) -> Self {
        LpError {
            kind: LpErrorKind::NoSpace,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        LpError {
            kind: LpErrorKind::BadRequest,
            message: message.into(),
        }
    }

    /// Malformed metadata is 34 (`SlotError`: the slot's metadata cannot be used), no space
    /// is 37 (`SuperNoSpace`), an impossible request is 21 (`MalformedPayload`: it comes
    /// from the payload's `dynamic_partition_metadata`).
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            LpErrorKind::Malformed => ErrorCode::SlotError,
            LpErrorKind::NoSpace => ErrorCode::SuperNoSpace,
            LpErrorKind::BadRequest => ErrorCode::MalformedPayload,
        }
    }
}

impl From<LpError> for Error {
    fn from(e: LpError) -> Self {
        let code = e.code();
        Error::new(code, format!("super metadata: {}", e.message))
    }
}

/// Shorthand for returning a malformed-metadata error with a formatted message.
macro_rules! malformed {
    ($($arg:tt)*) => {
        return Err($crate::lp::error::LpError::malformed(format!($($arg)*)))
    };
}
pub(crate) use malformed;
