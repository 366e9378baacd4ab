//! Platform adapter: the partitions of the two slots.
//!
//! On Android a physical partition is the block device `/dev/block/by-name/<name><suffix>`; on
//! a host it is the file `DIR/<name><suffix>.img` in a *device directory*. A device with
//! dynamic partitions also has `super` (`/dev/block/by-name/super`, or `DIR/super.img`): its
//! logical partitions `<name><suffix>` are found in the liblp metadata slot of their own A/B
//! slot ([`super_meta`]) and read and written through their extents ([`logical`]), or, where
//! a [`LogicalMapper`] is installed (device-mapper on Android), through the block device it
//! maps. A name that is a physical partition is that partition; otherwise it is looked up in
//! `super`.
//!
//! The engine gets partitions only through [`Device::source`] and [`Device::target`]: the
//! source slot is opened read-only and its type has no write method, and the target slot is
//! always derived as the *other* slot from the one running, so writing the running slot cannot
//! be expressed. In `super`, only the target slot's metadata slot and the extents its metadata
//! (or the update's planned metadata, [`Device::set_planned_target`]) maps are written.

pub mod cow_image;
pub mod file_pin;
// The COW images through gsid: on Android only with the platform's AIDL crate (the `gsid`
// feature); hosts build it against platform_aidl/ and test it with a stand-in gsid.
#[cfg(any(not(target_os = "android"), feature = "gsid"))]
pub mod image_service;
pub mod image_store;
pub mod logical;
pub mod snapshot;
pub mod snapshot_merge;
pub mod snapshot_mount;
pub mod snapshot_user;
pub mod super_meta;
pub mod verity_image;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::engine::{SlotPartitions, SourceRead, TargetWrite};
use crate::err;
use crate::error::{Error, Result};
use crate::lp;
use crate::slot::Slot;
use logical::{ExtentMap, LogicalSource, LogicalTarget};

/// Where the partitions are.
#[derive(Clone, Debug)]
pub enum Layout {
    /// `/dev/block/by-name` on Android, or any directory of block devices named the same way.
    ByName(PathBuf),
    /// A host device directory of `<name>_a.img` / `<name>_b.img` files (and `super.img`).
    HostDir(PathBuf),
}

/// A layer over `super`'s read-write handle: every write into `super` (metadata and logical
/// partitions) goes through it. The power-cut tests record those writes here.
pub trait SuperLayer: Send + Sync {
    /// The handle to use in place of `inner`.
    fn wrap(&self, inner: Box<dyn TargetWrite>) -> Box<dyn TargetWrite>;
}

/// Maps a target logical partition as a block device (Android: dm-linear, ZERO extents as
/// dm-zero, under `/dev/block/mapper`).
pub trait LogicalMapper: Send + Sync {
    /// Maps `name` (with its slot suffix, e.g. `system_b`) onto `super_path` as `extents`
    /// describe and returns the node to open. A mapping of that name with the same table is
    /// reused; one with another table (left behind by a killed run) is replaced.
    fn map(&self, name: &str, super_path: &Path, extents: &[lp::Extent]) -> Result<PathBuf>;
    /// [`LogicalMapper::map`] with LINEAR extents on several block devices, by the extents'
    /// block device index (a COW device: `super`, then the data partition holding its image).
    fn map_on(&self, name: &str, devices: &[&Path], extents: &[lp::Extent]) -> Result<PathBuf>;
    /// Removes the mapping `name`, if there is one.
    fn unmap(&self, name: &str) -> Result<()>;
    /// Whether the kernel has device-mapper target type `kind` (`user`: dm-user). A mapper
    /// without a kernel behind it has none.
    fn has_target(&self, kind: &str) -> Result<bool> {
        let _ = kind;
        Ok(false)
    }
    /// Maps `name` as a dm-user device of `sectors` sectors, served by whoever attaches to its
    /// control device `misc_name` (snapuserd), and returns the node to open
    /// ([`crate::device::snapshot_user`]).
    fn map_user(&self, name: &str, sectors: u64, misc_name: &str) -> Result<PathBuf> {
        let _ = (sectors, misc_name);
        Err(err!(
            DeviceError,
            "{name}: this mapper makes no dm-user devices"
        ))
    }
    /// Replaces the live table of the running slot's mapping `name` (a snapshot's device,
    /// merged) with the dm-linear table of `extents` on `super_path`, in place: whether there
    /// is such a mapping. A mapper without live mappings has none.
    fn collapse(
        &self,
        name: &str,
        super_path: &Path,
        extents: &[lp::Extent],
        read_only: bool,
    ) -> Result<bool> {
        let _ = (name, super_path, extents, read_only);
        Ok(false)
    }
}

