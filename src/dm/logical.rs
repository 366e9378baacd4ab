//! Logical partitions of `super` as device-mapper devices: update_engine's
//! `MapPartitionOnDeviceMapper` in this program's terms.
//!
//! A partition's extents, in logical order, become a table: a LINEAR extent on `super` (block
//! device 0) is `linear <super major:minor> <physical sector>`, a ZERO extent is `zero`. The
//! mapping is named like the partition with its slot suffix (`system_b`). Mapping a name that
//! is already mapped with the same table reuses it (the engine opens each partition several
//! times, from several threads); a mapping with another table is what a killed run left behind
//! for an older layout, and is replaced. Before its first mapping, a mapper for an update's
//! target slot removes every mapping it made earlier with the target suffix: a killed run's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{block_dev, DevNum, DeviceMapper, DmConfig, Table};
use crate::device::LogicalMapper;
use crate::err;
use crate::error::Result;
use crate::lp::{self, ExtentTarget};

/// The dm table of the partition `name` with `extents`, over `super` (device `super_dev`).
pub fn table_of(name: &str, extents: &[lp::Extent], super_dev: DevNum) -> Result<Table> {
    table_on(name, extents, &[super_dev])
}

/// The dm table of `name` with `extents` whose LINEAR targets are on `devices` (indexed by
/// the extents' block device): `super` alone for a logical partition, or `super` then the
/// data partition for a Virtual A/B COW device whose COW overflows into an image on `/data`
/// (libsnapshot's `MapCowDevices`: the `-cow` partition's table, then the image).
pub fn table_on(name: &str, extents: &[lp::Extent], devices: &[DevNum]) -> Result<Table> {
    let mut table = Table::new();
    for extent in extents {
        match extent.target {
            ExtentTarget::Linear {
                block_device,
                physical_sector,
            } => {
                let Some(dev) = devices.get(block_device as usize) else {
                    return Err(err!(
                        SlotError,
                        "{name}: extent on block device {block_device}, not super (retrofit \
                         dynamic partitions are not supported)"
                    ));
                };
                table.linear(extent.num_sectors, *dev, physical_sector)?
            }
            ExtentTarget::Zero => table.zero(extent.num_sectors)?,
        };
    }
    if table.lines().is_empty() {
        return Err(err!(
            PartitionMissing,
            "logical partition {name} has no extents to map"
        ));
    }
    Ok(table)
}

/// Maps logical partitions with device-mapper, one at a time. The control node is opened at
/// the first mapping, so a device without `super` never needs device-mapper.
#[derive(Debug)]
pub struct DmMapper {
    config: DmConfig,
    dm: Mutex<Option<DeviceMapper>>,
    read_only: bool,
    /// The target slot's suffix: our mappings with it that exist when we start are a killed
    /// run's, removed before the first new mapping.
    target_suffix: Option<String>,
}

impl DmMapper {
    /// Mappings for writing an update into the slot with `target_suffix` (`_a`, `_b`).
    pub fn for_target(config: DmConfig, target_suffix: &str) -> DmMapper {
        DmMapper {
            config,
            dm: Mutex::new(None),
            read_only: false,
            target_suffix: Some(target_suffix.to_owned()),
        }
    }

    /// Read-only mappings, as first-stage init makes them for the slot that boots.
    pub fn read_only(config: DmConfig) -> DmMapper {
        DmMapper {
            config,
            dm: Mutex::new(None),
            read_only: true,
            target_suffix: None,
        }
    }

    /// Removes the mappings this program made for the target slot (its partitions and its
    /// snapshots' COW partitions) that are still there: only a run that ended without
    /// unmapping (killed, or the power cut) leaves them. The running slot's mappings never
    /// carry the target suffix.
    fn remove_left_behind(&self, dm: &DeviceMapper) -> Result<()> {
        let Some(suffix) = &self.target_suffix else {
            return Ok(());
        };
        let left: Vec<String> = dm
            .ours()?
            .into_iter()
            .map(|d| d.name)
            .filter(|name| lp::in_slot(name, suffix))
            .collect();
        dm.remove_left_behind(&left).map(|_| ())
    }

