//! The structured status codes of abupdate, and the library's error type.
//!
//! Every failure maps to exactly one [`ErrorCode`]; the class (tens digit) tells the
//! caller which phase failed, the code tells it why, and the message says what exactly.
//! The CLI exits with the code and the service reports it over Binder.

use std::fmt;

/// A structured status code: 0 OK, 10–19 download, 20–29 verification, 30–39 install,
/// 40–49 post-check. The numbers are part of the public API (CLI exit codes, AIDL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// Success.
    Ok = 0,

    /// The payload could not be fetched (I/O on the source, network, HTTP error).
    DownloadFailed = 10,
    /// The server answered with something else than the bytes asked for.
    DownloadProtocol = 11,
    /// The payload changed while it was being downloaded or between resumes.
    DownloadChanged = 12,
    /// Not enough storage for the update state.
    NotEnoughStorage = 13,
    /// The payload size differs from `FILE_SIZE` or from what the manifest implies.
    SizeMismatch = 14,
    /// The update feed is not authentic (its signature does not verify against the trusted
    /// keys) or not a feed this build can read.
    FeedInvalid = 15,
    /// The update feed is older than the running build or than the last feed accepted: a
    /// replay of old offers.
    FeedStale = 16,
    /// The update feed is for another device model or channel.
    FeedNotForDevice = 17,

    /// Generic verification failure.
    VerificationFailed = 20,
    /// The payload is malformed: bad header, manifest, extents, names, sizes.
    MalformedPayload = 21,
    /// The metadata signature or `METADATA_HASH` did not verify.
    MetadataSignature = 22,
    /// The payload signature or `FILE_HASH` did not verify.
    PayloadSignature = 23,
    /// An operation's blob hash did not match, or a signed payload's operation lacks its
    /// `data_sha256_hash` or `src_sha256_hash`.
    PayloadHash = 24,
    /// A source partition is not the base this delta was made for.
    SourceHash = 25,
    /// The update is older than what runs now (timestamp, version, patch level).
    Downgrade = 26,
    /// An AVB rollback index is below the device's floor.
    RollbackIndex = 27,
    /// An AVB signature or chain key did not verify.
    AvbSignature = 28,
    /// No trusted payload key is configured (or a key file could not be read), and unsigned
    /// payloads are not explicitly allowed on a debuggable build.
    NoTrustedKey = 29,

    /// Generic install failure.
    InstallFailed = 30,
    /// Writing or reading a partition or the state store failed.
    DeviceError = 31,
    /// The payload needs an operation or version this engine does not support.
    Unsupported = 32,
    /// A target partition is missing or too small.
    PartitionMissing = 33,
    /// The slot metadata could not be read or updated.
    SlotError = 34,
    /// Another update is running, or the request is not valid in the current state.
    Busy = 35,
    /// The caller is not allowed to do this.
    PermissionDenied = 36,
    /// The target slot's dynamic partitions do not fit in `super`.
    SuperNoSpace = 37,
    /// The operation was cancelled.
    Cancelled = 38,
    /// A Virtual A/B snapshot update or merge is pending: another update's state must not be
    /// broken.
    MergePending = 39,

    /// Generic post-check failure.
    PostCheckFailed = 40,
    /// A written partition does not hash to `new_partition_info.hash`.
    PartitionHash = 41,
    /// The verity hash tree or FEC could not be computed or placed.
    Verity = 42,
    /// The new slot would not pass `avb_slot_verify`: a partition it names is missing or short,
    /// or its contents do not match the hash or hashtree descriptor.
    AvbContents = 43,
    /// A postinstall program of the new slot failed (non-zero exit, killed, could not be
    /// started), or its partition could not be mounted; the slot is not switched.
    PostinstallFailed = 44,
    /// A postinstall program ran past its timeout and was killed; the slot is not switched.
    PostinstallTimeout = 45,
}