/// The device: its partition layout and the slot it runs from.
#[derive(Clone)]
pub struct Device {
    layout: Layout,
    current: Slot,
    super_layer: Option<Arc<dyn SuperLayer>>,
    mapper: Option<Arc<dyn LogicalMapper>>,
    /// The target slot's metadata an update is about to write (or wrote): the target's
    /// logical partitions resolve through it. Shared by clones, so the engine's copy of the
    /// device and the updater's see the same plan.
    planned: Arc<Mutex<Option<lp::Metadata>>>,
    /// Who makes the Virtual A/B COW images on `/data` when not we ourselves (Android: gsid).
    /// Shared by clones, as `planned`.
    image_service: Arc<OnceLock<Arc<dyn image_store::ImageService>>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("layout", &self.layout)
            .field("current", &self.current)
            .field("super_layer", &self.super_layer.is_some())
            .field("mapper", &self.mapper.is_some())
            .finish()
    }
}

/// Where a partition of one slot is.
enum Resolved {
    Physical(PathBuf),
    Logical {
        name: String,
        map: ExtentMap,
        extents: Vec<lp::Extent>,
    },
}

impl Device {
    /// A device laid out as `layout`, running slot `current`.
    pub fn new(layout: Layout, current: Slot) -> Self {
        Device {
            layout,
            current,
            super_layer: None,
            mapper: None,
            planned: Arc::new(Mutex::new(None)),
            image_service: Arc::new(OnceLock::new()),
        }
    }

    /// The COW images on `/data` are made by `service` (Android: gsid), for this device and
    /// its clones; set once, before an update. False when one was set already.
    pub fn set_image_service(&self, service: Arc<dyn image_store::ImageService>) -> bool {
        self.image_service.set(service).is_ok()
    }

    /// Who makes the COW images on `/data`, when not we ourselves.
    pub fn image_service(&self) -> Option<&Arc<dyn image_store::ImageService>> {
        self.image_service.get()
    }

    /// A host device directory `dir` (`<name>_<slot>.img` files), running slot `current`.
    pub fn host(dir: impl Into<PathBuf>, current: Slot) -> Self {
        Self::new(Layout::HostDir(dir.into()), current)
    }

    /// Every write into `super` goes through `layer`.
    pub fn with_super_layer(mut self, layer: Arc<dyn SuperLayer>) -> Self {
        self.super_layer = Some(layer);
        self
    }

    /// Target logical partitions are opened through the block devices `mapper` makes.
    pub fn with_mapper(mut self, mapper: Arc<dyn LogicalMapper>) -> Self {
        self.mapper = Some(mapper);
        self
    }

    /// The running slot.
    pub fn current_slot(&self) -> Slot {
        self.current
    }

    /// The slot an update writes: always the one not running.
    pub fn target_slot(&self) -> Slot {
        self.current.other()
    }

    /// Where the partitions are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The path of physical partition `name` in `slot`.
    pub fn partition_path(&self, name: &str, slot: Slot) -> PathBuf {
        match &self.layout {
            Layout::ByName(dir) => dir.join(format!("{name}{}", slot.suffix())),
            Layout::HostDir(dir) => dir.join(format!("{name}{}.img", slot.suffix())),
        }
    }

