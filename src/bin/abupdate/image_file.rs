//! Image files (or block devices) read at offsets by the `abupdate cow` commands. A regular
//! file also lends its bytes without a copy: [`ReadAt::with_range`] maps the window asked for
//! (prefaulted, read-only, private) and unmaps it afterwards, as AOSP's `mkcow` maps its
//! image, but a window at a time so the mapped pages never add up to the whole image. Copying
//! a gigabyte out of the page cache with `pread` cost about as much CPU as compressing it.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;

use abupdate::cow::{CowError, ReadAt};
use anyhow::{Context, Result};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// An image file or block device read at offsets.
pub struct ImageFile {
    file: File,
    size: u64,
    /// A regular file, whose windows can be mapped.
    mappable: bool,
}

impl ImageFile {
    pub fn open(path: &Path) -> Result<ImageFile> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = abupdate::device::device_size(&file)?;
        let mappable = file.metadata()?.is_file();
        Ok(ImageFile {
            file,
            size,
            mappable,
        })
    }
}

/// Mappings start at a multiple of this: a multiple of every page size Linux uses (4, 16 and
/// 64 KiB).
const MAP_ALIGN: u64 = 65536;

/// A read-only mapping of part of a file, unmapped when dropped.
struct Window {
    base: NonNull<std::ffi::c_void>,
    mapped: usize,
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `base` and `mapped` are exactly what `mmap` returned and was given, and no
        // slice of the mapping outlives the window (they are lent only inside `with_range`).
        let _ = unsafe { munmap(self.base, self.mapped) };
    }
}

impl ImageFile {
    /// Maps `len` (non-zero) bytes at `offset`, which lie inside the file; returns the window
    /// and where the bytes start in it.
    fn map(&self, offset: u64, len: NonZeroUsize) -> std::io::Result<(Window, usize)> {
        let start = offset & !(MAP_ALIGN - 1);
        let skew = usize::try_from(offset - start).map_err(std::io::Error::other)?;
        let mapped = len
            .checked_add(skew)
            .ok_or_else(|| std::io::Error::other("window too large"))?;
        let file_offset = i64::try_from(start).map_err(std::io::Error::other)?;
        // SAFETY: a new private read-only mapping chosen by the kernel (no address given), so
        // it aliases no Rust object. The bytes read through it are the file's; a file
        // truncated under the mapping would fault (SIGBUS), as it would for AOSP's mkcow: the
        // input image of a host tool is not expected to shrink while it runs.
        let base = unsafe {
            mmap(
                None,
                mapped,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
                &self.file,
                file_offset,
            )
        }?;
        Ok((
            Window {
                base,
                mapped: mapped.get(),
            },
            skew,
        ))
    }
}

impl ReadAt for ImageFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn lends(&self) -> bool {
        self.mappable
    }

    fn with_range(
        &self,
        offset: u64,
        len: usize,
        buf: &mut Vec<u8>,
        f: &mut dyn FnMut(&[u8]) -> Result<(), CowError>,
    ) -> Result<(), CowError> {
        let end = offset.checked_add(len as u64);
        let (Some(n), true) = (NonZeroUsize::new(len), self.mappable) else {
            buf.resize(len, 0);
            self.read_at(offset, buf)?;
            return f(buf);
        };
        if end.map_or(true, |e| e > self.size) {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let (window, skew) = self.map(offset, n)?;
        // SAFETY: the window maps `skew + len` readable bytes from `base` (see `map`), lives
        // until the end of this function, and the slice is only lent to `f` for that time.
        let bytes =
            unsafe { std::slice::from_raw_parts(window.base.as_ptr().cast::<u8>().add(skew), len) };
        f(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lent windows hold the file's bytes wherever they start (mapped from an aligned offset
    /// below), the empty range included; a range past the end is refused.
    #[test]
    fn lent_ranges_are_the_files_bytes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::write(&path, &data).unwrap();
        let img = ImageFile::open(&path).unwrap();
        assert!(img.lends());
        let mut buf = Vec::new();
        for (offset, len) in [
            (0, 300_000),
            (1, 4095),
            (65535, 70_000),
            (299_999, 1),
            (7, 0),
        ] {
            let mut got = Vec::new();
            img.with_range(offset, len, &mut buf, &mut |d| {
                got.extend_from_slice(d);
                Ok(())
            })
            .unwrap();
            assert!(
                got == data[offset as usize..offset as usize + len],
                "{offset}+{len}"
            );
        }
        assert!(img
            .with_range(299_999, 2, &mut buf, &mut |_| Ok(()))
            .is_err());
    }
}