impl ErrorCode {
    /// Every code, for tables and round-trip tests.
    pub const ALL: [ErrorCode; 35] = [
        Self::Ok,
        Self::DownloadFailed,
        Self::DownloadProtocol,
        Self::DownloadChanged,
        Self::NotEnoughStorage,
        Self::SizeMismatch,
        Self::FeedInvalid,
        Self::FeedStale,
        Self::FeedNotForDevice,
        Self::VerificationFailed,
        Self::MalformedPayload,
        Self::MetadataSignature,
        Self::PayloadSignature,
        Self::PayloadHash,
        Self::SourceHash,
        Self::Downgrade,
        Self::RollbackIndex,
        Self::AvbSignature,
        Self::NoTrustedKey,
        Self::InstallFailed,
        Self::DeviceError,
        Self::Unsupported,
        Self::PartitionMissing,
        Self::SlotError,
        Self::Busy,
        Self::PermissionDenied,
        Self::SuperNoSpace,
        Self::Cancelled,
        Self::MergePending,
        Self::PostCheckFailed,
        Self::PartitionHash,
        Self::Verity,
        Self::AvbContents,
        Self::PostinstallFailed,
        Self::PostinstallTimeout,
    ];

    /// The status code's number.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code numbered `value`, if there is one.
    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_i32() == value)
    }

    /// The class this code belongs to, as the tens digit names it.
    pub fn class(self) -> &'static str {
        match self as u8 / 10 {
            0 => "ok",
            // A download, or a local file or descriptor: the payload's bytes did not arrive.
            1 => "reading the payload failed",
            2 => "verification failed",
            3 => "install failed",
            _ => "post-check failed",
        }
    }

    /// A short stable name, used in logs and `dump`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::DownloadFailed => "DOWNLOAD_FAILED",
            Self::DownloadProtocol => "DOWNLOAD_PROTOCOL",
            Self::DownloadChanged => "DOWNLOAD_CHANGED",
            Self::NotEnoughStorage => "NOT_ENOUGH_STORAGE",
            Self::SizeMismatch => "SIZE_MISMATCH",
            Self::FeedInvalid => "FEED_INVALID",
            Self::FeedStale => "FEED_STALE",
            Self::FeedNotForDevice => "FEED_NOT_FOR_DEVICE",
            Self::VerificationFailed => "VERIFICATION_FAILED",
            Self::MalformedPayload => "MALFORMED_PAYLOAD",
            Self::MetadataSignature => "METADATA_SIGNATURE",
            Self::PayloadSignature => "PAYLOAD_SIGNATURE",
            Self::PayloadHash => "PAYLOAD_HASH",
            Self::SourceHash => "SOURCE_HASH",
            Self::Downgrade => "DOWNGRADE",
            Self::RollbackIndex => "ROLLBACK_INDEX",
            Self::AvbSignature => "AVB_SIGNATURE",
            Self::NoTrustedKey => "NO_TRUSTED_KEY",
            Self::InstallFailed => "INSTALL_FAILED",
            Self::DeviceError => "DEVICE_ERROR",
            Self::Unsupported => "UNSUPPORTED",
            Self::PartitionMissing => "PARTITION_MISSING",
            Self::SlotError => "SLOT_ERROR",
            Self::Busy => "BUSY",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::SuperNoSpace => "SUPER_NO_SPACE",
            Self::Cancelled => "CANCELLED",
            Self::MergePending => "MERGE_PENDING",
            Self::PostCheckFailed => "POST_CHECK_FAILED",
            Self::PartitionHash => "PARTITION_HASH",
            Self::Verity => "VERITY",
            Self::AvbContents => "AVB_CONTENTS",
            Self::PostinstallFailed => "POSTINSTALL_FAILED",
            Self::PostinstallTimeout => "POSTINSTALL_TIMEOUT",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.as_i32(), self.name(), self.class())
    }
}