    /// The path of `super`: `by-name/super` or `DIR/super.img`.
    pub fn super_path(&self) -> PathBuf {
        match &self.layout {
            Layout::ByName(dir) => dir.join("super"),
            Layout::HostDir(dir) => dir.join("super.img"),
        }
    }

    /// Whether the device has dynamic partitions (a `super`).
    pub fn has_super(&self) -> bool {
        self.super_path().exists()
    }

    /// `super`, read-only.
    pub fn open_super_ro(&self) -> Result<Arc<dyn SourceRead>> {
        Ok(Arc::new(SourcePartition::open(&self.super_path())?))
    }

    /// `super`, read-write, through the layer if one is installed.
    pub fn open_super_rw(&self) -> Result<Arc<dyn TargetWrite>> {
        let inner: Box<dyn TargetWrite> = Box::new(TargetPartition::open(&self.super_path())?);
        Ok(match &self.super_layer {
            Some(layer) => Arc::from(layer.wrap(inner)),
            None => Arc::from(inner),
        })
    }

    /// `super`'s geometry and the metadata `slot` boots from (its own metadata slot).
    pub fn super_metadata(&self, slot: Slot) -> Result<(lp::Geometry, lp::Metadata)> {
        let dev = self.open_super_ro()?;
        let geometry = super_meta::read_geometry(dev.as_ref())?;
        let metadata =
            super_meta::read_slot(dev.as_ref(), &geometry, super_meta::metadata_slot(slot))?;
        Ok((geometry, metadata))
    }

    /// Sets (or clears) the metadata the target slot's logical partitions resolve through until
    /// it is written: an update's prepared layout, so its checks see the new sizes.
    pub fn set_planned_target(&self, metadata: Option<lp::Metadata>) {
        *self.planned.lock().unwrap_or_else(|e| e.into_inner()) = metadata;
    }

