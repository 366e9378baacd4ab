//! Platform adapter: the Virtual A/B COW images on `/data`, as libfiemap's `ImageManager`
//! opened for "ota" keeps them (libsnapshot `device_info.cpp` `OpenImageManager("ota")`,
//! libfiemap `image_manager.cpp` `ImageManager::Open`): the images in `/data/gsi/ota`, their
//! extents on the data partition in `/metadata/gsi/ota/lp_metadata` ([`lp::images`]). A host
//! device directory `DIR` has them in `DIR/data/gsi/ota` and `DIR/metadata/gsi/ota`.
//!
//! What libsnapshot does with them (`snapshot.cpp`): a snapshot whose COW does not fit in
//! `super` gets an image `<name>_<slot>-cow-img` of `SnapshotStatus.cow_file_size` bytes
//! (`GetCowImageDeviceName`, `CreateCowImage`), and its COW device is the `-cow` partition's
//! dm-linear table followed by the image (`MapCowDevices`); first-stage init maps the image
//! from its extents in `lp_metadata` (`MapImageWithDeviceMapper`), since `/data` is not
//! mounted yet. After the merge or a cancel the images and the metadata go
//! (`DeleteBackingImage`, `RemoveAllImages`).
//!
//! Creating an image follows libfiemap's `FiemapWriter::Open` (`fiemap_writer.cpp`):
//! the size rounded up to the file system block, `fallocate`, zeros written over it so that no
//! extent stays unwritten (ext4 reports fallocated blocks UNWRITTEN, and dm-linear would read
//! their stale bytes), `fsync`, then the extents read with `FS_IOC_FIEMAP` (`FIEMAP_FLAG_SYNC`),
//! refusing any extent that is unknown, delayed, unwritten, encoded, unaligned, inline, a
//! tail or shared (`kUnsupportedExtentFlags`, plus ENCODED, which the kernel reports with
//! UNKNOWN), contiguous ones merged, and at most 50000 of them (`kMaxExtents`). The extents
//! are recorded before the image is used; the file is never truncated, moved or reallocated
//! afterwards (ext4 does not move the blocks of a file in use; on f2fs the file is pinned,
//! see [`super::file_pin`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{file_pin, Device, Layout, TargetPartition};
use crate::engine::TargetWrite;
use crate::err;
use crate::error::{Error, Result};
use crate::lp::images::{self, DataDevice, FileExtent};
use crate::state_file;

/// libsnapshot's `GetCowImageDeviceName`: the image of snapshot `name` (`system_b`).
pub fn image_name(snapshot: &str) -> String {
    format!("{snapshot}-cow-img")
}

/// The image directories of one `ImageManager`.
#[derive(Clone, Debug)]
pub struct ImageDir {
    metadata_dir: PathBuf,
    data_dir: PathBuf,
    /// The directory that must exist for images to be made: the data partition's mount point.
    data_root: PathBuf,
    /// `/dev/block/by-name/userdata` on a device: a file on it is recorded as `userdata`.
    userdata: Option<PathBuf>,
}

impl ImageDir {
    /// The "ota" images of `device`: `/data/gsi/ota` and `/metadata/gsi/ota`, or a host
    /// device directory's `DIR/data/gsi/ota` and `DIR/metadata/gsi/ota`.
    pub fn for_device(device: &Device) -> ImageDir {
        match device.layout() {
            Layout::HostDir(dir) => ImageDir {
                metadata_dir: dir.join("metadata/gsi/ota"),
                data_dir: dir.join("data/gsi/ota"),
                data_root: dir.join("data"),
                userdata: None,
            },
            Layout::ByName(by_name) => ImageDir {
                metadata_dir: "/metadata/gsi/ota".into(),
                data_dir: "/data/gsi/ota".into(),
                data_root: "/data".into(),
                userdata: Some(by_name.join("userdata")),
            },
        }
    }

    /// Images in `data_dir` (on the file system mounted at or above `data_root`), metadata in
    /// `metadata_dir`.
    pub fn new(metadata_dir: &Path, data_dir: &Path, data_root: &Path) -> ImageDir {
        ImageDir {
            metadata_dir: metadata_dir.into(),
            data_dir: data_dir.into(),
            data_root: data_root.into(),
            userdata: None,
        }
    }