    /// Runs `f` with the open control node, one caller at a time: two threads opening the same
    /// partition must not both create its mapping.
    fn with_dm<T>(&self, f: impl FnOnce(&DeviceMapper) -> Result<T>) -> Result<T> {
        let mut dm = self.dm.lock().unwrap_or_else(|e| e.into_inner());
        if dm.is_none() {
            let opened = DeviceMapper::open(self.config.clone())?;
            self.remove_left_behind(&opened)?;
            *dm = Some(opened);
        }
        match dm.as_ref() {
            Some(dm) => f(dm),
            None => Err(err!(DeviceError, "device-mapper is not open")),
        }
    }

    /// Maps `name` (with its slot suffix) onto `super_path` as `extents` describe and returns
    /// the block node. An existing mapping of that name is reused when its live table is this
    /// one (and its access mode ours), and replaced otherwise.
    pub fn map(&self, name: &str, super_path: &Path, extents: &[lp::Extent]) -> Result<PathBuf> {
        self.map_on(name, &[super_path], extents)
    }

    /// [`DmMapper::map`] with extents on several block devices (`devices`, by the extents'
    /// block device index).
    pub fn map_on(&self, name: &str, devices: &[&Path], extents: &[lp::Extent]) -> Result<PathBuf> {
        let devs = devices
            .iter()
            .map(|d| block_dev(d))
            .collect::<Result<Vec<_>>>()?;
        let table = table_on(name, extents, &devs)?;
        self.with_dm(|dm| {
            if let Some(status) = dm.status(name)? {
                if status.read_only == self.read_only && dm.table(name)? == table.lines() {
                    return dm.node(name, status.dev);
                }
                log::warn!("replacing mapping {name}: its table is not the one of the metadata");
                dm.remove(name)?;
            }
            Ok(dm.create(name, &table, self.read_only)?.node)
        })
    }

    /// Replaces the live table of the running mapping `name` with the dm-linear table of
    /// `extents` on `super_path` (libsnapshot's `CollapseSnapshotDevice`): whether there is
    /// such a mapping. One whose live table already is this one (an earlier run collapsed it)
    /// is left as it is.
    pub fn collapse(
        &self,
        name: &str,
        super_path: &Path,
        extents: &[lp::Extent],
        read_only: bool,
    ) -> Result<bool> {
        let table = table_of(name, extents, block_dev(super_path)?)?;
        self.with_dm(|dm| {
            if dm.status(name)?.is_none() {
                return Ok(false);
            }
            if dm.table(name)? == table.lines() {
                log::info!("{name} is already mapped linear on super");
                return Ok(true);
            }
            dm.reload(name, &table, read_only)?;
            Ok(true)
        })
    }

    /// Whether the kernel has target type `kind` now (DM_LIST_VERSIONS).
    pub fn has_target(&self, kind: &str) -> Result<bool> {
        self.with_dm(|dm| Ok(dm.target_types()?.iter().any(|t| t == kind)))
    }

    /// Maps `name` as a dm-user device of `sectors` sectors served through the control
    /// device `misc_name` (libsnapshot's `MapDmUserCow`). A mapping of that name left by an
    /// earlier run is removed first: its server is gone.
    pub fn map_user(&self, name: &str, sectors: u64, misc_name: &str) -> Result<PathBuf> {
        let mut table = Table::new();
        table.user(sectors, misc_name)?;
        self.with_dm(|dm| {
            if dm.remove(name)? {
                log::warn!("removed mapping {name} left behind by an earlier run");
            }
            Ok(dm.create(name, &table, self.read_only)?.node)
        })
    }

    /// Removes the mapping `name`, if there is one.
    pub fn unmap(&self, name: &str) -> Result<()> {
        self.with_dm(|dm| dm.remove(name).map(|_| ()))
    }