    /// The metadata set by [`Device::set_planned_target`], if any.
    pub fn planned_target(&self) -> Option<lp::Metadata> {
        self.planned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A copy of this device whose planned target metadata is `metadata`, not shared with
    /// this one (checks that must not change what an update in progress sees). It has no
    /// mapper: its logical partitions are opened through their extents, so a check never
    /// creates, replaces or removes the mappings an update in progress writes through.
    pub fn detached_with_plan(&self, metadata: Option<lp::Metadata>) -> Device {
        let mut device = self.clone();
        device.planned = Arc::new(Mutex::new(metadata));
        device.mapper = None;
        device
    }

    /// Writes `metadata` into the target slot's metadata slot of `super` (both copies, each
    /// durable before the next write). Returns whether anything had to be written.
    pub fn write_target_metadata(&self, metadata: &lp::Metadata) -> Result<bool> {
        self.write_slot_metadata(self.target_slot(), metadata)
    }

    /// Removes the device-mapper mappings of the target slot's logical partitions named in
    /// `metadata`, its snapshots' COW partitions too (no-op without a mapper).
    pub fn unmap_target(&self, metadata: &lp::Metadata) -> Result<()> {
        self.unmap_slot(metadata, self.target_slot())
    }

    /// Removes the device-mapper mappings of `slot`'s logical partitions named in `metadata`
    /// and of its snapshots' COW partitions (no-op without a mapper).
    pub fn unmap_slot(&self, metadata: &lp::Metadata, slot: Slot) -> Result<()> {
        let Some(mapper) = &self.mapper else {
            return Ok(());
        };
        for p in metadata.partitions() {
            if lp::in_slot(&p.name, slot.suffix()) {
                mapper.unmap(&p.name)?;
            }
        }
        Ok(())
    }

    /// Whether the device maps partitions through device-mapper (a [`LogicalMapper`]).
    pub fn has_mapper(&self) -> bool {
        self.mapper.is_some()
    }

    /// The running slot's mapping of logical partition `name` (with its suffix), as
    /// `metadata` (the running slot's) lays it out: its live table replaced with the
    /// partition's dm-linear table on `super` (read-only when the partition is), as
    /// libsnapshot's `CollapseSnapshotDevice` does once a snapshot is merged. Whether there was
    /// such a mapping (never, without a mapper).
    pub fn collapse(&self, metadata: &lp::Metadata, name: &str) -> Result<bool> {
        let Some(mapper) = &self.mapper else {
            return Ok(false);
        };
        let partition = metadata.partition(name).ok_or_else(|| {
            err!(
                PartitionMissing,
                "no logical partition {name} in the running slot's metadata"
            )
        })?;
        let read_only = partition.attributes & lp::ATTR_READONLY != 0;
        mapper.collapse(
            name,
            &self.super_path(),
            metadata.extents_of(partition),
            read_only,
        )
    }

    /// Removes the device-mapper mapping `name` if there is one (no-op without a mapper).
    pub fn unmap_named(&self, name: &str) -> Result<()> {
        match &self.mapper {
            Some(mapper) => mapper.unmap(name),
            None => Ok(()),
        }
    }

    /// Finds `name` in `slot`: the physical partition if it exists, else the logical
    /// partition `<name><suffix>` of the slot's metadata (the planned one for the target).
    fn resolve(&self, name: &str, slot: Slot) -> Result<Resolved> {
        let path = self.partition_path(name, slot);
        if path.exists() || !self.has_super() {
            return Ok(Resolved::Physical(path));
        }
        let logical = format!("{name}{}", slot.suffix());
        let planned = (slot == self.target_slot())
            .then(|| self.planned_target())
            .flatten();
        let super_size = self.open_super_ro()?.size();
        let metadata = match planned {
            Some(m) => m,
            None => self.super_metadata(slot)?.1,
        };
        let Some(partition) = metadata.partition(&logical) else {
            return Err(err!(
                PartitionMissing,
                "partition {name} is neither {} nor a logical partition {logical} in {}",
                path.display(),
                self.super_path().display()
            ));
        };
        Ok(Resolved::Logical {
            map: ExtentMap::new(&metadata, partition, super_size)?,
            extents: metadata.extents_of(partition).to_vec(),
            name: logical,
        })
    }

    /// Opens `name` in the running slot, read-only.
    pub fn source(&self, name: &str) -> Result<Box<dyn SourceRead>> {
        self.read_only(name, self.current)
    }

    /// Opens `name` in either slot, read-only (AVB checks read the target slot's vbmeta).
    pub fn read_only(&self, name: &str, slot: Slot) -> Result<Box<dyn SourceRead>> {
        Ok(match self.resolve(name, slot)? {
            Resolved::Physical(path) => Box::new(SourcePartition::open(&path)?),
            Resolved::Logical { map, .. } => {
                Box::new(LogicalSource::new(self.open_super_ro()?, map))
            }
        })
    }

    /// Where the bytes of `name` in `slot` are, for a read-only loop device to mount them
    /// (postinstall): a physical partition whole, a logical one as its single extent in
    /// `super`, or, spread over several extents, the dm-linear device the mapper makes of them
    /// (as update_engine mounts its mapped target partitions), which
    /// [`Device::unmap_mounted`] removes once the partition is unmounted.
    pub fn mount_source(
        &self,
        name: &str,
        slot: Slot,
    ) -> Result<crate::postinstall::mount::MountSource> {
        use crate::postinstall::mount::MountSource;
        match self.resolve(name, slot)? {
            Resolved::Physical(path) => {
                let size = SourcePartition::open(&path)?.size();
                Ok(MountSource {
                    path,
                    offset: 0,
                    size,
                })
            }
            Resolved::Logical { name, map, extents } => match map.physical_ranges().as_slice() {
                [(offset, len)] if *len == map.size() => Ok(MountSource {
                    path: self.super_path(),
                    offset: *offset,
                    size: *len,
                }),
                ranges => {
                    let Some(mapper) = &self.mapper else {
                        return Err(err!(
                            PostinstallFailed,
                            "{name} lies in {} pieces of super, which only a device-mapper \
                             table joins (--device-mapper)",
                            ranges.len()
                        ));
                    };
                    let path = mapper.map(&name, &self.super_path(), &extents)?;
                    log::info!(
                        "{name}: {} extents in super, mapped as {} to be mounted",
                        ranges.len(),
                        path.display()
                    );
                    Ok(MountSource {
                        path,
                        offset: 0,
                        size: map.size(),
                    })
                }
            },
        }
    }

    /// Removes the mapping [`Device::mount_source`] made of `name` in `slot`, if it made one.
    pub fn unmap_mounted(&self, name: &str, slot: Slot) -> Result<()> {
        let Some(mapper) = &self.mapper else {
            return Ok(());
        };
        match self.resolve(name, slot)? {
            Resolved::Logical { name, map, .. } if map.physical_ranges().len() > 1 => {
                mapper.unmap(&name)
            }
            _ => Ok(()),
        }
    }

    /// Removes the mapping of the logical partition `full_name` (`system_b-cow`) if there is
    /// one (no-op without a mapper): a COW device mapped to be read.
    pub fn unmap_logical(&self, full_name: &str) -> Result<()> {
        match &self.mapper {
            Some(mapper) => mapper.unmap(full_name),
            None => Ok(()),
        }
    }

    /// Opens `name` in the target slot for writing.
    pub fn target(&self, name: &str) -> Result<Box<dyn TargetWrite>> {
        match self.resolve(name, self.target_slot())? {
            Resolved::Physical(path) => Ok(Box::new(TargetPartition::open(&path)?)),
            Resolved::Logical { name, map, extents } => self.logical_rw(&name, map, &extents),
        }
    }

    /// Opens the logical partition `full_name` (with its suffix) of `metadata` read-write.
    /// Only the Virtual A/B paths use it: the target's `-cow` partitions while an update is
    /// written, and, after the reboot into the update, the running slot's snapshots and their
    /// COWs for the merge (which writes the running slot's partitions, as snapuserd does).
    pub fn open_logical(
        &self,
        metadata: &lp::Metadata,
        full_name: &str,
    ) -> Result<Box<dyn TargetWrite>> {
        let Some(partition) = metadata.partition(full_name) else {
            return Err(err!(
                PartitionMissing,
                "no logical partition {full_name} in {}",
                self.super_path().display()
            ));
        };
        let super_size = self.open_super_ro()?.size();
        let map = ExtentMap::new(metadata, partition, super_size)?;
        self.logical_rw(full_name, map, metadata.extents_of(partition))
    }

    /// Opens the COW device of snapshot `space` (`system_b`) read-write: its `-cow` partition
    /// of `metadata`, followed by its image on `/data` when the COW overflows `super`
    /// (libsnapshot's `MapCowDevices`). With a mapper on a device, one dm-linear table over
    /// both (the image's recorded extents on the data partition, or the device an image
    /// service mapped it as); otherwise the partition's extents and the image file, joined.
    pub fn open_cow(
        &self,
        metadata: &lp::Metadata,
        space: &lp::SnapshotSpace,
        images: &image_store::CowImages,
    ) -> Result<Box<dyn TargetWrite>> {
        let cow = format!("{}-cow", space.name);
        if space.cow_file_size == 0 {
            return self.open_logical(metadata, &cow);
        }
        let image = cow_image::image_name(&space.name);
        let size = space
            .cow_partition_size
            .checked_add(space.cow_file_size)
            .ok_or_else(|| err!(DeviceError, "{}: COW size overflows", space.name))?;
        if let Some(node) = self.map_cow(metadata, space, images)? {
            let target = TargetPartition::open(&node)?;
            if matches!(images, image_store::CowImages::Local(_)) && target.size() != size {
                return Err(err!(
                    DeviceError,
                    "{} has {} bytes, the COW {size}",
                    node.display(),
                    target.size()
                ));
            }
            return Ok(Box::new(target));
        }
        let images = match images {
            image_store::CowImages::Local(dir) => dir,
            image_store::CowImages::Service(service) => {
                let (_, opened) = service_image(service.as_ref(), space)?;
                return self.open_cow_on(metadata, space, opened);
            }
        };
        let mut parts = Vec::new();
        if space.cow_partition_size > 0 {
            parts.push((self.open_logical(metadata, &cow)?, space.cow_partition_size));
        }
        parts.push((
            images.open(&image, space.cow_file_size)?,
            space.cow_file_size,
        ));
        Ok(Box::new(cow_image::Joined::new(parts)?))
    }

    /// The COW device of snapshot `space` as one mapping `<name>-cow` made by this device's
    /// mapper, as libsnapshot's `MapCowDevices` makes it: the `-cow` partition's extents in
    /// `super` alone, or, on a device (by-name layout), followed by its image on `/data`
    /// (the image's recorded extents on the data partition, or the device an image service
    /// mapped it as). `None` where no mapper makes it. [`Device::unmap_logical`] removes it.
    pub fn map_cow(
        &self,
        metadata: &lp::Metadata,
        space: &lp::SnapshotSpace,
        images: &image_store::CowImages,
    ) -> Result<Option<PathBuf>> {
        match &self.mapper {
            Some(mapper) => self.map_cow_with(mapper.as_ref(), metadata, space, images),
            None => Ok(None),
        }
    }

    /// [`Device::map_cow`] made by `mapper`.
    pub fn map_cow_with(
        &self,
        mapper: &dyn LogicalMapper,
        metadata: &lp::Metadata,
        space: &lp::SnapshotSpace,
        images: &image_store::CowImages,
    ) -> Result<Option<PathBuf>> {
        let cow = format!("{}-cow", space.name);
        let mut extents = Vec::new();
        if space.cow_partition_size > 0 || space.cow_file_size == 0 {
            let Some(p) = metadata.partition(&cow) else {
                return Err(err!(PartitionMissing, "no logical partition {cow}"));
            };
            extents.extend_from_slice(metadata.extents_of(p));
        }
        if space.cow_file_size == 0 {
            return Ok(Some(mapper.map(&cow, &self.super_path(), &extents)?));
        }
        let Layout::ByName(by_name) = &self.layout else {
            return Ok(None);
        };
        let image = cow_image::image_name(&space.name);
        let images = match images {
            image_store::CowImages::Local(dir) => dir,
            image_store::CowImages::Service(service) => {
                let (image_device, opened) = service_image(service.as_ref(), space)?;
                drop(opened);
                extents.push(lp::Extent {
                    num_sectors: space.cow_file_size / lp::SECTOR_SIZE,
                    target: lp::ExtentTarget::Linear {
                        block_device: 1,
                        physical_sector: 0,
                    },
                });
                let node = mapper.map_on(&cow, &[&self.super_path(), &image_device], &extents)?;
                return Ok(Some(node));
            }
        };
        let Some(image_metadata) = images.metadata()? else {
            return Err(err!(DeviceError, "{image}: no image metadata"));
        };
        let Some(recorded) = lp::images::image_extents(&image_metadata, &image) else {
            return Err(err!(DeviceError, "{image} is not in the image metadata"));
        };
        extents.extend(recorded.iter().map(|e| lp::Extent {
            num_sectors: e.length / lp::SECTOR_SIZE,
            target: lp::ExtentTarget::Linear {
                block_device: 1,
                physical_sector: e.physical / lp::SECTOR_SIZE,
            },
        }));
        let data_name = image_metadata
            .block_devices()
            .first()
            .map_or("userdata", |d| d.partition_name.as_str());
        let data = if data_name == "userdata" {
            by_name.join("userdata")
        } else {
            Path::new("/dev/block").join(data_name)
        };
        Ok(Some(mapper.map_on(
            &cow,
            &[&self.super_path(), &data],
            &extents,
        )?))
    }

    /// [`Device::open_cow`] with the image an image service mapped, opened as `image`, where
    /// no mapper joins them: the partition's extents and the image device, joined.
    fn open_cow_on(
        &self,
        metadata: &lp::Metadata,
        space: &lp::SnapshotSpace,
        image: TargetPartition,
    ) -> Result<Box<dyn TargetWrite>> {
        let cow = format!("{}-cow", space.name);
        let mut parts = Vec::new();
        if space.cow_partition_size > 0 {
            parts.push((self.open_logical(metadata, &cow)?, space.cow_partition_size));
        }
        parts.push((Box::new(image) as Box<dyn TargetWrite>, space.cow_file_size));
        Ok(Box::new(cow_image::Joined::new(parts)?))
    }

    /// Writes `metadata` into the metadata slot of `slot` (the Virtual A/B merge's cleanup
    /// rewrites the running slot's, as libsnapshot does once its snapshots are merged).
    pub fn write_slot_metadata(&self, slot: Slot, metadata: &lp::Metadata) -> Result<bool> {
        let dev = self.open_super_rw()?;
        let geometry = super_meta::read_geometry(&super_meta::ReadHalf(dev.as_ref()))?;
        super_meta::write_slot(
            dev.as_ref(),
            &geometry,
            super_meta::metadata_slot(slot),
            metadata,
        )
    }

    fn logical_rw(
        &self,
        name: &str,
        map: ExtentMap,
        extents: &[lp::Extent],
    ) -> Result<Box<dyn TargetWrite>> {
        Ok(match &self.mapper {
            Some(mapper) => {
                let node = mapper.map(name, &self.super_path(), extents)?;
                let target = TargetPartition::open(&node)?;
                if target.size() != map.size() {
                    return Err(err!(
                        DeviceError,
                        "{} has {} bytes, its extents {}",
                        node.display(),
                        target.size(),
                        map.size()
                    ));
                }
                Box::new(target)
            }
            None => Box::new(LogicalTarget::new(self.open_super_rw()?, map)),
        })
    }
}

impl SlotPartitions for Device {
    fn open_source(&self, name: &str) -> Result<Box<dyn SourceRead>> {
        self.source(name)
    }
    fn open_target(&self, name: &str) -> Result<Box<dyn TargetWrite>> {
        self.target(name)
    }
    fn target_slot_name(&self) -> String {
        self.target_slot().suffix()[1..].to_owned()
    }
}

/// A partition opened `O_RDONLY`: the running slot's, or any slot's for checks.
#[derive(Debug)]
pub struct SourcePartition {
    file: File,
    size: u64,
    path: PathBuf,
}

impl SourcePartition {
    /// Opens a file or block device read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        let size = device_size(&file).map_err(|e| Error::io(path.display(), e))?;
        Ok(SourcePartition {
            file,
            size,
            path: path.to_owned(),
        })
    }