    /// `<data dir>/<image>.img` (`GetImageHeaderPath`).
    pub fn image_path(&self, image: &str) -> PathBuf {
        self.data_dir.join(format!("{image}.img"))
    }

    /// `<metadata dir>/lp_metadata`.
    pub fn metadata_path(&self) -> PathBuf {
        self.metadata_dir.join("lp_metadata")
    }

    /// Bytes free for images, `None` when there is no data partition (a host device
    /// directory without `data/`).
    // fsblkcnt_t and c_ulong are 32 bits wide on some targets.
    #[allow(clippy::useless_conversion)]
    pub fn available(&self) -> Result<Option<u64>> {
        if !self.data_root.is_dir() {
            return Ok(None);
        }
        let stat = nix::sys::statvfs::statvfs(&self.data_root).map_err(|e| {
            Error::io(
                format!("statvfs {}", self.data_root.display()),
                io::Error::from(e),
            )
        })?;
        Ok(Some(
            u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())),
        ))
    }

    /// The image metadata, if there is any.
    pub fn metadata(&self) -> Result<Option<crate::lp::Metadata>> {
        let path = self.metadata_path();
        match state_file::read(&path)? {
            None => Ok(None),
            Some(bytes) => images::parse_image_file(&bytes)
                .map(Some)
                .map_err(|e| err!(DeviceError, "{}: {e}", path.display())),
        }
    }

    /// The extents recorded for `image`, if it is recorded and its file is there with at
    /// least `size` bytes: an image a killed run made, kept with what was written into it.
    pub fn existing(&self, image: &str, size: u64) -> Result<Option<Vec<FileExtent>>> {
        let Some(m) = self.metadata()? else {
            return Ok(None);
        };
        let Some(extents) = images::image_extents(&m, image) else {
            return Ok(None);
        };
        let recorded = extents.iter().map(|e| e.length).sum::<u64>();
        let on_disk = std::fs::metadata(self.image_path(image)).map(|m| m.len());
        Ok((recorded == size && on_disk.is_ok_and(|len| len >= size)).then_some(extents))
    }

    /// Makes image `image` of `size` bytes (a multiple of 512) and records its extents
    /// (`CreateBackingImage`): a file fully allocated and written, synced, its extents read
    /// back and written into `lp_metadata`. An image already recorded with that size is
    /// kept as it is (a resumed update's COW is in it).
    pub fn create(&self, image: &str, size: u64) -> Result<Vec<FileExtent>> {
        if let Some(extents) = self.existing(image, size)? {
            return Ok(extents);
        }
        state_file::create_dir(&self.data_dir)?;
        state_file::create_dir(&self.metadata_dir)?;
        let path = self.image_path(image);
        let io = |what: &str, e: io::Error| Error::io(format!("{what} {}", path.display()), e);
        // An unrecorded file is a killed creation's: made again from scratch.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io("creating", e))?;
        let block = file_system_block(&path)?;
        let file_size = size
            .checked_next_multiple_of(block)
            .ok_or_else(|| err!(DeviceError, "image size {size} overflows"))?;
        allocate(&file, file_size).map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ENOSPC) {
                err!(
                    SuperNoSpace,
                    "no room for the {file_size}-byte COW image {}",
                    path.display()
                )
            } else {
                io("allocating", e)
            }
        })?;
        let extents = read_extents(&file).map_err(|e| io("reading the extents of", e))?;
        let device = data_device(&file, self.userdata.as_deref())?;
        let metadata = match self.metadata()? {
            Some(m)
                if m.block_devices().first().map(|d| &d.partition_name) == Some(&device.name) =>
            {
                m
            }
            _ => images::new_image_metadata(&device)?,
        };
        let metadata = images::set_image(&metadata, image, size, &extents, 0)?;
        state_file::replace(&self.metadata_path(), &images::image_file(&metadata)?)?;
        log::info!(
            "COW image {}: {size} bytes in {} extents on {}",
            path.display(),
            extents.len(),
            device.name
        );
        images::image_extents(&metadata, image)
            .ok_or_else(|| err!(DeviceError, "image {image} vanished from its metadata"))
    }

    /// Opens image `image`'s file read-write, checked to hold `size` bytes.
    pub fn open(&self, image: &str, size: u64) -> Result<Box<dyn TargetWrite>> {
        let file = TargetPartition::open(&self.image_path(image))?;
        if file.size() < size {
            return Err(err!(
                DeviceError,
                "COW image {} has {} bytes, not {size}",
                self.image_path(image).display(),
                file.size()
            ));
        }
        Ok(Box::new(file))
    }

    /// Removes image `image`: its record first, then its file (`DeleteBackingImage`); the
    /// metadata file goes with the last image, as libfiemap's does.
    pub fn delete(&self, image: &str) -> Result<()> {
        if let Some(m) = self.metadata()? {
            let path = self.metadata_path();
            match images::remove_image(&m, image)
                .map_err(|e| err!(DeviceError, "{}: {e}", path.display()))?
            {
                Some(rest) => state_file::replace(&path, &images::image_file(&rest)?)?,
                None => state_file::remove(&path)?,
            }
        }
        state_file::remove(&self.image_path(image))
    }

    /// Removes every image and the metadata (`RemoveAllImages`), also image files a killed
    /// creation left unrecorded.
    pub fn remove_all(&self) -> Result<()> {
        if let Some(m) = self.metadata()? {
            for p in m.partitions() {
                state_file::remove(&self.image_path(&p.name))?;
                state_file::remove(&self.metadata_dir.join(format!("{}.status", p.name)))?;
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.data_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_str().is_some_and(|n| n.ends_with("-cow-img.img")) {
                    state_file::remove(&entry.path())?;
                }
            }
        }
        state_file::remove(&self.metadata_path())
    }
}

