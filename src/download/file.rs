//! The payload from a local file, a block device, or an inherited descriptor.
//!
//! Regular files and block devices are read with positioned reads (`pread`), so a descriptor
//! shared with the caller keeps its own offset untouched. Pipes and other streams can only be
//! read in order: the bytes before the start are read and dropped.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};

use crate::download::control::{cancelled, Interrupt, TransferControl};
use crate::error::Result;

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
    pub fn open(
        mut file: File,
        name: String,
        base: u64,
        size: Option<u64>,
        start: u64,
        control: TransferControl,
    ) -> Result<FileSource> {
        let failed = |e: io::Error| crate::err!(DownloadFailed, "{name}: {e}");
        let metadata = file.metadata().map_err(failed)?;
        let length = if metadata.is_file() {
            Some(metadata.len())
        } else if metadata.file_type().is_block_device() {
            // A descriptor shares its offset with the caller's: put it back where it was.
            let here = file.stream_position().map_err(failed)?;
            let end = file.seek(SeekFrom::End(0)).map_err(failed)?;
            file.seek(SeekFrom::Start(here)).map_err(failed)?;
            Some(end)
        } else {
            None
        };
        let size = match (length, size) {
            (Some(length), Some(size)) if base == 0 && length != size => {
                crate::bail!(
                    SizeMismatch,
                    "{name} has {length} bytes, the payload {size}"
                )
            }
            (Some(length), Some(size)) if length < base + size => crate::bail!(
                SizeMismatch,
                "{name} has {length} bytes, the payload needs bytes up to {}",
                base + size
            ),
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
            source.skip(base + start)?;
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
        match self.control.check() {
            Ok(()) => {}
            Err(Interrupt::Cancelled) => return Err(cancelled()),
            Err(Interrupt::Suspended) => self.control.wait_resumed()?,
        }
        let want = match self.size {
            Some(size) => out
                .len()
                .min(usize::try_from(size - self.pos).unwrap_or(usize::MAX)),
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
        self.pos += n as u64;
        self.fetched += n as u64;
        Ok(n)
    }

    pub fn total_size(&self) -> Option<u64> {
        self.size
    }

    pub fn bytes_fetched(&self) -> u64 {
        self.fetched
    }

    fn read_at_pos(&mut self, out: &mut [u8]) -> Result<usize> {
        loop {
            let result = if self.positioned {
                self.file.read_at(out, self.base + self.pos)
            } else {
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
            self.fetched += n as u64;
            count -= n as u64;
        }
        Ok(())
    }
}
