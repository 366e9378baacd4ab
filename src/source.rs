//! The engine's [`PayloadSource`] over the `download` module: a payload at a URL (`http://`,
//! `https://`), a file (`file://` or a plain path) or an inherited descriptor (`fd://N`),
//! possibly at an offset inside an OTA zip.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::download::{self, SourceOptions, TransferControl};
use crate::engine::{Observer, PayloadSource, Progress};
use crate::error::Result;

/// Where a payload is: location, offset of its first byte, and its size when known.
pub struct Source {
    location: String,
    offset: u64,
    size: Option<u64>,
    options: SourceOptions,
    fetched: Arc<AtomicU64>,
}

impl Source {
    /// `size` bytes (or up to the end) at `offset` of `location`, as `applyPayload` names them.
    pub fn new(location: &str, offset: u64, size: Option<u64>, options: SourceOptions) -> Self {
        Source {
            location: location.to_owned(),
            offset,
            size,
            options,
            fetched: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A whole payload file.
    pub fn file(path: &Path) -> Result<Self> {
        let len = std::fs::metadata(path)
            .map_err(|e| crate::err!(DownloadFailed, "{}: {e}", path.display()))?
            .len();
        let location = path
            .to_str()
            .ok_or_else(|| crate::err!(DownloadFailed, "{} is not UTF-8", path.display()))?;
        Ok(Self::new(location, 0, Some(len), SourceOptions::default()))
    }

    /// Bytes received from the network or file so far, re-downloads included.
    pub fn bytes_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The handle that suspends, resumes and cancels this source's transfers.
    pub fn control(&self) -> &TransferControl {
        &self.options.control
    }
}

/// An [`Observer`] under which cancelling the transfer cancels the whole apply.
///
/// A cancelled transfer fails the engine's next payload read with `Cancelled` (38), but the
/// engine does not read the payload while it verifies the written partitions, and those reads
/// take as long as the writes. Checking the transfer's state wherever the engine asks its
/// observer stops those phases too, at the same safe points and with the same checkpoint.
pub struct CancelWithTransfer<'a> {
    observer: &'a dyn Observer,
    control: TransferControl,
}

impl<'a> CancelWithTransfer<'a> {
    /// `observer`, also cancelled when `control` is.
    pub fn new(observer: &'a dyn Observer, control: TransferControl) -> Self {
        CancelWithTransfer { observer, control }
    }
}

impl Observer for CancelWithTransfer<'_> {
    fn progress(&self, progress: &Progress) {
        self.observer.progress(progress);
    }

    fn is_cancelled(&self) -> bool {
        self.control.is_cancelled() || self.observer.is_cancelled()
    }
}

impl PayloadSource for Source {
    fn size(&self) -> Option<u64> {
        self.size
    }

    fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        let stream = download::open(
            &self.location,
            self.offset,
            self.size,
            offset,
            &self.options,
        )?;
        if self.size.is_none() {
            self.size = stream
                .total_size()
                .map(|total| total.saturating_sub(self.offset));
        }
        Ok(Box::new(Counted {
            stream,
            fetched: Arc::clone(&self.fetched),
            counted: 0,
        }))
    }
}

/// Adds a stream's fetched bytes to the source's total as it goes.
struct Counted {
    stream: download::PayloadStream,
    fetched: Arc<AtomicU64>,
    counted: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        let now = self.stream.bytes_fetched();
        self.fetched
            .fetch_add(now - self.counted, Ordering::Relaxed);
        self.counted = now;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Stage;
    use std::sync::atomic::AtomicBool;

    struct Recorder {
        seen: AtomicU64,
        cancelled: AtomicBool,
    }

    impl Observer for Recorder {
        fn progress(&self, progress: &Progress) {
            self.seen.store(progress.bytes_done, Ordering::SeqCst);
        }
        fn is_cancelled(&self) -> bool {
            self.cancelled.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn cancelling_the_transfer_cancels_the_apply() {
        let inner = Recorder {
            seen: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
        };
        let control = TransferControl::new();
        let observer = CancelWithTransfer::new(&inner, control.clone());
        observer.progress(&Progress {
            stage: Stage::Writing,
            bytes_done: 42,
            bytes_total: 100,
            operations_done: 1,
            operations_total: 2,
            partition: None,
        });
        assert_eq!(
            inner.seen.load(Ordering::SeqCst),
            42,
            "progress is passed on"
        );
        assert!(!observer.is_cancelled());
        // A suspended transfer is not a cancelled apply.
        control.suspend();
        assert!(!observer.is_cancelled());
        control.cancel();
        assert!(observer.is_cancelled());

        // The wrapped observer's own answer still counts.
        let fresh = CancelWithTransfer::new(&inner, TransferControl::new());
        inner.cancelled.store(true, Ordering::SeqCst);
        assert!(fresh.is_cancelled());
    }
}