/// The file system's block size (`statfs` `f_bsize`, as libfiemap's `PerformFileChecks`).
// c_ulong is 32 bits wide on some targets.
#[allow(clippy::useless_conversion)]
fn file_system_block(path: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::io(format!("statvfs {}", path.display()), io::Error::from(e)))?;
    Ok(u64::from(stat.block_size()).max(512))
}

/// libfiemap's `AllocateFile`: `fallocate`, then zeros over the whole file (ext4 reports
/// fallocated blocks unwritten), then `fsync`. On f2fs the file is pinned first where the
/// kernel offers it (its `fallocate` then allocates written blocks, so no zeros), retrying
/// `fallocate` while f2fs answers EAGAIN with progress, and checked pinned at the end.
fn allocate(file: &File, size: u64) -> io::Result<()> {
    let len = i64::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fs = file_pin::FileSystem::of(file)?;
    let pinned_first = fs == file_pin::FileSystem::F2fs && file_pin::pin_supported(file)?;
    if pinned_first {
        file_pin::pin(file)?;
    }
    fallocate_retrying(file, len)?;
    if !pinned_first {
        let zeros = vec![0u8; 1 << 20];
        let mut w = file;
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..n])?;
            left -= n as u64;
        }
    }
    file.sync_all()?;
    if fs == file_pin::FileSystem::F2fs {
        // f2fs's garbage collector may move the blocks of an unpinned file.
        file_pin::pin(file)?;
    }
    Ok(())
}