/// The library's error: a status code, a precise message, and the error that caused it (an
/// [`std::io::Error`] and the like), which [`std::error::Error::source`] returns.
///
/// The message is complete on its own (it also says what the cause said), because it is what
/// crosses Binder and goes to logs; the cause is kept for code that asks what kind of failure
/// it was ([`Error::io_kind`]) instead of reading the text.
#[derive(Debug, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct Error {
    /// The status code.
    pub code: ErrorCode,
    /// What went wrong, for logs and users.
    pub message: String,
    #[source]
    cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error with `code` and `message`, without a source.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            cause: None,
        }
    }

    /// An I/O failure on a device or the state store, with what was being done; keeps `err`
    /// as the source.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Error::new(ErrorCode::DeviceError, format!("{what}: {err}")).caused_by(err)
    }

    /// Records `cause` as this error's source (its text should already be in the message).
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    /// The same error (code and cause) with `what: ` put before its message.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The kind of the first [`std::io::Error`] in the source chain, if there is one.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            next = cause.source();
        }
        None
    }

    /// A `MalformedPayload` (21) error.
    pub fn malformed(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::MalformedPayload, message)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most characters of a foreign string a message shows.
const SHOWN_CHARS: usize = 40;

/// Text that came from outside (a payload, a server, a caller) as a message may carry it:
/// quoted and escaped, and past `SHOWN_CHARS` (40) characters cut, with its length. Messages reach
/// logs, `dumpsys` and callers; they must not replay someone else's bytes to them.
pub fn shown(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_none() {
        return format!("{head:?}");
    }
    format!("{head:?}... ({} bytes)", text.len())
}

/// [`shown`] for bytes that may not be UTF-8.
pub fn shown_bytes(bytes: &[u8]) -> String {
    shown(&String::from_utf8_lossy(bytes))
}

/// Builds an [`Error`] with a formatted message: `err!(MalformedPayload, "bad {x}")`.
#[macro_export]
macro_rules! err {
    ($code:ident, $($arg:tt)*) => {
        $crate::error::Error::new($crate::error::ErrorCode::$code, format!($($arg)*))
    };
}

/// Returns early with an [`Error`]: `bail!(MalformedPayload, "bad {x}")`.
#[macro_export]
macro_rules! bail {
    ($code:ident, $($arg:tt)*) => {
        return Err($crate::err!($code, $($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_in_their_class() {
        for code in ErrorCode::ALL {
            let n = code.as_i32();
            assert_eq!(ErrorCode::from_i32(n), Some(code));
            let expected = match n {
                0 => "ok",
                10..=19 => "reading the payload failed",
                20..=29 => "verification failed",
                30..=39 => "install failed",
                40..=49 => "post-check failed",
                _ => panic!("code {n} outside every class"),
            };
            assert_eq!(code.class(), expected, "{code}");
        }
        assert_eq!(ErrorCode::from_i32(99), None);
    }

    #[test]
    fn foreign_text_is_escaped_and_cut() {
        assert_eq!(shown("system"), "\"system\"");
        assert_eq!(shown("a\x1b[2Jb\n"), "\"a\\u{1b}[2Jb\\n\"");
        let long = "x".repeat(10_000);
        let text = shown(&long);
        assert!(
            text.len() < 60 && text.ends_with("... (10000 bytes)"),
            "{text}"
        );
        assert_eq!(shown_bytes(b"\xff\x00ok"), "\"\u{fffd}\\0ok\"");
    }

    #[test]
    fn io_errors_keep_their_source() {
        use std::error::Error as _;
        let cause = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = Error::io("opening /x", cause).context("misc");
        assert_eq!(e.code, ErrorCode::DeviceError);
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(e.message.starts_with("misc: opening /x: "), "{e}");
        let source = e.source().map(ToString::to_string);
        assert_eq!(
            source,
            Some(std::io::Error::from(std::io::ErrorKind::NotFound).to_string())
        );
        assert_eq!(err!(MalformedPayload, "no cause").io_kind(), None);
    }

    #[test]
    fn message_carries_code() {
        let e = err!(SourceHash, "partition {} differs", "system");
        assert_eq!(e.code, ErrorCode::SourceHash);
        assert_eq!(
            e.to_string(),
            "partition system differs [25 (SOURCE_HASH, verification failed)]"
        );
    }
}
