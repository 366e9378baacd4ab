//! Platform adapter: device-mapper, through the kernel's ioctls on its control node
//! (`/dev/device-mapper` on Android, `/dev/mapper/control` with devtmpfs).
//!
//! A logical partition inside `super` becomes a block device by loading a table of dm-linear
//! targets (one per LINEAR extent: `linear <super major:minor> <physical sector>`) and zero
//! targets (ZERO extents) into a new mapping named like the partition (`system_b`), as Android's
//! first-stage init and update_engine do. The kernel numbers the device `dm-N` (minor N); on
//! Android ueventd creates `/dev/block/dm-N` and the `/dev/block/mapper/<name>` link, on a Linux
//! host devtmpfs creates `/dev/dm-N` and nobody creates the link, so [`DmConfig`] says where the
//! node appears and whether we make the link ourselves. ZERO extents need the kernel's zero
//! target (`dm-zero`, a module in some kernels). Our mappings carry the uuid `abupdate-<name>`,
//! which is how [`DeviceMapper::ours`] tells them from first-stage init's and other tools'.
//!
//! No crate in AOSP's list speaks these ioctls, hence this module: [`wire`] builds and parses the
//! buffers (no I/O), and the only unsafe code is the ioctl call itself.

pub mod logical;
pub mod wire;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::err;
use crate::error::{Error, Result};
pub use logical::{table_of, table_on, DmMapper};
pub use wire::{DevNum, TargetLine};

/// The uuid prefix of the mappings this process creates, so that a listing tells ours apart
/// from first-stage init's (which carry none) and other tools'.
pub const UUID_PREFIX: &str = "abupdate-";

/// Where the device-mapper pieces are on this system.
#[derive(Clone, Debug)]
pub struct DmConfig {
    /// The control node: `/dev/device-mapper` as Android's ueventd names it, `/dev/mapper/control`
    /// as devtmpfs does (the kernel's node name for the misc device).
    pub control: PathBuf,
    /// Where the kernel's `dm-N` block nodes appear: `/dev/block` on Android, `/dev` with devtmpfs.
    pub dev_dir: PathBuf,
    /// Where `<name>` links to the nodes go. On Android ueventd makes `/dev/block/mapper/<name>`
    /// itself, so this is `None` there; a Linux host without udev rules gets them from us.
    pub link_dir: Option<PathBuf>,
    /// How long to wait for the node (ueventd creates it asynchronously).
    pub node_timeout: Duration,
}

impl DmConfig {
    /// Android's layout: nodes and links are ueventd's.
    pub fn android() -> DmConfig {
        DmConfig {
            control: "/dev/device-mapper".into(),
            dev_dir: "/dev/block".into(),
            link_dir: None,
            node_timeout: Duration::from_secs(5),
        }
    }

    /// A Linux system with devtmpfs: nodes in `/dev`, links made by us in `link_dir`.
    pub fn linux(link_dir: impl Into<PathBuf>) -> DmConfig {
        DmConfig {
            control: "/dev/mapper/control".into(),
            dev_dir: "/dev".into(),
            link_dir: Some(link_dir.into()),
            node_timeout: Duration::from_secs(5),
        }
    }
}

