//! The target slot's metadata for a Virtual A/B snapshot update, as libsnapshot's
//! `CreateUpdateSnapshots` makes it: the running slot's partitions taken over in place
//! (liblp's `UpdateMetadataForInPlaceSnapshot`: `_<source>` renamed `_<target>`, UPDATED set,
//! same extents, which are the snapshots' base), resized and added as the manifest says
//! (`SnapshotMetadataUpdater`), then a `cow` group with one `<name>_<target>-cow` partition
//! per snapshot carved from space free in both slots' metadata (`PartitionCowCreator`).

use super::builder::Builder;
use super::error::LpError;
use super::free::used_regions;
use super::metadata::Metadata;
use super::update::DynamicGroup;
use super::{ATTR_READONLY, ATTR_UPDATED, SECTOR_SIZE};

/// libsnapshot's `kCowGroupName`.
pub const COW_GROUP: &str = "cow";

/// libsnapshot's `GetCowName`: a snapshot's COW partition is `<snapshot>-cow`.
pub fn cow_name(snapshot: &str) -> String {
    format!("{snapshot}-cow")
}

/// Whether the logical partition `name` belongs to the slot with `suffix`: `<name><suffix>`,
/// or a snapshot's COW partition `<name><suffix>-cow`.
pub fn in_slot(name: &str, suffix: &str) -> bool {
    name.strip_suffix("-cow").unwrap_or(name).ends_with(suffix)
}

/// One partition the payload updates, for [`prepare_snapshot_target`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotUpdate {
    /// The partition's name without slot suffix.
    pub name: String,
    /// Its new size in bytes.
    pub size: u64,
    /// Bytes of COW it needs (see [`cow_size`]).
    pub cow_size: u64,
}

/// Where one snapshot's COW goes: libsnapshot's `SnapshotStatus` sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSpace {
    /// The snapshot's name, `<name>_<target>`.
    pub name: String,
    /// The new partition's size (`device_size`, `snapshot_size`).
    pub device_size: u64,
    /// The running slot's partition size (`old_partition_size`), 0 for a new partition.
    pub old_partition_size: u64,
    /// COW bytes in the `<name>-cow` partition of super.
    pub cow_partition_size: u64,
    /// COW bytes that did not fit in super (libsnapshot: an image on `/data`).
    pub cow_file_size: u64,
}

/// The planned target metadata and its snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTarget {
    /// The target slot's metadata.
    pub metadata: Metadata,
    /// One entry per partition of the payload with a non-empty size.
    pub snapshots: Vec<SnapshotSpace>,
}

/// `PartitionCowCreator::GetCowSize` for userspace snapshots: the manifest's
/// `estimate_cow_size` plus 2 MiB, rounded up to 4096. Without an estimate (libsnapshot then
/// refuses the update), `fallback`.
pub fn cow_size(estimate: Option<u64>, fallback: u64) -> u64 {
    match estimate {
        Some(e) => e.saturating_add(2 << 20).saturating_add(4095) & !4095,
        None => fallback,
    }
}

