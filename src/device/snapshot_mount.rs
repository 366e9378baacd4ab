//! Platform adapter: a Virtual A/B snapshot's view — its base (the running slot's extents of
//! the partition, read-only) plus its COW device (the `<name>_<slot>-cow` partition, followed
//! by its `-cow-img` image when there is one) — served read-only as a block device by our own
//! code through the kernel's nbd driver, so that postinstall mounts the new build before the
//! merge, when the partition's own extents still hold the old one.
//!
//! update_engine does the same on Virtual A/B with compression (postinstall_runner_action.cc,
//! `PerformAction`: once every COW writer is closed, `UnmapAllPartitions` then
//! `MapAllPartitions`, i.e. libsnapshot's `MapAllSnapshots`; a failure to map is
//! kPostInstallMountError; `CompletePostinstall` unmaps every partition whether the programs
//! passed or not, and only on success calls `FinishUpdate`). There the views are dm-user
//! devices served by snapuserd, which a stock kernel lacks; here, nbd devices served by a
//! thread of this process ([`crate::nbd::serve_device`], what `abupdate cow serve` does).
//! Android kernels have dm-user and no nbd: [`available`] is false there, where
//! [`super::snapshot_user`] has snapuserd serve the views instead.
//!
//! Each view is served for one partition's program (update_engine maps all of them at once):
//! the first free `/dev/nbdN` (`/sys/block/nbdN` without `pid` and of size 0); dropped after
//! the unmount, it is disconnected, its thread joined, and the COW's device-mapper mapping
//! made to read it removed. A crashed run's connection died with its process (the kernel
//! ends a connection whose socket closed), but the device stays in use while its leftover
//! mount holds it: postinstall lazily unmounts that mount first, and a device not free yet is
//! passed over, or, when none is free, waited for a little; a COW mapping left behind is
//! reused or replaced by the next [`Device::open_cow`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::image_store::CowImages;
use super::snapshot::DeviceCow;
use super::Device;
use crate::cow::{ReadAt, SnapshotView};
use crate::err;
use crate::error::Result;
use crate::lp;
use crate::nbd::{wire::NbdError, ServeStats};
use crate::postinstall::mount::MountSource;

/// The nbd block size: the COW's and the file systems' block.
const BLOCK_SIZE: u32 = 4096;

/// How long a connected device may take to show its size.
const SIZE_WAIT: Duration = Duration::from_secs(10);

/// How long to wait for a device to be released when all are in use.
const BUSY_WAIT: Duration = Duration::from_secs(5);

type View = SnapshotView<DeviceCow, Box<dyn ReadAt + Send + Sync>>;
type Server = JoinHandle<std::result::Result<ServeStats, NbdError>>;

/// Whether snapshot views can be served here: not Android, and the kernel lists an nbd
/// device in `sys_block` (`/sys/block`; module nbd loaded).
pub fn available(sys_block: Option<&Path>) -> bool {
    !cfg!(target_os = "android") && sys_block.is_some_and(|d| !nbd_devices(d).is_empty())
}

