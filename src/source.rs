//! Payload sources on local storage: a payload file, possibly at an offset inside an OTA zip.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::engine::PayloadSource;
use crate::error::{Error, Result};

/// A payload stored in a file, starting at `offset` (non-zero inside an OTA zip, where the
/// payload is a stored entry).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    offset: u64,
    size: u64,
}

impl FileSource {
    /// The whole file is the payload.
    pub fn open(path: &Path) -> Result<Self> {
        let len = std::fs::metadata(path)
            .map_err(|e| {
                Error::new(
                    crate::ErrorCode::DownloadFailed,
                    format!("{}: {e}", path.display()),
                )
            })?
            .len();
        Ok(FileSource {
            path: path.to_owned(),
            offset: 0,
            size: len,
        })
    }

    /// `size` bytes at `offset` are the payload (`applyPayload(url, offset, size, ...)`).
    pub fn with_range(path: &Path, offset: u64, size: u64) -> Result<Self> {
        let whole = Self::open(path)?;
        if offset.checked_add(size).is_none_or(|end| end > whole.size) {
            return Err(crate::err!(
                SizeMismatch,
                "{}: range {offset}+{size} is beyond the file ({} bytes)",
                path.display(),
                whole.size
            ));
        }
        Ok(FileSource {
            offset,
            size,
            ..whole
        })
    }
}

impl PayloadSource for FileSource {
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        let io = |e| {
            Error::new(
                crate::ErrorCode::DownloadFailed,
                format!("{}: {e}", self.path.display()),
            )
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(self.offset + offset))
            .map_err(io)?;
        Ok(Box::new(file.take(self.size.saturating_sub(offset))))
    }
}