/// The target slot's metadata for a snapshot update from the running slot's `source`.
pub fn prepare_snapshot_target(
    source: &Metadata,
    source_suffix: &str,
    target_suffix: &str,
    groups: &[DynamicGroup],
    updates: &[SnapshotUpdate],
    partial: bool,
) -> Result<SnapshotTarget, LpError> {
    if target_suffix.is_empty() || source_suffix.is_empty() || source_suffix == target_suffix {
        return Err(LpError::bad_request("bad slot suffixes"));
    }
    let mut b = Builder::from_metadata(source)?;
    // What the running slot uses (its own partitions, no target or COW leftovers): a COW
    // partition may take neither these nor the target's extents.
    let mut current = Builder::from_metadata(source)?;
    for g in b.group_names() {
        if g.ends_with(target_suffix) || g == COW_GROUP {
            b.remove_group_and_partitions(&g);
            current.remove_group_and_partitions(&g);
        }
    }
    for p in b.partition_names() {
        if p.ends_with(target_suffix) {
            b.remove_partition(&p);
            current.remove_partition(&p);
        }
    }
    b.rename_suffix(source_suffix, target_suffix, ATTR_UPDATED);

    let suffixed = |n: &str| format!("{n}{target_suffix}");
    let size_of = |name: &str| updates.iter().find(|u| u.name == name).map(|u| u.size);
    let listed = |name: &str| {
        groups
            .iter()
            .any(|g| g.partitions.iter().any(|p| p == name))
    };
    // Shrinks and deletions first, so that growth finds their space.
    for p in b.partition_names() {
        let Some(base) = p.strip_suffix(target_suffix) else {
            continue;
        };
        let in_manifest_group = b
            .group_of(&p)
            .is_some_and(|g| groups.iter().any(|mg| suffixed(&mg.name) == g));
        if !partial && in_manifest_group && !listed(base) {
            b.remove_partition(&p);
        } else if let Some(size) = size_of(base) {
            if size < old_size(source, &format!("{base}{source_suffix}")) {
                b.resize_partition(&p, size)?;
            }
        }
    }
    for g in groups {
        b.set_group_size(&suffixed(&g.name), g.size)?;
        for name in &g.partitions {
            let Some(size) = size_of(name) else {
                return Err(LpError::bad_request(format!(
                    "group {} lists partition {name}, which has no new size",
                    g.name
                )));
            };
            let p = suffixed(name);
            if b.has_partition(&p) {
                b.change_group(&p, &suffixed(&g.name))?;
            } else {
                b.add_partition(&p, &suffixed(&g.name), ATTR_READONLY | ATTR_UPDATED)?;
            }
            b.resize_partition(&p, size)?;
        }
    }

    // The COW partitions, from space free in both the target's layout and the running slot's.
    let exported = current.export()?;
    b.reserve(&used_regions(exported.extents.iter()));
    b.add_group(COW_GROUP, 0)?;
    let lbs = u64::from(source.geometry.logical_block_size);
    let mut snapshots = Vec::new();
    for u in updates {
        let name = suffixed(&u.name);
        if u.size == 0 || !b.has_partition(&name) {
            continue;
        }
        let free = b
            .free_regions()
            .iter()
            .fold(0u64, |s, r| s.saturating_add(r.num_sectors()))
            .saturating_mul(SECTOR_SIZE);
        // PartitionCowCreator::Run (partition_cow_creator.cpp, Android 15): the partition gets
        // min(COW size, space free in both slots), rounded down to the logical block; the
        // rest, rounded up to the sector, is `cow_file_size`, an image on /data
        // (device::cow_image).
        let cow_partition_size = u.cow_size.min(free) & !(lbs - 1);
        let rest = u.cow_size - cow_partition_size;
        let cow_file_size = rest.div_ceil(SECTOR_SIZE).saturating_mul(SECTOR_SIZE);
        if cow_partition_size > 0 {
            let cow = cow_name(&name);
            b.add_partition(&cow, COW_GROUP, 0)?;
            b.resize_partition(&cow, cow_partition_size)?;
        }
        snapshots.push(SnapshotSpace {
            old_partition_size: old_size(source, &format!("{}{source_suffix}", u.name)),
            name,
            device_size: u.size,
            cow_partition_size,
            cow_file_size,
        });
    }
    Ok(SnapshotTarget {
        metadata: b.export()?,
        snapshots,
    })
}

fn old_size(source: &Metadata, name: &str) -> u64 {
    source
        .partition(name)
        .map_or(0, |p| source.partition_size(p))
}