/// The numbers of the nbd devices listed in `sys_block`, in order.
fn nbd_devices(sys_block: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(sys_block)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("nbd")?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// The size of block device `name` in sectors, from sysfs.
fn sectors(sys_block: &Path, name: &str) -> Option<u64> {
    std::fs::read_to_string(sys_block.join(name).join("size"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Not connected: no server pid, no size.
fn is_free(sys_block: &Path, n: u32) -> bool {
    let name = format!("nbd{n}");
    !sys_block.join(&name).join("pid").exists() && sectors(sys_block, &name) == Some(0)
}

/// One snapshot's view, served as `/dev/nbdN` until dropped.
pub struct SnapshotMount {
    node: PathBuf,
    size: u64,
    server: Option<Server>,
    device: Device,
    cow: String,
}

impl SnapshotMount {
    /// Serves the view of snapshot `space` (`system_b`) of the target slot's `metadata`:
    /// partition `name`'s base in the running slot, its COW device mapped from `metadata`.
    pub fn serve(
        device: &Device,
        metadata: &lp::Metadata,
        space: &lp::SnapshotSpace,
        name: &str,
        sys_block: &Path,
    ) -> Result<SnapshotMount> {
        let cow_name = lp::cow_name(&space.name);
        let mut mount = SnapshotMount {
            node: PathBuf::new(),
            size: space.device_size,
            server: None,
            device: device.clone(),
            cow: cow_name,
        };
        // From here on a failure drops `mount`, which unmaps the COW.
        let cow = device.open_cow(metadata, space, &CowImages::for_device(device))?;
        let base: Box<dyn ReadAt + Send + Sync> = if space.old_partition_size == 0 {
            // A partition new in this update has no base: what no op writes reads as zeros.
            Box::new(Vec::new())
        } else {
            Box::new(device.read_only(name, device.current_slot())?)
        };
        let view = SnapshotView::new(DeviceCow(cow), base, Some(space.device_size))
            .map_err(|e| err!(PostinstallFailed, "the COW of {}: {e}", space.name))?;
        let (node, server) = start(Arc::new(view), sys_block)?;
        log::info!(
            "{}: its snapshot view served as {} for postinstall",
            space.name,
            node.display()
        );
        mount.node = node;
        mount.server = Some(server);
        Ok(mount)
    }

    /// The served device, to mount.
    pub fn source(&self) -> MountSource {
        MountSource {
            path: self.node.clone(),
            offset: 0,
            size: self.size,
        }
    }
}

impl Drop for SnapshotMount {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            match crate::nbd::disconnect(&self.node) {
                Ok(()) => match server.join() {
                    Ok(Ok(stats)) => log::info!(
                        "{}: disconnected after {} reads ({} bytes)",
                        self.node.display(),
                        stats.reads,
                        stats.bytes_read
                    ),
                    Ok(Err(e)) => log::warn!("serving {}: {e}", self.node.display()),
                    Err(_) => log::warn!("the server of {} panicked", self.node.display()),
                },
                // Its thread would never end: it is left, holding the COW.
                Err(e) => log::warn!("disconnecting {}: {e}", self.node.display()),
            }
        }
        if let Err(e) = self.device.unmap_logical(&self.cow) {
            log::warn!("unmapping {}: {e}", self.cow);
        }
    }
}

/// Serves `view` on the first free nbd device that takes it: the device node and the thread
/// serving it, once the kernel shows the device's size. While every device is in use, waits
/// a little: a crashed run's device is released once the unmount of its leftover mount
/// (`postinstall::mount::ensure_unmounted`) has let the kernel detach the loop device over
/// it, which the kernel finishes asynchronously.
fn start(view: Arc<View>, sys_block: &Path) -> Result<(PathBuf, Server)> {
    let deadline = std::time::Instant::now() + BUSY_WAIT;
    loop {
        let free: Vec<u32> = nbd_devices(sys_block)
            .into_iter()
            .filter(|n| is_free(sys_block, *n))
            .collect();
        if !free.is_empty() || std::time::Instant::now() > deadline {
            return start_on(view, sys_block, &free);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`start`] on the first of the devices `free` that takes the view.
fn start_on(view: Arc<View>, sys_block: &Path, free: &[u32]) -> Result<(PathBuf, Server)> {
    let sectors_wanted = view.size() / 512;
    let mut tried = Vec::new();
    for &n in free {
        let node = Path::new("/dev").join(format!("nbd{n}"));
        let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
        let (served, at) = (view.clone(), node.clone());
        let server = std::thread::Builder::new()
            .name(format!("nbd{n}"))
            .spawn(move || {
                crate::nbd::serve_device(&at, &*served, BLOCK_SIZE, move || {
                    let _ = ready_tx.send(());
                })
            })
            .map_err(|e| err!(PostinstallFailed, "starting the nbd{n} server: {e}"))?;
        // Disconnected without a message: the device was refused before it was configured
        // (another process took it first).
        if ready.recv().is_ok() {
            let name = format!("nbd{n}");
            let deadline = std::time::Instant::now() + SIZE_WAIT;
            while sectors(sys_block, &name) != Some(sectors_wanted) {
                if std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if sectors(sys_block, &name) == Some(sectors_wanted) {
                return Ok((node, server));
            }
            tried.push(format!("{name} did not show {sectors_wanted} sectors"));
            if let Err(e) = crate::nbd::disconnect(&node) {
                return Err(err!(PostinstallFailed, "disconnecting {name}: {e}"));
            }
        }
        match server.join() {
            Ok(Err(e)) => tried.push(format!("{}: {e}", node.display())),
            Ok(Ok(_)) => {}
            Err(_) => tried.push(format!("the server of {} panicked", node.display())),
        }
    }
    Err(err!(
        PostinstallFailed,
        "no nbd device served the snapshot view ({})",
        if tried.is_empty() {
            format!("none free in {}", sys_block.display())
        } else {
            tried.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: nbd0 connected (pid), nbd1 sized but not connected (held), nbd2 free;
    /// other block devices do not count.
    #[test]
    fn finds_free_nbd_devices_in_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path();
        assert!(!available(Some(sys)));
        assert!(!available(None));
        for (name, size, pid) in [
            ("nbd0", "2048\n", true),
            ("nbd1", "8\n", false),
            ("nbd2", "0\n", false),
            ("loop0", "0\n", false),
            ("nbd10", "0\n", false),
        ] {
            std::fs::create_dir(sys.join(name)).unwrap();
            std::fs::write(sys.join(name).join("size"), size).unwrap();
            if pid {
                std::fs::write(sys.join(name).join("pid"), "1\n").unwrap();
            }
        }
        assert_eq!(nbd_devices(sys), vec![0, 1, 2, 10]);
        let free: Vec<u32> = nbd_devices(sys)
            .into_iter()
            .filter(|n| is_free(sys, *n))
            .collect();
        assert_eq!(free, vec![2, 10]);
        assert_eq!(available(Some(sys)), !cfg!(target_os = "android"));
    }
}