    /// Maps every partition of `metadata` whose name ends with `suffix` and that has extents and
    /// is not DISABLED (first-stage init's `CreateLogicalPartitions`, for one slot's names).
    /// Returns `(name, node)` for each.
    pub fn map_slot(
        &self,
        metadata: &lp::Metadata,
        suffix: &str,
        super_path: &Path,
    ) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for p in metadata.partitions() {
            let extents = metadata.extents_of(p);
            if !p.name.ends_with(suffix)
                || extents.is_empty()
                || p.attributes & lp::ATTR_DISABLED != 0
            {
                continue;
            }
            out.push((p.name.clone(), self.map(&p.name, super_path, extents)?));
        }
        Ok(out)
    }
}

impl LogicalMapper for DmMapper {
    fn map(&self, name: &str, super_path: &Path, extents: &[lp::Extent]) -> Result<PathBuf> {
        DmMapper::map(self, name, super_path, extents)
    }
    fn map_on(&self, name: &str, devices: &[&Path], extents: &[lp::Extent]) -> Result<PathBuf> {
        DmMapper::map_on(self, name, devices, extents)
    }
    fn unmap(&self, name: &str) -> Result<()> {
        DmMapper::unmap(self, name)
    }
    fn has_target(&self, kind: &str) -> Result<bool> {
        DmMapper::has_target(self, kind)
    }
    fn map_user(&self, name: &str, sectors: u64, misc_name: &str) -> Result<PathBuf> {
        DmMapper::map_user(self, name, sectors, misc_name)
    }
    fn collapse(
        &self,
        name: &str,
        super_path: &Path,
        extents: &[lp::Extent],
        read_only: bool,
    ) -> Result<bool> {
        DmMapper::collapse(self, name, super_path, extents, read_only)
    }
}

// The tests make their images with the host-tools builders.
#[cfg(all(test, feature = "host-tools"))]
mod tests {
    use super::*;
    use crate::build::super_image;

    const SUPER: DevNum = DevNum { major: 7, minor: 0 };

    #[test]
    fn extents_become_linear_and_zero_targets_in_order() {
        let extents = [
            lp::Extent {
                num_sectors: 2048,
                target: ExtentTarget::Linear {
                    block_device: 0,
                    physical_sector: 4096,
                },
            },
            lp::Extent {
                num_sectors: 8,
                target: ExtentTarget::Zero,
            },
            lp::Extent {
                num_sectors: 16,
                target: ExtentTarget::Linear {
                    block_device: 0,
                    physical_sector: 100,
                },
            },
        ];
        let table = table_of("system_b", &extents, SUPER).unwrap();
        let lines: Vec<_> = table
            .lines()
            .iter()
            .map(|l| (l.start, l.length, l.kind.as_str(), l.params.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (0, 2048, "linear", "7:0 4096"),
                (2048, 8, "zero", ""),
                (2056, 16, "linear", "7:0 100"),
            ]
        );
    }

    /// A COW device overflowing into an image: the `-cow` partition's extents on super
    /// (device 0), then the image's on the data partition (device 1); a third device is
    /// refused.
    #[test]
    fn cow_device_tables_span_super_then_the_data_partition() {
        let data = DevNum { major: 7, minor: 3 };
        let linear = |block_device, physical_sector, num_sectors| lp::Extent {
            num_sectors,
            target: ExtentTarget::Linear {
                block_device,
                physical_sector,
            },
        };
        let extents = [
            linear(0, 2048, 64),
            linear(1, 5400, 128),
            linear(1, 9000, 8),
        ];
        let table = table_on("system_b-cow", &extents, &[SUPER, data]).unwrap();
        let lines: Vec<_> = table
            .lines()
            .iter()
            .map(|l| (l.start, l.length, l.params.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (0, 64, "7:0 2048"),
                (64, 128, "7:3 5400"),
                (192, 8, "7:3 9000")
            ]
        );
        assert!(table_on("x", &[linear(2, 0, 8)], &[SUPER, data]).is_err());
        assert!(
            table_of("x", &[linear(1, 0, 8)], SUPER).is_err(),
            "super alone"
        );
    }

