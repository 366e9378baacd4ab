//! The payload from a local file, a block device, or an inherited descriptor.
//!
//! Regular files and block devices are read with positioned reads (`pread`), so a descriptor
//! shared with the caller keeps its own offset untouched. A path must name one of those two:
//! it is opened without blocking (a FIFO's `open` would wait for a writer) and anything else is
//! refused. A descriptor may also be a pipe or a socket, the caller's stream: those are read in
//! order (the bytes before the start are read and dropped), and every read first waits in short
//! `poll` slices, so that cancelling or suspending never waits for a writer that may not come.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::download::control::{cancelled, Interrupt, TransferControl};
use crate::error::Result;

/// The longest a wait for a stream's bytes goes without looking at the transfer control.
const SLICE_MS: u16 = 100;

/// Where a local source's handle came from: what it may be depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A path the downloader opened: a regular file or a block device only.
    Path,
    /// A descriptor the caller handed over: also a pipe or a socket.
    Descriptor,
}

pub(crate) struct FileSource {
    file: File,
    name: String,
    positioned: bool,
    base: u64,
    size: Option<u64>,
    pos: u64,
    control: TransferControl,
    fetched: u64,
}

impl FileSource {
    /// `base`, `size` and `start` are as `download::open` checked them (`base + size` and
    /// `base + start` fit a u64, `start <= size`).
    pub fn open(
        mut file: File,
        name: String,
        origin: Origin,
        span: (u64, Option<u64>, u64),
        control: TransferControl,
    ) -> Result<FileSource> {
        let (base, size, start) = span;
        let failed = |e: io::Error| crate::err!(DownloadFailed, "{name}: {e}");
        let metadata = file.metadata().map_err(failed)?;
        let kind = metadata.file_type();
        let length = if kind.is_file() {
            Some(metadata.len())
        } else if kind.is_block_device() {
            // A descriptor shares its offset with the caller's: put it back where it was.
            let here = file.stream_position().map_err(failed)?;
            let end = file.seek(SeekFrom::End(0)).map_err(failed)?;
            file.seek(SeekFrom::Start(here)).map_err(failed)?;
            Some(end)
        } else if origin == Origin::Descriptor && (kind.is_fifo() || kind.is_socket()) {
            None
        } else {
            crate::bail!(
                DownloadFailed,
                "{name} is {}: a payload file must be a regular file or a block device{}",
                describe(&kind),
                if origin == Origin::Descriptor {
                    " (or a pipe or socket passed as a descriptor)"
                } else {
                    ""
                }
            );
        };
        let size = match (length, size) {
            (Some(length), Some(size)) if base == 0 && length != size => {
                crate::bail!(
                    SizeMismatch,
                    "{name} has {length} bytes, the payload {size}"
                )
            }
            (Some(length), Some(size))
                if base.checked_add(size).map_or(true, |end| length < end) =>
            {
                crate::bail!(
                    SizeMismatch,
                    "{name} has {length} bytes, the payload needs {size} bytes from {base}"
                )
            }
            (Some(_), Some(size)) => Some(size),
            (Some(length), None) if length < base => {
                crate::bail!(
                    SizeMismatch,
                    "{name} has {length} bytes, the payload starts at {base}"
                )
            }
            (Some(length), None) => Some(length - base),
            (None, size) => size,
        };
        if size.is_some_and(|size| start > size) {
            crate::bail!(
                SizeMismatch,
                "start {start} lies past the payload's end in {name}"
            );
        }
        let mut source = FileSource {
            file,
            name,
            positioned: length.is_some(),
            base,
            size,
            pos: 0,
            control,
            fetched: 0,
        };
        if !source.positioned {
            let skip = base.checked_add(start).ok_or_else(|| {
                crate::err!(
                    SizeMismatch,
                    "start {start} at offset {base} lies past any file"
                )
            })?;
            source.skip(skip)?;
        }
        source.pos = start;
        Ok(source)
    }

    /// Duplicates descriptor `fd` (close-on-exec) so that the source owns its own handle.
    pub fn inherited(fd: RawFd) -> Result<File> {
        if fd < 0 {
            crate::bail!(DownloadFailed, "invalid descriptor {fd}");
        }
        // SAFETY: `fd://N` is the caller's statement that descriptor N is open for the duration
        // of this call (N is not -1, checked above); it is borrowed only to duplicate it, and
        // the source owns the duplicate from then on. Were N closed, the dup fails with EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| crate::err!(DownloadFailed, "descriptor {fd}: {e}"))?;
        Ok(File::from(owned))
    }

    pub fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        self.steer()?;
        let want = match self.size {
            Some(size) => out
                .len()
                .min(usize::try_from(size.saturating_sub(self.pos)).unwrap_or(usize::MAX)),
            None => out.len(),
        };
        if want == 0 {
            return Ok(0);
        }
        let n = self.read_at_pos(&mut out[..want])?;
        if n == 0 {
            if let Some(size) = self.size {
                crate::bail!(
                    DownloadChanged,
                    "{} ended at payload byte {} of {size}: it shrank while being read",
                    self.name,
                    self.pos
                );
            }
            self.size = Some(self.pos);
        }
        self.pos = self.pos.saturating_add(n as u64);
        self.fetched = self.fetched.saturating_add(n as u64);
        Ok(n)
    }

    pub fn total_size(&self) -> Option<u64> {
        self.size
    }

    pub fn bytes_fetched(&self) -> u64 {
        self.fetched
    }

    /// Fails once cancelled; waits while suspended.
    fn steer(&self) -> Result<()> {
        match self.control.check() {
            Ok(()) => Ok(()),
            Err(Interrupt::Cancelled) => Err(cancelled()),
            Err(Interrupt::Suspended) => self.control.wait_resumed(),
        }
    }

    /// Waits until a stream has bytes (or its end) to read, a slice at a time.
    fn wait_readable(&self) -> Result<()> {
        loop {
            self.steer()?;
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(SLICE_MS)) {
                // Readable, closed or failed: the read tells which.
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => crate::bail!(DownloadFailed, "waiting for {}: {e}", self.name),
            }
        }
    }

    fn read_at_pos(&mut self, out: &mut [u8]) -> Result<usize> {
        loop {
            let result = if self.positioned {
                // `download::open` checked that `base + size` fits, and `pos <= size`.
                let at = self.base.saturating_add(self.pos);
                self.file.read_at(out, at)
            } else {
                self.wait_readable()?;
                self.file.read(out)
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => {
                    return other.map_err(|e| {
                        crate::err!(
                            DownloadFailed,
                            "reading {} at payload byte {}: {e}",
                            self.name,
                            self.pos
                        )
                    })
                }
            }
        }
    }

    fn skip(&mut self, mut count: u64) -> Result<()> {
        let mut scratch = vec![0u8; 64 * 1024];
        while count > 0 {
            let want = scratch
                .len()
                .min(usize::try_from(count).unwrap_or(usize::MAX));
            let n = self.read_at_pos(&mut scratch[..want])?;
            if n == 0 {
                crate::bail!(
                    SizeMismatch,
                    "{} ended {count} bytes before the start",
                    self.name
                );
            }
            self.fetched = self.fetched.saturating_add(n as u64);
            count -= n as u64;
        }
        Ok(())
    }
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}