/// `fallocate` of the whole file, again while f2fs returns EAGAIN having allocated more; no
/// progress is ENOSPC.
fn fallocate_retrying(file: &File, len: i64) -> io::Result<()> {
    let mut last: Option<u64> = None;
    loop {
        // libc's, not nix's wrapper: nix took a RawFd up to 0.28 (AOSP 15's) and an AsFd
        // since, and its offsets are `off_t`, 32 bits on 32-bit Android; fallocate64 has
        // 64-bit ones everywhere.
        // SAFETY: a plain syscall on an open descriptor `file` owns for the call; no memory
        // passed.
        let ret = unsafe { nix::libc::fallocate64(file.as_raw_fd(), 0, 0, len) };
        if ret == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(nix::libc::EAGAIN) {
            return Err(e);
        }
        let now = file.metadata()?.len();
        if last.is_some_and(|before| before >= now) {
            return Err(io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        log::info!("fallocate: {now} of {len} bytes so far, again");
        last = Some(now);
    }
}

/// `struct fiemap` (without its extents): what the ioctl's request code is sized on. The
/// request itself is built in a word buffer ([`read_extents`]).
#[repr(C)]
pub struct FiemapHeader {
    /// First logical byte to map.
    pub fm_start: u64,
    /// Bytes to map.
    pub fm_length: u64,
    /// `FIEMAP_FLAG_*`.
    pub fm_flags: u32,
    /// Extents the kernel returned.
    pub fm_mapped_extents: u32,
    /// Room for extents after the header.
    pub fm_extent_count: u32,
    /// Zero.
    pub fm_reserved: u32,
}

mod ioctls {
    // FS_IOC_FIEMAP: _IOWR('f', 11, struct fiemap).
    nix::ioctl_readwrite!(fiemap, b'f', 11, super::FiemapHeader);
}

const HEADER_SIZE: usize = 32;
const EXTENT_SIZE: usize = 56;
/// libfiemap's `kMaxExtents`.
pub const MAX_EXTENTS: u32 = 50_000;
const FLAG_SYNC: u32 = 1;
const EXTENT_LAST: u32 = 0x1;
/// UNKNOWN, DELALLOC, ENCODED, NOT_ALIGNED, DATA_INLINE, DATA_TAIL, UNWRITTEN, SHARED.
const UNSUPPORTED: u32 = 0x2 | 0x4 | 0x8 | 0x100 | 0x200 | 0x400 | 0x800 | 0x2000;

/// The file's extents on its block device, contiguous ones merged. A first call with no
/// room for extents counts them (the kernel's documented way), the second reads them, with
/// room for one more so that a file that grew in between shows as an extent without LAST;
/// more than [`MAX_EXTENTS`] are refused as libfiemap refuses them.
fn read_extents(file: &File) -> io::Result<Vec<FileExtent>> {
    let mapped = mapped_count(&fiemap_call(file, 0)?);
    if mapped > MAX_EXTENTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file has {mapped} extents, more than {MAX_EXTENTS}"),
        ));
    }
    let reply = fiemap_call(file, mapped + 1)?;
    parse_fiemap(&reply).map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))
}