    /// The table of a partition lpmake's layout allocates: its extent starts past the metadata
    /// region, at the sector liblp chose.
    #[test]
    fn a_built_layout_maps_at_its_allocated_sectors() {
        const MIB: u64 = 1 << 20;
        let layout = super_image::ab_layout(
            16 * MIB,
            "group",
            6 * MIB,
            &[("system", 3 * MIB), ("vendor", MIB)],
            false,
        );
        let (geometry, metadata) = layout.build().unwrap();
        let metadata_end = geometry.total_metadata_size().unwrap() / lp::SECTOR_SIZE;
        for name in ["system_a", "vendor_a"] {
            let p = metadata.partition(name).unwrap();
            let table = table_of(name, metadata.extents_of(p), SUPER).unwrap();
            assert_eq!(
                table.sectors() * lp::SECTOR_SIZE,
                metadata.partition_size(p)
            );
            for (line, extent) in table.lines().iter().zip(metadata.extents_of(p)) {
                let ExtentTarget::Linear {
                    physical_sector, ..
                } = extent.target
                else {
                    panic!("{name}: {extent:?}");
                };
                assert!(
                    physical_sector >= metadata_end,
                    "{name} inside the metadata"
                );
                assert_eq!(line.params, format!("7:0 {physical_sector}"));
            }
        }
        // The empty `_b` partitions have nothing to map.
        let empty = metadata.partition("system_b").unwrap();
        let e = table_of("system_b", metadata.extents_of(empty), SUPER).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::PartitionMissing);
    }

    #[test]
    fn extents_on_another_block_device_are_refused() {
        let extents = [lp::Extent {
            num_sectors: 8,
            target: ExtentTarget::Linear {
                block_device: 1,
                physical_sector: 0,
            },
        }];
        let e = table_of("system_b", &extents, SUPER).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::SlotError);
        assert!(e.message.contains("block device 1"), "{e}");
    }

    /// A device with a mapper writes its target logical partitions only through it: over a
    /// `super` that is a file, where device-mapper cannot map, opening one fails (31) instead
    /// of falling back to writing the extents directly.
    #[test]
    fn a_device_with_a_mapper_never_falls_back_to_direct_writes() {
        use crate::device::{Device, Layout};
        use crate::slot::Slot;
        use std::sync::Arc;
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let layout = super_image::ab_layout(16 * MIB, "group", 6 * MIB, &[("system", MIB)], false);
        let system = vec![7u8; MIB as usize];
        super_image::write(&dir.path().join("super"), &layout, &[("system_a", &system)]).unwrap();
        let mut config = DmConfig::linux(dir.path().join("mapper"));
        config.control = dir.path().join("no-control");
        let mapper = Arc::new(DmMapper::for_target(config, "_a"));
        // Running slot B: the target is slot A, whose system_a has extents to map.
        let device =
            Device::new(Layout::ByName(dir.path().to_owned()), Slot::B).with_mapper(mapper);
        let e = device.target("system").err().unwrap();
        assert_eq!(e.code, crate::ErrorCode::DeviceError);
        assert!(e.message.contains("not a block device"), "{e}");
        // Without the mapper the same partition opens through its extents.
        let direct = Device::new(Layout::ByName(dir.path().to_owned()), Slot::B);
        assert_eq!(direct.target("system").unwrap().size(), MIB);
    }

    #[test]
    fn mapping_over_a_regular_file_is_refused_before_device_mapper_is_opened() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut config = DmConfig::linux("/nonexistent");
        config.control = "/nonexistent/control".into();
        let mapper = DmMapper::for_target(config, "_b");
        let extents = [lp::Extent {
            num_sectors: 8,
            target: ExtentTarget::Zero,
        }];
        let e = mapper.map("system_b", f.path(), &extents).unwrap_err();
        assert!(e.message.contains("not a block device"), "{e}");
    }
}