    /// The file or block device it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SourceRead for SourcePartition {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// A partition of the target slot, opened read-write. It is never created or grown: a partition
/// is a fixed-size block device, and a host image must already exist with its size.
#[derive(Debug)]
pub struct TargetPartition {
    file: File,
    size: u64,
    path: PathBuf,
}

impl TargetPartition {
    /// Opens a file or block device read-write; it is never created or grown.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let size = device_size(&file).map_err(|e| Error::io(path.display(), e))?;
        Ok(TargetPartition {
            file,
            size,
            path: path.to_owned(),
        })
    }

    /// The file or block device it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TargetWrite for TargetPartition {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.map_or(true, |end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write beyond the partition end",
            ));
        }
        self.file.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

fn open_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        err!(
            PartitionMissing,
            "partition {} does not exist",
            path.display()
        )
    } else {
        Error::io(format!("opening {}", path.display()), e)
    }
}

/// The size of a regular file or block device (whose metadata length is 0).
/// The size of a file or a block device (whose metadata says 0).
pub fn device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    // Seeking to the end is the portable way to size a block device without an ioctl; positioned
    // reads and writes elsewhere never depend on the cursor.
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

/// The COW image of snapshot `space`, mapped by `service` and opened: its device and the open
/// handle. An image smaller than the COW's share (one kept from an earlier run; gsid has no
/// call for an image's size) is refused.
fn service_image(
    service: &dyn image_store::ImageService,
    space: &lp::SnapshotSpace,
) -> Result<(PathBuf, TargetPartition)> {
    let device = service.map(&cow_image::image_name(&space.name))?;
    let image = TargetPartition::open(&device)?;
    if image.size() < space.cow_file_size {
        return Err(err!(
            DeviceError,
            "the COW image of {} ({}) has {} bytes, not {}",
            space.name,
            device.display(),
            image.size(),
            space.cow_file_size
        ));
    }
    Ok((device, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_the_other_slot() {
        let dir = tempfile::tempdir().unwrap();
        for (name, slot) in [("system_a.img", 'a'), ("system_b.img", 'b')] {
            std::fs::write(dir.path().join(name), vec![slot as u8; 8192]).unwrap();
        }
        let dev = Device::host(dir.path(), Slot::A);
        let target = dev.target("system").unwrap();
        target.write_at(b"new", 0).unwrap();
        assert_eq!(
            &std::fs::read(dir.path().join("system_b.img")).unwrap()[..3],
            b"new"
        );
        assert!(
            target.write_at(b"x", 8192).is_err(),
            "writes past the end are refused"
        );
        let source = dev.source("system").unwrap();
        let mut buf = [0u8; 3];
        source.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"aaa");
        assert_eq!(
            dev.source("vendor").err().map(|e| e.code),
            Some(crate::ErrorCode::PartitionMissing)
        );
    }

    /// With `super.img`, names that are not physical files resolve to the logical partition of
    /// each slot's own metadata slot, the target's through the planned metadata once set.
    #[test]
    #[cfg(feature = "host-tools")]
    fn logical_partitions_resolve_per_slot_and_through_the_plan() {
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::build::super_image::ab_layout(
            8 * MIB,
            "main",
            2 * MIB,
            &[("system", 8192)],
            false,
        );
        let system_a = vec![0xa5u8; 8192];
        let metadata = crate::build::super_image::write(
            &dir.path().join("super.img"),
            &layout,
            &[("system_a", &system_a)],
        )
        .unwrap();
        std::fs::write(dir.path().join("boot_b.img"), [0u8; 4096]).unwrap();
        let dev = Device::host(dir.path(), Slot::A);
        assert!(dev.has_super());
        let mut buf = vec![0u8; 8192];
        dev.source("system").unwrap().read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, system_a);
        assert_eq!(dev.target("boot").unwrap().size(), 4096, "physical first");
        assert_eq!(
            dev.target("system").unwrap().size(),
            0,
            "lpmake's empty system_b"
        );
        assert_eq!(
            dev.target("odm").err().map(|e| e.code),
            Some(crate::ErrorCode::PartitionMissing)
        );

        let plan = crate::lp::prepare_target(
            &metadata,
            "_b",
            &[crate::lp::DynamicGroup {
                name: "main".into(),
                size: 2 * MIB,
                partitions: vec!["system".into()],
            }],
            &[("system".into(), 12288)],
        )
        .unwrap();
        let clone = dev.clone();
        dev.set_planned_target(Some(plan.clone()));
        let target = clone.target("system").unwrap();
        assert_eq!(target.size(), 12288, "clones share the plan");
        target.write_at(&[0x5au8; 12288], 0).unwrap();
        assert_eq!(
            dev.detached_with_plan(None)
                .target("system")
                .unwrap()
                .size(),
            0
        );
        dev.source("system").unwrap().read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, system_a, "the source's extents are not the target's");
        assert!(dev.write_target_metadata(&plan).unwrap());
        dev.set_planned_target(None);
        let mut new = vec![0u8; 12288];
        dev.read_only("system", Slot::B)
            .unwrap()
            .read_at(&mut new, 0)
            .unwrap();
        assert!(new.iter().all(|&b| b == 0x5a));
        assert_eq!(dev.super_metadata(Slot::A).unwrap().1, metadata);
    }
}