/// `fm_mapped_extents` of a reply.
fn mapped_count(reply: &[u8]) -> u32 {
    reply
        .get(20..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// One `FS_IOC_FIEMAP` call over the whole file (`FIEMAP_FLAG_SYNC`) with room for `room`
/// extents; the reply's bytes.
fn fiemap_call(file: &File, room: u32) -> io::Result<Vec<u8>> {
    // u64 words keep the buffer aligned for the kernel's struct.
    let words = (HEADER_SIZE + room as usize * EXTENT_SIZE) / 8;
    let mut buf = vec![0u64; words];
    // Two u32 fields in one word, in memory order.
    let pair = |a: u32, b: u32| {
        let mut w = [0u8; 8];
        w[..4].copy_from_slice(&a.to_ne_bytes());
        w[4..].copy_from_slice(&b.to_ne_bytes());
        u64::from_ne_bytes(w)
    };
    buf[1] = u64::MAX; // fm_length
    buf[2] = pair(FLAG_SYNC, 0); // fm_flags, fm_mapped_extents
    buf[3] = pair(room, 0); // fm_extent_count, fm_reserved
                            // SAFETY: `buf` is a live, 8-byte aligned buffer of a `struct fiemap` header followed by
                            // room for `fm_extent_count` extents, which is all the kernel writes; the descriptor is
                            // open for the duration of the call.
    unsafe { ioctls::fiemap(file.as_raw_fd(), buf.as_mut_ptr().cast::<FiemapHeader>()) }
        .map_err(io::Error::from)?;
    let mut bytes = Vec::with_capacity(words * 8);
    for w in &buf {
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    Ok(bytes)
}

/// The extents a `FS_IOC_FIEMAP` reply holds (`bytes`: the header and its extents), checked
/// and merged as libfiemap's `FiemapToExtents` does.
pub fn parse_fiemap(bytes: &[u8]) -> std::result::Result<Vec<FileExtent>, String> {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
    };
    let count = u32_at(20).ok_or("short FIEMAP reply")? as usize;
    if count == 0 {
        return Err("the file has no extents".into());
    }
    let mut out: Vec<(u64, FileExtent)> = Vec::new();
    for i in 0..count {
        let at = HEADER_SIZE + i * EXTENT_SIZE;
        let (Some(logical), Some(physical), Some(length), Some(flags)) =
            (u64_at(at), u64_at(at + 8), u64_at(at + 16), u32_at(at + 40))
        else {
            return Err(format!("FIEMAP reply ends inside extent {i} of {count}"));
        };
        let last = flags & EXTENT_LAST != 0;
        if last != (i + 1 == count) {
            return Err(format!(
                "extent {i} of {count}: the LAST flag is {}where it should {}be (more than \
                 {MAX_EXTENTS} extents?)",
                if last { "" } else { "missing " },
                if last { "not " } else { "" }
            ));
        }
        if flags & UNSUPPORTED != 0 {
            return Err(format!(
                "extent {i} at {physical} has flags {flags:#x} (unwritten, shared, encoded, \
                 unknown or not aligned): its bytes cannot be mapped from the block device"
            ));
        }
        match out.last_mut() {
            Some((l, prev))
                if prev.physical.checked_add(prev.length) == Some(physical)
                    && physical.checked_sub(prev.physical) == logical.checked_sub(*l) =>
            {
                prev.length = prev
                    .length
                    .checked_add(length)
                    .ok_or("extent lengths overflow")?;
            }
            _ => out.push((logical, FileExtent { physical, length })),
        }
    }
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

/// The block device holding `file`, described as liblp's `GetBlockDeviceInfo` does, from
/// sysfs: its name (`userdata` when it is the by-name `userdata` node), size, logical block
/// size, minimum I/O size (the alignment) and alignment offset.
fn data_device(file: &File, userdata: Option<&Path>) -> Result<DataDevice> {
    let dev = file
        .metadata()
        .map_err(|e| Error::io("stat of a COW image", e))?
        .dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(sys.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let Some(sectors) = read("size") else {
        return Err(err!(
            DeviceError,
            "the COW image's file system is on no block device ({major}:{minor}): its extents \
             cannot be mapped"
        ));
    };
    // A partition's queue limits are its disk's.
    let queue =
        |name: &str| read(&format!("queue/{name}")).or_else(|| read(&format!("../queue/{name}")));
    let uevent = std::fs::read_to_string(sys.join("uevent")).unwrap_or_default();
    let mut name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned())
        .unwrap_or_else(|| format!("{major}:{minor}"));
    if let Some(u) = userdata {
        if std::fs::metadata(u).is_ok_and(|m| m.rdev() == dev) {
            name = "userdata".into();
        }
    }
    let u32_of =
        |v: Option<u64>, default: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(default);
    Ok(DataDevice {
        name,
        size: sectors.saturating_mul(512),
        logical_block_size: u32_of(queue("logical_block_size"), 512),
        alignment: u32_of(queue("minimum_io_size"), 0),
        alignment_offset: u32_of(read("alignment_offset"), 0),
    })
}

/// Pieces of devices read and written as one (a COW device on a host: the `-cow` partition of
/// `super`, then the image file), each piece cut to its length.
pub struct Joined {
    parts: Vec<(Box<dyn TargetWrite>, u64)>,
    size: u64,
}

impl Joined {
    /// `parts` back to back, `(device, bytes used of it)`.
    pub fn new(parts: Vec<(Box<dyn TargetWrite>, u64)>) -> Result<Joined> {
        let mut size = 0u64;
        for (dev, len) in &parts {
            if *len > dev.size() {
                return Err(err!(
                    DeviceError,
                    "a COW piece of {} bytes is used for {len}",
                    dev.size()
                ));
            }
            size = size
                .checked_add(*len)
                .ok_or_else(|| err!(DeviceError, "COW device size overflows"))?;
        }
        Ok(Joined { parts, size })
    }

    /// The pieces covering `len` bytes at `offset`: (part, range in the caller's buffer,
    /// offset in the part).
    fn pieces(&self, offset: u64, len: usize) -> io::Result<Vec<(usize, Range<usize>, u64)>> {
        let end = offset
            .checked_add(len as u64)
            .filter(|e| *e <= self.size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "beyond the COW device"))?;
        let mut out = Vec::new();
        let mut start = 0u64;
        for (i, (_, plen)) in self.parts.iter().enumerate() {
            let pend = start + plen;
            let from = offset.max(start);
            let to = end.min(pend);
            if from < to {
                let at = (from - offset) as usize;
                out.push((i, at..at + (to - from) as usize, from - start));
            }
            start = pend;
        }
        Ok(out)
    }
}

impl TargetWrite for Joined {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        for (i, r, o) in self.pieces(offset, buf.len())? {
            self.parts[i].0.write_at(&buf[r], o)?;
        }
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        for (i, r, o) in self.pieces(offset, buf.len())? {
            self.parts[i].0.read_at(&mut buf[r], o)?;
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.parts.iter().try_for_each(|(d, _)| d.sync())
    }
    fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(extents: &[(u64, u64, u64, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[20..24].copy_from_slice(&(extents.len() as u32).to_ne_bytes());
        for (logical, physical, length, flags) in extents {
            let mut e = vec![0u8; EXTENT_SIZE];
            e[0..8].copy_from_slice(&logical.to_ne_bytes());
            e[8..16].copy_from_slice(&physical.to_ne_bytes());
            e[16..24].copy_from_slice(&length.to_ne_bytes());
            e[40..44].copy_from_slice(&flags.to_ne_bytes());
            b.extend_from_slice(&e);
        }
        b
    }

    #[test]
    fn fiemap_replies_are_merged_and_bad_extents_refused() {
        let e = |physical, length| FileExtent { physical, length };
        // Contiguous on disk and in the file: merged; a gap: kept apart.
        let got = parse_fiemap(&reply(&[
            (0, 8192, 4096, 0),
            (4096, 12288, 4096, 0),
            (8192, 65536, 4096, EXTENT_LAST),
        ]))
        .unwrap();
        assert_eq!(got, vec![e(8192, 8192), e(65536, 4096)]);
        for flags in [0x800, 0x2000, 0x8 | 0x2, 0x100, 0x4] {
            let r = reply(&[(0, 8192, 4096, flags | EXTENT_LAST)]);
            assert!(
                parse_fiemap(&r).unwrap_err().contains("flags"),
                "{flags:#x}"
            );
        }
        // More extents than asked for: the last one returned is not LAST.
        assert!(parse_fiemap(&reply(&[(0, 8192, 4096, 0)])).is_err());
        assert!(parse_fiemap(&reply(&[])).is_err());
        let mut short = reply(&[(0, 8192, 4096, EXTENT_LAST)]);
        short.truncate(60);
        assert!(parse_fiemap(&short).is_err());
    }

    /// A real file on the host's file system: made, its FIEMAP extents recorded and cut to
    /// the image's size, kept with its bytes when made again, removed with its metadata.
    /// (That the extents hold the file's bytes is the VM test's step `vab-data-image-extents`,
    /// with dm-linear over a real ext4 device.)
    #[test]
    fn created_image_is_recorded_and_kept_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let images = ImageDir::new(
            &dir.path().join("metadata/gsi/ota"),
            &dir.path().join("data/gsi/ota"),
            &dir.path().join("data"),
        );
        assert!(images.available().unwrap().unwrap() > 0);
        let extents = images.create("system_b-cow-img", 3 << 20).unwrap();
        assert_eq!(extents.iter().map(|e| e.length).sum::<u64>(), 3 << 20);
        let m = images.metadata().unwrap().unwrap();
        assert_eq!(
            images::image_extents(&m, "system_b-cow-img"),
            Some(extents.clone())
        );
        let dev = images.open("system_b-cow-img", 3 << 20).unwrap();
        dev.write_at(b"kept", 4096).unwrap();
        dev.sync().unwrap();
        // Created again (a resume): the same file, the same bytes.
        assert_eq!(images.create("system_b-cow-img", 3 << 20).unwrap(), extents);
        let mut buf = [0u8; 4];
        images
            .open("system_b-cow-img", 3 << 20)
            .unwrap()
            .read_at(&mut buf, 4096)
            .unwrap();
        assert_eq!(&buf, b"kept");
        images.remove_all().unwrap();
        assert!(images.metadata().unwrap().is_none());
        assert!(!images.image_path("system_b-cow-img").exists());
    }

    #[test]
    fn joined_pieces_split_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts: Vec<(Box<dyn TargetWrite>, u64)> = Vec::new();
        for (i, len) in [(0, 8192u64), (1, 4096)] {
            let p = dir.path().join(format!("{i}"));
            std::fs::write(&p, vec![0u8; 16384]).unwrap();
            parts.push((Box::new(TargetPartition::open(&p).unwrap()), len));
        }
        let j = Joined::new(parts).unwrap();
        assert_eq!(j.size(), 12288);
        let data: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
        j.write_at(&data, 5000).unwrap();
        let mut back = vec![0u8; 6000];
        j.read_at(&mut back, 5000).unwrap();
        assert_eq!(back, data);
        let second = std::fs::read(dir.path().join("1")).unwrap();
        assert_eq!(&second[..2808], &data[3192..]);
        assert!(j.write_at(&[1], 12288).is_err());
    }
}
