//! Pinning a COW image's blocks on f2fs, as libfiemap does (`fiemap_writer.cpp` `PinFile`,
//! `IsFilePinned`, `AllocateFile`; `utility.cpp` `F2fsPinBeforeAllocate`).
//!
//! First-stage init maps a COW image by the extents recorded in `lp_metadata`, before `/data`
//! is mounted. ext4 never moves the blocks of a file in use, but f2fs's garbage collector
//! does, unless the file is pinned (`F2FS_IOC_SET_PIN_FILE`): an unpinned image could end up
//! with its data somewhere the recorded extents do not say. A kernel that offers `pin_file`
//! gets the file pinned while it is still empty, and its `fallocate` then allocates real
//! blocks (no zeros need writing); the file is checked to be pinned, with no block moved,
//! once allocated.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// The file systems libfiemap tells apart. Others are used the ext4 way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileSystem {
    /// f2fs: blocks move unless pinned.
    F2fs,
    /// ext4, or another file system used the same way.
    Other,
}

impl FileSystem {
    /// The file system `file` is on (`fstatfs`).
    pub fn of(file: &File) -> io::Result<FileSystem> {
        let stat = nix::sys::statfs::fstatfs(file).map_err(io::Error::from)?;
        Ok(
            if stat.filesystem_type() == nix::sys::statfs::F2FS_SUPER_MAGIC {
                FileSystem::F2fs
            } else {
                FileSystem::Other
            },
        )
    }
}

/// `FS_NOCOW_FL`, which f2fs reports for a pinned file.
const FS_NOCOW_FL: nix::libc::c_long = 0x0080_0000;

mod ioctls {
    // `FS_IOC_GETFLAGS` is declared with a `long` but the kernel writes an `int`; the buffer
    // is a zeroed `long`, so the answer is its low bits either way.
    nix::ioctl_read!(get_flags, b'f', 1, nix::libc::c_long);
    // linux/f2fs.h: F2FS_IOCTL_MAGIC 0xf5.
    nix::ioctl_write_ptr!(f2fs_set_pin_file, 0xf5, 13, u32);
    nix::ioctl_read!(f2fs_get_pin_file, 0xf5, 14, u32);
}

/// Whether the f2fs kernel offers pinning for `file`'s file system: `pin_file` in
/// `/sys/fs/f2fs/<block device>/features` (`F2fsPinBeforeAllocate`).
pub fn pin_supported(file: &File) -> io::Result<bool> {
    let dev = file.metadata()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))?;
    let Some(name) = link.file_name() else {
        return Err(io::Error::other(format!(
            "/sys/dev/block/{major}:{minor} names no block device"
        )));
    };
    let features = Path::new("/sys/fs/f2fs").join(name).join("features");
    let text = std::fs::read_to_string(&features)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", features.display())))?;
    Ok(text.trim().split(", ").any(|f| f == "pin_file"))
}

/// Whether f2fs has `file` pinned with none of its blocks moved (`IsFilePinned`).
pub fn is_pinned(file: &File) -> io::Result<bool> {
    let mut flags: nix::libc::c_long = 0;
    // SAFETY: the descriptor is open for the call, and `flags` is a live, writable `long`,
    // as wide as the ioctl's declared argument.
    unsafe { ioctls::get_flags(file.as_raw_fd(), &mut flags) }.map_err(io::Error::from)?;
    if flags & FS_NOCOW_FL == 0 {
        return Ok(false);
    }
    let mut moved: u32 = 0;
    // SAFETY: as above; the kernel writes one `u32`, the number of blocks moved.
    unsafe { ioctls::f2fs_get_pin_file(file.as_raw_fd(), &mut moved) }.map_err(io::Error::from)?;
    if moved != 0 {
        log::warn!("{moved} blocks of a pinned COW image were moved");
    }
    Ok(moved == 0)
}

/// Pins `file` (`PinFile`); f2fs refuses a file that already has blocks unless it is pinned.
pub fn pin(file: &File) -> io::Result<()> {
    if is_pinned(file)? {
        return Ok(());
    }
    let on: u32 = 1;
    // SAFETY: the descriptor is open for the call; the kernel reads one `u32` from `on`,
    // which lives across it.
    unsafe { ioctls::f2fs_set_pin_file(file.as_raw_fd(), &on) }.map_err(io::Error::from)?;
    Ok(())
}
