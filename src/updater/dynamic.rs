//! Dynamic partitions: the target slot's part of `super`, prepared as update_engine's
//! non-snapshot path does (`DynamicPartitionControlAndroid::PrepareDynamicPartitionsForUpdate`
//! and `UpdatePartitionMetadata`).
//!
//! [`plan`] computes, without writing anything, the target slot's new metadata from the
//! *source* slot's metadata and the manifest's `dynamic_partition_metadata`
//! ([`crate::lp::prepare_target`]); a layout that does not fit is refused here with 37, and
//! a Virtual A/B snapshot update or merge in progress with 39. The updater writes the plan into
//! the target metadata slot after the target slot is marked unbootable and before its first
//! partition write; the plan depends only on the source metadata and the payload, so a
//! restarted or resumed update computes the same bytes and finds them already written.
//!
//! Virtual A/B: a payload with compressed snapshots (COW v3) takes the snapshot path
//! ([`super::virtual_ab`]). Any other `snapshot_enabled` payload on a Virtual A/B device takes
//! the path update_engine takes for a payload with snapshots disabled ("Using regular A/B on
//! Virtual A/B"): plain extents of free space in `super`, with the
//! header downgraded to v10.0 as `SetMetadataHeaderV0` does; it is logged.

use std::path::Path;

use super::ota_state;
use crate::device::Device;
use crate::engine::SlotPartitions;
use crate::error::{Error, Result};
use crate::lp;
use crate::payload::Manifest;

/// The target slot's metadata for `manifest`, or `None` when the device has no `super` or
/// the payload is not for dynamic partitions (update_engine's `is_target_dynamic`: the
/// manifest has groups, or is a partial update).
///
/// The device is Virtual A/B (groups may then fill all of super) when `virtual_ab_property`
/// (`ro.virtual_ab.enabled`) says so, the running slot's metadata has the
/// VIRTUAL_AB_DEVICE flag, or a libsnapshot state file exists.
pub fn plan(
    device: &Device,
    manifest: &Manifest,
    ota_state: &Path,
    virtual_ab_property: bool,
) -> Result<Option<lp::Metadata>> {
    if !device.has_super() {
        return Ok(None);
    }
    // A partial payload counts as dynamic even without groups, as update_engine assumes
    // (`SetTargetBuildVars`): its logical partitions are all carried over.
    if manifest.dynamic.is_none() && !manifest.partial_update {
        return Ok(None);
    }
    let (groups, snapshot_enabled) = match &manifest.dynamic {
        Some(d) => (d.groups.as_slice(), d.snapshot_enabled),
        None => (&[][..], false),
    };
    ota_state::check(ota_state)?;
    let (_, source) = device.super_metadata(device.current_slot())?;
    let virtual_ab = is_virtual_ab(&source, ota_state, virtual_ab_property);
    if snapshot_enabled && virtual_ab {
        log::info!(
            "payload has snapshot_enabled on a Virtual A/B device but no compressed snapshots \
             abupdate writes (vabc_enabled with COW version 1, 2 or 3): it takes \
             the non-snapshot path (the target slot's own extents in super)"
        );
    }
    let in_group = |name: &str| {
        groups
            .iter()
            .any(|g| g.partitions.iter().any(|p| p == name))
    };
    let groups = lp_groups(groups);
    let sizes: Vec<(String, u64)> = manifest
        .partitions
        .iter()
        .filter(|p| in_group(&p.name))
        .map(|p| (p.name.clone(), p.new_info.size))
        .collect();
    let target_suffix = device.target_slot().suffix();
    let target = lp::prepare_target_on(&source, target_suffix, &groups, &sizes, virtual_ab)?;
    if !manifest.partial_update {
        return Ok(Some(target));
    }
    let carried_by_payload = |name: &str| manifest.partitions.iter().any(|p| p.name == name);
    let (target, added) = lp::carry_over(
        &source,
        &target,
        device.current_slot().suffix(),
        target_suffix,
        &|name| !carried_by_payload(name),
    )?;
    if !added.is_empty() {
        log::info!(
            "partial update: {} not in the payload, copied from slot {} into slot {}'s own extents",
            added.join(", "),
            device.current_slot(),
            device.target_slot()
        );
    }
    Ok(Some(target))
}

/// The manifest's groups as liblp's planning takes them.
pub fn lp_groups(groups: &[crate::payload::manifest::DynamicGroup]) -> Vec<lp::DynamicGroup> {
    groups
        .iter()
        .map(|g| lp::DynamicGroup {
            name: g.name.clone(),
            size: g.size,
            partitions: g.partitions.clone(),
        })
        .collect()
}

/// Whether the device is Virtual A/B: `virtual_ab_property` (`ro.virtual_ab.enabled`), the
/// running slot's metadata with the VIRTUAL_AB_DEVICE flag, or a libsnapshot state file.
pub fn is_virtual_ab(source: &lp::Metadata, ota_state: &Path, virtual_ab_property: bool) -> bool {
    virtual_ab_property
        || source.header_flags() & lp::HEADER_FLAG_VIRTUAL_AB_DEVICE != 0
        || ota_state.exists()
}

/// The logical partitions of `plan` a partial payload does not carry: the updater copies
/// them from the source slot once the payload is applied.
pub fn carried(plan: &lp::Metadata, manifest: &Manifest, target_suffix: &str) -> Vec<String> {
    if !manifest.partial_update {
        return Vec::new();
    }
    plan.partitions()
        .iter()
        .filter_map(|p| p.name.strip_suffix(target_suffix))
        .filter(|name| !manifest.partitions.iter().any(|p| p.name == *name))
        .map(str::to_owned)
        .collect()
}

/// Copies each of `names` from the source slot into the target slot, then syncs it. Run
/// again after an interruption, it writes the same bytes: the source slot never changes.
pub fn copy_carried(partitions: &dyn SlotPartitions, names: &[String]) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    for name in names {
        let source = partitions.open_source(name)?;
        let target = partitions.open_target(name)?;
        if target.size() < source.size() {
            return Err(crate::err!(
                PartitionMissing,
                "{name}: the target's {} bytes cannot hold the source's {}",
                target.size(),
                source.size()
            ));
        }
        let mut buf = vec![0u8; CHUNK.min(source.size()) as usize];
        let mut offset = 0u64;
        while offset < source.size() {
            let len = CHUNK.min(source.size() - offset) as usize;
            source
                .read_at(&mut buf[..len], offset)
                .map_err(crate::engine::source_error)?;
            target
                .write_at(&buf[..len], offset)
                .map_err(|e| Error::io(format!("copying {name} into the target slot"), e))?;
            offset += len as u64;
        }
        target
            .sync()
            .map_err(|e| Error::io(format!("syncing {name}"), e))?;
    }
    Ok(())
}