/// A device-mapper table: targets covering sectors `0..len` back to back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    lines: Vec<TargetLine>,
    sectors: u64,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// Appends `sectors` sectors read from `device` starting at its sector `offset`.
    pub fn linear(&mut self, sectors: u64, device: DevNum, offset: u64) -> Result<&mut Table> {
        offset
            .checked_add(sectors)
            .ok_or_else(|| err!(DeviceError, "linear target at sector {offset} overflows"))?;
        self.push(sectors, "linear", format!("{device} {offset}"))
    }

    /// Appends `sectors` sectors that read as zeros and discard writes.
    pub fn zero(&mut self, sectors: u64) -> Result<&mut Table> {
        self.push(sectors, "zero", String::new())
    }

    /// Appends `sectors` sectors served from user space through the dm-user control device
    /// `/dev/dm-user/<misc_name>`, as libsnapshot's `MapDmUserCow` loads it (libdm's
    /// `DmTargetUser`, `dm_target.cpp` `GetParameterString`: the parameters repeat the
    /// target's start and length before the control device's name, `<start> <sectors>
    /// <misc_name>`; the Android common kernel's `drivers/md/dm-user.c` `user_ctr` takes
    /// exactly these three arguments, registers target type `user` 1.0.0 and removes the
    /// control device when the target is destroyed, `user_dtr`).
    pub fn user(&mut self, sectors: u64, misc_name: &str) -> Result<&mut Table> {
        if misc_name.is_empty() || misc_name.contains(['/', ' ', '\0']) {
            return Err(err!(DeviceError, "bad dm-user control name {misc_name:?}"));
        }
        let params = format!("{} {sectors} {misc_name}", self.sectors);
        self.push(sectors, "user", params)
    }

    fn push(&mut self, sectors: u64, kind: &str, params: String) -> Result<&mut Table> {
        if sectors == 0 {
            return Err(err!(DeviceError, "empty {kind} target"));
        }
        let end = self
            .sectors
            .checked_add(sectors)
            .ok_or_else(|| err!(DeviceError, "device-mapper table length overflows"))?;
        self.lines.push(TargetLine {
            start: self.sectors,
            length: sectors,
            kind: kind.to_owned(),
            params,
        });
        self.sectors = end;
        Ok(self)
    }

    /// The table's lines, in sector order.
    pub fn lines(&self) -> &[TargetLine] {
        &self.lines
    }

    /// The mapped size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }
}

/// A mapping the kernel knows: its name and number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmDevice {
    /// Its name.
    pub name: String,
    /// Its device number.
    pub dev: DevNum,
}

/// What DM_DEV_STATUS says about one mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmStatus {
    /// Its device number.
    pub dev: DevNum,
    /// Empty when the creator gave none; ours start with [`UUID_PREFIX`].
    pub uuid: String,
    /// Whether its table is loaded read-only.
    pub read_only: bool,
    /// How many hold it open.
    pub open_count: i32,
}

/// A mapping just created: where its block node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// Its name.
    pub name: String,
    /// Its device number.
    pub dev: DevNum,
    /// `<dev_dir>/dm-N`.
    pub node: PathBuf,
    /// `<link_dir>/<name>`, when we made the link.
    pub link: Option<PathBuf>,
}

/// An open `/dev/device-mapper`.
#[derive(Debug)]
pub struct DeviceMapper {
    control: File,
    config: DmConfig,
}