/// `metadata` with the snapshot update finished: the `cow` group and its partitions gone and
/// UPDATED cleared (what the running slot's metadata holds once the merge completed).
pub fn without_snapshots(metadata: &Metadata) -> Result<Metadata, LpError> {
    let mut b = Builder::from_metadata(metadata)?;
    b.remove_group_and_partitions(COW_GROUP);
    b.clear_attribute(ATTR_UPDATED);
    b.export()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lp::{ExtentTarget, NewSuper};

    const MIB: u64 = 1 << 20;

    #[test]
    fn cow_partitions_belong_to_their_snapshots_slot() {
        assert!(in_slot("system_b", "_b"));
        assert!(in_slot(&cow_name("system_b"), "_b"));
        assert!(!in_slot("system_b-cow", "_a"));
        assert!(!in_slot("system_a", "_b"));
        assert!(!in_slot("cow", "_b"));
    }

    #[test]
    fn in_place_targets_and_cow_partitions_off_both_slots() {
        let mut s = NewSuper::new(64 * MIB, 65536, 2)
            .group("main_a", 30 * MIB)
            .partition("system_a", ATTR_READONLY, 8 * MIB, Some("main_a"))
            .partition("vendor_a", ATTR_READONLY, 4 * MIB, Some("main_a"));
        s.virtual_ab = true;
        let source = s.build().unwrap().1;
        let groups = [DynamicGroup {
            name: "main".into(),
            size: 30 * MIB,
            partitions: vec!["system".into(), "vendor".into()],
        }];
        let updates = [
            SnapshotUpdate {
                name: "system".into(),
                size: 10 * MIB,
                cow_size: cow_size(Some(3 * MIB), 0),
            },
            SnapshotUpdate {
                name: "vendor".into(),
                size: 2 * MIB,
                cow_size: 100 * MIB,
            },
        ];
        let t = prepare_snapshot_target(&source, "_a", "_b", &groups, &updates, false).unwrap();
        let m = &t.metadata;
        assert!(m.partition("system_a").is_none());
        let sys = m.partition("system_b").unwrap();
        assert_eq!(sys.attributes, ATTR_READONLY | ATTR_UPDATED);
        assert_eq!(m.group_of(sys).unwrap().name, "main_b");
        // The base: system_a's extent first, then growth.
        let src = source.partition("system_a").unwrap();
        assert_eq!(m.extents_of(sys)[0], source.extents_of(src)[0]);
        assert_eq!(m.partition_size(sys), 10 * MIB);
        let cow = m.partition("system_b-cow").unwrap();
        assert_eq!(m.group_of(cow).unwrap().name, COW_GROUP);
        assert_eq!(cow.attributes, 0);
        assert_eq!(m.partition_size(cow), 5 * MIB);
        assert_eq!(t.snapshots[0].cow_partition_size, 5 * MIB);
        assert_eq!(t.snapshots[0].cow_file_size, 0);
        assert_eq!(t.snapshots[0].old_partition_size, 8 * MIB);
        // vendor shrank, but the sectors it gave up are still the running slot's: its COW
        // does not take them, and what does not fit is left for a COW file.
        let vendor = &t.snapshots[1];
        assert!(vendor.cow_file_size > 0);
        // The split: what is free, in whole logical blocks, then the rest in whole sectors.
        assert_eq!(vendor.cow_partition_size % 4096, 0);
        assert_eq!(vendor.cow_file_size % SECTOR_SIZE, 0);
        assert_eq!(vendor.cow_partition_size + vendor.cow_file_size, 100 * MIB);
        let sector = |e: &crate::lp::Extent| match e.target {
            ExtentTarget::Linear {
                physical_sector, ..
            } => (physical_sector, physical_sector + e.num_sectors),
            ExtentTarget::Zero => (0, 0),
        };
        let vendor_a: Vec<_> = source
            .extents_of(source.partition("vendor_a").unwrap())
            .iter()
            .map(sector)
            .collect();
        let cow_v = m.partition("vendor_b-cow").unwrap();
        for e in m.extents_of(cow_v) {
            let (s, end) = sector(e);
            assert!(vendor_a.iter().all(|(a, b)| end <= *a || s >= *b));
        }
        // After the merge: no cow group, no UPDATED.
        let done = without_snapshots(m).unwrap();
        assert!(done.partition("system_b-cow").is_none());
        assert!(done.groups().iter().all(|g| g.name != COW_GROUP));
        assert_eq!(
            done.partition("system_b").unwrap().attributes,
            ATTR_READONLY
        );
    }
}
