//! Platform adapter: a new partition mounted read-only for its postinstall program, through a
//! read-only loop device over its bytes (a partition image file, a block device, one extent
//! of `super`, or a Virtual A/B snapshot's view served through nbd), so the partition itself
//! is never opened for writing and never mounted read-write. Needs `CAP_SYS_ADMIN` and loop devices (`/dev/loop-control`, Linux 5.8+ for
//! `LOOP_CONFIGURE`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::err;
use crate::error::Result;

/// The bytes of a partition: `size` bytes at `offset` of `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSource {
    /// The file or block device holding the partition.
    pub path: PathBuf,
    /// Where the partition starts in it, in bytes.
    pub offset: u64,
    /// The partition's size in bytes.
    pub size: u64,
}

/// A partition's bytes to mount, and what keeps them readable until it is unmounted (a
/// snapshot view served for it: [`crate::device::snapshot_mount`]), released after the
/// unmount.
pub struct Located {
    /// Where the bytes are.
    pub source: MountSource,
    /// Dropped once the partition is unmounted.
    pub keep: Option<Box<dyn Send>>,
}

impl From<MountSource> for Located {
    fn from(source: MountSource) -> Self {
        Located { source, keep: None }
    }
}

/// update_engine's list when the manifest names no file system (`utils::MountFilesystem`).
const PROBED_TYPES: [&str; 5] = ["ext2", "ext3", "ext4", "squashfs", "erofs"];

/// A mounted partition; unmounted (and its loop device released) when dropped.
pub struct Mounted {
    dir: PathBuf,
    loop_dev: Option<LoopDevice>,
}

impl Mounted {
    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.dir) {
            log::warn!("unmounting {}: {e}", self.dir.display());
        }
        self.loop_dev.take();
    }
}

/// Unmounts `dir`, retrying while busy, then lazily (update_engine's `UnmountFilesystem`).
pub fn unmount(dir: &Path) -> Result<()> {
    for _ in 0..5 {
        match umount2(dir, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(Errno::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Err(e) => return Err(err!(PostinstallFailed, "umount {}: {e}", dir.display())),
        }
    }
    umount2(dir, MntFlags::MNT_DETACH)
        .map_err(|e| err!(PostinstallFailed, "lazy umount {}: {e}", dir.display()))
}

/// Unmounts whatever a crashed run left mounted on `dir` (update_engine's `EnsureUnmounted`).
pub fn ensure_unmounted(dir: &Path) {
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) => log::info!("unmounted {} left mounted by an earlier run", dir.display()),
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => log::warn!("checking {} for an old mount: {e}", dir.display()),
    }
}

/// Mounts `source` read-only on `dir` as `fs_type` (empty: the first of update_engine's list
/// that mounts), with `options` as the mount data (Android: the SELinux context).
pub fn mount_read_only(
    source: &MountSource,
    fs_type: &str,
    options: &str,
    dir: &Path,
) -> Result<Mounted> {
    let loop_dev = LoopDevice::attach(source)?;
    let types: Vec<&str> = match fs_type {
        "" => PROBED_TYPES.to_vec(),
        t => vec![t],
    };
    let data = (!options.is_empty()).then_some(options);
    let mut tried = Vec::new();
    for t in types {
        match mount(
            Some(loop_dev.path.as_path()),
            dir,
            Some(t),
            MsFlags::MS_RDONLY,
            data,
        ) {
            Ok(()) => {
                return Ok(Mounted {
                    dir: dir.to_owned(),
                    loop_dev: Some(loop_dev),
                })
            }
            Err(e) => tried.push(format!("{t}: {e}")),
        }
    }
    Err(err!(
        PostinstallFailed,
        "{} (through {}) does not mount on {}: {}",
        source.path.display(),
        loop_dev.path.display(),
        dir.display(),
        tried.join("; ")
    ))
}