impl DeviceMapper {
    /// Opens the control node and checks that the kernel speaks interface version 4.
    pub fn open(config: DmConfig) -> Result<DeviceMapper> {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config.control)
            .map_err(|e| {
                Error::io(
                    format!("opening {} (is dm-mod loaded?)", config.control.display()),
                    e,
                )
            })?;
        let dm = DeviceMapper { control, config };
        let reply = dm.call(Cmd::Version, "", wire::Request::new("", 0, &[], 0)?)?;
        let version = reply.version();
        if version[0] != wire::VERSION[0] {
            return Err(err!(
                DeviceError,
                "device-mapper interface {}.{}.{}, need {}.x",
                version[0],
                version[1],
                version[2],
                wire::VERSION[0]
            ));
        }
        Ok(dm)
    }

    /// Where the device-mapper pieces are.
    pub fn config(&self) -> &DmConfig {
        &self.config
    }

    /// Creates mapping `name` with `table` and activates it: DM_DEV_CREATE, DM_TABLE_LOAD,
    /// DM_DEV_SUSPEND (resume). A failure after the create removes the half-made device. Waits
    /// for the block node and makes the link if so configured.
    pub fn create(&self, name: &str, table: &Table, read_only: bool) -> Result<Mapped> {
        if name.is_empty() || name.contains('/') {
            return Err(err!(DeviceError, "bad device-mapper name {name:?}"));
        }
        if table.lines().is_empty() {
            return Err(err!(DeviceError, "empty table for {name}"));
        }
        let uuid = format!("{UUID_PREFIX}{name}");
        let req = wire::Request::new(name, 0, &[], 0)?.with_uuid(&uuid)?;
        let created = self.call(Cmd::Create, name, req)?;
        let dev = created.dev();
        let node = self
            .load_and_resume(name, table, read_only)
            .and_then(|()| self.node(name, dev));
        let node = match node {
            Ok(node) => node,
            Err(e) => {
                if let Err(undo) = self.remove_device(name) {
                    log::warn!("removing half-made mapping {name}: {undo}");
                }
                return Err(e);
            }
        };
        log::info!(
            "mapped {name} ({} sectors) at {}",
            table.sectors(),
            node.display()
        );
        Ok(Mapped {
            name: name.to_owned(),
            dev,
            link: self.config.link_dir.as_ref().map(|dir| dir.join(name)),
            node,
        })
    }

    /// The block node of mapping `name` (device `dev`), once it is there, with our link to it
    /// when so configured.
    pub fn node(&self, name: &str, dev: DevNum) -> Result<PathBuf> {
        let node = self.wait_for_node(dev)?;
        if let Some(dir) = &self.config.link_dir {
            self.link(dir, name, &node)?;
        }
        Ok(node)
    }

    /// Replaces the live table of the existing mapping `name` with `table`, as libdm's
    /// `LoadTableAndActivate` does (AOSP system/core `fs_mgr/libdm/dm.cpp:338-350`):
    /// DM_TABLE_LOAD, then DM_DEV_SUSPEND without SUSPEND_FLAG. With a table loaded, the kernel's
    /// resume suspends the device (I/O in flight completes), swaps the table in and resumes it:
    /// whoever holds the device open (a mounted file system, dm-verity) keeps it throughout.
    pub fn reload(&self, name: &str, table: &Table, read_only: bool) -> Result<()> {
        if table.lines().is_empty() {
            return Err(err!(DeviceError, "empty table for {name}"));
        }
        self.load_and_resume(name, table, read_only)?;
        log::info!(
            "reloaded {name} with {} targets ({} sectors)",
            table.lines().len(),
            table.sectors()
        );
        Ok(())
    }

    fn load_and_resume(&self, name: &str, table: &Table, read_only: bool) -> Result<()> {
        let data = wire::encode_table(table.lines())?;
        let count = u32::try_from(table.lines().len())
            .map_err(|_| err!(DeviceError, "too many targets for {name}"))?;
        let flags = if read_only { wire::READONLY_FLAG } else { 0 };
        let req = wire::Request::new(name, flags, &data, 0)?.with_targets(count);
        self.call(Cmd::TableLoad, name, req)?;
        // DM_DEV_SUSPEND without SUSPEND_FLAG resumes: it swaps the loaded table in.
        self.call(Cmd::Suspend, name, wire::Request::new(name, 0, &[], 0)?)?;
        Ok(())
    }

    /// Removes mapping `name` and our link to it. Returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool> {
        if self.status(name)?.is_none() {
            self.unlink(name)?;
            return Ok(false);
        }
        self.remove_device(name)?;
        self.unlink(name)?;
        log::info!("unmapped {name}");
        Ok(true)
    }

    /// DM_DEV_REMOVE, retried for a moment while the device is busy: a process that just
    /// closed it (or a udev probe) can hold it for a few milliseconds.
    fn remove_device(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let req = wire::Request::new(name, 0, &[], 0)?;
            match self.try_call(Cmd::Remove, req) {
                Ok(_) => return Ok(()),
                Err(Errno::EBUSY) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(ioctl_error(Cmd::Remove, name, e)),
            }
        }
    }

    /// DM_DEV_STATUS: the mapping's number, uuid and flags, `None` when no mapping has this name.
    pub fn status(&self, name: &str) -> Result<Option<DmStatus>> {
        let req = wire::Request::new(name, 0, &[], 0)?;
        match self.try_call(Cmd::Status, req) {
            Ok(reply) => Ok(Some(DmStatus {
                dev: reply.dev(),
                uuid: reply.uuid(),
                read_only: reply.flags() & wire::READONLY_FLAG != 0,
                open_count: reply.open_count(),
            })),
            Err(Errno::ENXIO) => Ok(None),
            Err(e) => Err(ioctl_error(Cmd::Status, name, e)),
        }
    }

    /// DM_TABLE_STATUS with STATUS_TABLE_FLAG: the live table as the kernel holds it.
    pub fn table(&self, name: &str) -> Result<Vec<TargetLine>> {
        let reply = self.call_growing(Cmd::TableStatus, name, wire::STATUS_TABLE_FLAG)?;
        if reply.flags() & wire::ACTIVE_PRESENT_FLAG == 0 {
            return Err(err!(DeviceError, "mapping {name} has no live table"));
        }
        reply.target_lines()
    }

    /// DM_LIST_VERSIONS: the target types the kernel has now (built in or loaded), by name.
    pub fn target_types(&self) -> Result<Vec<String>> {
        let reply = self.call_growing(Cmd::ListVersions, "", 0)?;
        Ok(reply
            .target_versions()?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// DM_LIST_DEVICES: every mapping on the system.
    pub fn list(&self) -> Result<Vec<DmDevice>> {
        let reply = self.call_growing(Cmd::List, "", 0)?;
        Ok(reply
            .name_list()?
            .into_iter()
            .map(|(name, dev)| DmDevice { name, dev })
            .collect())
    }

    /// The mappings this program created (uuid [`UUID_PREFIX`]), by name.
    pub fn ours(&self) -> Result<Vec<DmDevice>> {
        let mut out = Vec::new();
        for device in self.list()? {
            // A mapping removed between the listing and the status call is simply not listed.
            if let Some(status) = self.status(&device.name)? {
                if status.uuid.starts_with(UUID_PREFIX) {
                    out.push(device);
                }
            }
        }
        Ok(out)
    }

    /// Removes the mappings among `names` that exist: what a killed run left behind. Returns the
    /// names removed. The caller passes only target-slot names, so the running slot's mappings
    /// (first-stage init's) are never touched.
    pub fn remove_left_behind<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<String>> {
        let present = self.list()?;
        let mut removed = Vec::new();
        for name in names.iter().map(AsRef::as_ref) {
            if present.iter().any(|d| d.name == name) {
                log::warn!("removing mapping {name} left behind by an earlier run");
                self.remove(name)?;
                removed.push(name.to_owned());
            } else {
                self.unlink(name)?;
            }
        }
        Ok(removed)
    }

    /// Waits for `<dev_dir>/dm-N` to be the block device `dev`.
    fn wait_for_node(&self, dev: DevNum) -> Result<PathBuf> {
        let node = self.config.dev_dir.join(format!("dm-{}", dev.minor));
        let deadline = Instant::now() + self.config.node_timeout;
        loop {
            match std::fs::metadata(&node) {
                Ok(m) if m.file_type().is_block_device() && DevNum::decode(m.rdev()) == dev => {
                    return Ok(node);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("checking {}", node.display()), e)),
            }
            if Instant::now() >= deadline {
                return Err(err!(
                    DeviceError,
                    "{} did not appear as block device {dev} within {:?}",
                    node.display(),
                    self.config.node_timeout
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Points `<dir>/<name>` at `node`, replacing a stale link of an earlier run.
    fn link(&self, dir: &Path, name: &str, node: &Path) -> Result<()> {
        let link = dir.join(name);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        self.unlink(name)?;
        std::os::unix::fs::symlink(node, &link).map_err(|e| {
            Error::io(
                format!("linking {} to {}", link.display(), node.display()),
                e,
            )
        })
    }

    fn unlink(&self, name: &str) -> Result<()> {
        let Some(dir) = &self.config.link_dir else {
            return Ok(());
        };
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)
                .map_err(|e| Error::io(format!("removing {}", link.display()), e)),
            Ok(_) => Err(err!(
                DeviceError,
                "{} exists and is not a link; not replacing it",
                link.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("checking {}", link.display()), e)),
        }
    }

    /// A command whose reply may not fit: doubles the buffer while the kernel says it is full.
    fn call_growing(&self, cmd: Cmd, name: &str, flags: u32) -> Result<wire::Reply> {
        let mut capacity = 16 * 1024;
        loop {
            let req = wire::Request::new(name, flags, &[], capacity)?;
            let reply = self.call(cmd, name, req)?;
            if !reply.buffer_full() {
                return Ok(reply);
            }
            if capacity >= 16 << 20 {
                return Err(err!(
                    DeviceError,
                    "device-mapper {cmd:?} reply for {name:?} exceeds {capacity} bytes"
                ));
            }
            capacity *= 2;
        }
    }

    fn call(&self, cmd: Cmd, name: &str, req: wire::Request) -> Result<wire::Reply> {
        self.try_call(cmd, req)
            .map_err(|e| ioctl_error(cmd, name, e))
    }

    fn try_call(&self, cmd: Cmd, req: wire::Request) -> Result<wire::Reply, Errno> {
        let mut words = req.to_words();
        let fd = self.control.as_raw_fd();
        let ptr = words.as_mut_ptr().cast::<wire::DmIoctl>();
        // SAFETY: `fd` is our open control node. `ptr` points at a live, 8-byte aligned buffer of
        // `data_size` bytes (written in the header), at least `sizeof(struct dm_ioctl)`; the kernel
        // reads and writes only within `data_size`, and `words` outlives the call.
        let result = unsafe {
            match cmd {
                Cmd::Version => ioctls::version(fd, ptr),
                Cmd::List => ioctls::list_devices(fd, ptr),
                Cmd::Create => ioctls::dev_create(fd, ptr),
                Cmd::Remove => ioctls::dev_remove(fd, ptr),
                Cmd::Suspend => ioctls::dev_suspend(fd, ptr),
                Cmd::Status => ioctls::dev_status(fd, ptr),
                Cmd::TableLoad => ioctls::table_load(fd, ptr),
                Cmd::TableStatus => ioctls::table_status(fd, ptr),
                Cmd::ListVersions => ioctls::list_versions(fd, ptr),
            }
        };
        result.map(|_| wire::Reply::from_words(&words))
    }
}

/// The commands we use, for dispatch and messages.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Version,
    List,
    Create,
    Remove,
    Suspend,
    Status,
    TableLoad,
    TableStatus,
    ListVersions,
}

fn ioctl_error(cmd: Cmd, name: &str, e: Errno) -> Error {
    let what = match cmd {
        Cmd::Version => "DM_VERSION",
        Cmd::List => "DM_LIST_DEVICES",
        Cmd::Create => "DM_DEV_CREATE",
        Cmd::Remove => "DM_DEV_REMOVE",
        Cmd::Suspend => "DM_DEV_SUSPEND",
        Cmd::Status => "DM_DEV_STATUS",
        Cmd::TableLoad => "DM_TABLE_LOAD",
        Cmd::TableStatus => "DM_TABLE_STATUS",
        Cmd::ListVersions => "DM_LIST_VERSIONS",
    };
    Error::io(
        format!("device-mapper {what} {name}"),
        io::Error::from_raw_os_error(e as i32),
    )
}

/// The ioctl request codes: `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)`.
mod ioctls {
    use super::wire::DmIoctl;

    const DM_IOCTL: u8 = 0xfd;
    nix::ioctl_readwrite!(version, DM_IOCTL, 0, DmIoctl);
    nix::ioctl_readwrite!(list_devices, DM_IOCTL, 2, DmIoctl);
    nix::ioctl_readwrite!(dev_create, DM_IOCTL, 3, DmIoctl);
    nix::ioctl_readwrite!(dev_remove, DM_IOCTL, 4, DmIoctl);
    nix::ioctl_readwrite!(dev_suspend, DM_IOCTL, 6, DmIoctl);
    nix::ioctl_readwrite!(dev_status, DM_IOCTL, 7, DmIoctl);
    nix::ioctl_readwrite!(table_load, DM_IOCTL, 9, DmIoctl);
    nix::ioctl_readwrite!(table_status, DM_IOCTL, 12, DmIoctl);
    nix::ioctl_readwrite!(list_versions, DM_IOCTL, 13, DmIoctl);
}

/// The device number of block device `path` (what a linear target names).
pub fn block_dev(path: &Path) -> Result<DevNum> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("checking {}", path.display()), e))?;
    if !meta.file_type().is_block_device() {
        return Err(err!(
            DeviceError,
            "{} is not a block device; device-mapper needs one",
            path.display()
        ));
    }
    Ok(DevNum::decode(meta.rdev()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_targets_are_back_to_back() {
        let sup = DevNum { major: 7, minor: 0 };
        let mut t = Table::new();
        t.linear(2048, sup, 4096).unwrap().zero(8).unwrap();
        t.linear(16, sup, 10_000).unwrap();
        let got: Vec<_> = t
            .lines()
            .iter()
            .map(|l| (l.start, l.length, l.kind.as_str(), l.params.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 2048, "linear", "7:0 4096"),
                (2048, 8, "zero", ""),
                (2056, 16, "linear", "7:0 10000"),
            ]
        );
        assert_eq!(t.sectors(), 2072);
        assert!(t.zero(0).is_err());
        assert!(t.linear(2, sup, u64::MAX).is_err());
        assert!(t.zero(u64::MAX).is_err());
        assert_eq!(t.sectors(), 2072);
    }

    #[test]
    fn a_user_target_names_its_control_device() {
        let mut t = Table::new();
        t.user(2_097_152, "system_b").unwrap();
        assert_eq!(
            t.lines(),
            [TargetLine {
                start: 0,
                length: 2_097_152,
                kind: "user".into(),
                params: "0 2097152 system_b".into(),
            }]
        );
        // The spec as DM_TABLE_LOAD takes it: start, length, status, next, type, then the
        // NUL-terminated parameters padded to 8 bytes.
        let bytes = wire::encode_table(t.lines()).unwrap();
        assert_eq!(bytes.len(), 40 + 24);
        assert_eq!(&bytes[8..16], &2_097_152u64.to_ne_bytes());
        assert_eq!(&bytes[24..29], b"user\0");
        assert_eq!(&bytes[40..59], b"0 2097152 system_b\0");
        // A second target repeats its own start.
        t.user(8, "vendor_b").unwrap();
        assert_eq!(t.lines()[1].params, "2097152 8 vendor_b");
        for bad in ["", "a/b", "a b"] {
            assert!(Table::new().user(8, bad).is_err(), "{bad:?}");
        }
        assert!(Table::new().user(0, "system_b").is_err());
    }

    #[test]
    fn missing_control_node_is_a_device_error() {
        let mut config = DmConfig::linux("/nonexistent");
        config.control = "/nonexistent/device-mapper".into();
        let e = DeviceMapper::open(config).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::DeviceError);
        assert!(e.message.contains("is dm-mod loaded"), "{e}");
    }

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = block_dev(f.path()).unwrap_err();
        assert!(e.message.contains("not a block device"), "{e}");
    }
}