/// A read-only loop device bound to a byte range of a file or block device; detached when
/// dropped (and by the kernel once unused: `LO_FLAGS_AUTOCLEAR`).
struct LoopDevice {
    file: File,
    path: PathBuf,
}

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h, Linux 5.8).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

mod ioctls {
    // linux/loop.h: LOOP_CTL_GET_FREE 0x4C82, LOOP_CONFIGURE 0x4C0A, LOOP_CLR_FD 0x4C01.
    nix::ioctl_none_bad!(ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(configure, 0x4C0A, super::LoopConfig);
    nix::ioctl_none_bad!(clr_fd, 0x4C01);
}

impl LoopDevice {
    fn attach(source: &MountSource) -> Result<LoopDevice> {
        let backing = File::open(&source.path)
            .map_err(|e| err!(PostinstallFailed, "opening {}: {e}", source.path.display()))?;
        let (control, _) = open_first(&["/dev/loop-control"], false)?;
        let mut last = String::new();
        // Another process may take the free device between asking and binding it.
        for _ in 0..8 {
            // SAFETY: `control` is an open /dev/loop-control; LOOP_CTL_GET_FREE takes no
            // argument and returns a device number or fails.
            let n = unsafe { ioctls::ctl_get_free(control.as_raw_fd()) }
                .map_err(|e| err!(PostinstallFailed, "LOOP_CTL_GET_FREE: {e}"))?;
            let names = [format!("/dev/block/loop{n}"), format!("/dev/loop{n}")];
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let (file, path) = match wait_for_node(&names) {
                Ok(found) => found,
                Err(e) => {
                    last = e.message;
                    continue;
                }
            };
            let mut info = LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: source.offset,
                lo_sizelimit: source.size,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
                lo_file_name: [0; LO_NAME_SIZE],
                lo_crypt_name: [0; LO_NAME_SIZE],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            };
            let name = source.path.as_os_str().as_encoded_bytes();
            let len = name.len().min(LO_NAME_SIZE - 1);
            info.lo_file_name[..len].copy_from_slice(&name[..len]);
            let config = LoopConfig {
                fd: u32::try_from(backing.as_raw_fd())
                    .map_err(|_| err!(PostinstallFailed, "negative descriptor"))?,
                block_size: 0,
                info,
                reserved: [0; 8],
            };
            // SAFETY: `file` is an open loop device; `config` is a live `struct loop_config`
            // the kernel only reads, naming `backing`, which stays open across the call.
            match unsafe { ioctls::configure(file.as_raw_fd(), &config) } {
                Ok(_) => return Ok(LoopDevice { file, path }),
                Err(Errno::EBUSY) => last = format!("{} is busy", path.display()),
                Err(e) => {
                    return Err(err!(
                        PostinstallFailed,
                        "LOOP_CONFIGURE {} over {}: {e}",
                        path.display(),
                        source.path.display()
                    ))
                }
            }
        }
        Err(err!(PostinstallFailed, "no free loop device: {last}"))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // SAFETY: `file` is the open loop device this value bound; LOOP_CLR_FD takes no
        // argument. With AUTOCLEAR set it detaches once the last user is gone.
        if let Err(e) = unsafe { ioctls::clr_fd(self.file.as_raw_fd()) } {
            if e != Errno::ENXIO {
                log::warn!("releasing {}: {e}", self.path.display());
            }
        }
    }
}

fn open_first(paths: &[&str], read_only: bool) -> Result<(File, PathBuf)> {
    let mut last = None;
    for p in paths {
        match OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(p)
        {
            Ok(f) => return Ok((f, PathBuf::from(p))),
            Err(e) => last = Some(format!("{p}: {e}")),
        }
    }
    Err(err!(
        PostinstallFailed,
        "opening {}",
        last.unwrap_or_default()
    ))
}

/// A new loop device's node appears once ueventd or devtmpfs made it.
fn wait_for_node(names: &[&str]) -> Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..50 {
        match open_first(names, true) {
            Ok(found) => return Ok(found),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| err!(PostinstallFailed, "no loop device node")))
}
