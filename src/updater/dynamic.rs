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
//! Virtual A/B: abupdate makes no snapshots. A `snapshot_enabled` payload on a Virtual A/B
//! device takes the path update_engine takes for a payload with snapshots disabled ("Using
//! regular A/B on Virtual A/B"): plain extents of free space in `super`, with the header
//! downgraded to v10.0 as `SetMetadataHeaderV0` does; it is logged.

use std::path::Path;

use super::ota_state;
use crate::device::Device;
use crate::error::Result;
use crate::lp;
use crate::payload::Manifest;

/// The target slot's metadata for `manifest`, or `None` when the device has no `super` or
/// the payload is not for dynamic partitions (update_engine's `is_target_dynamic`: the
/// manifest has groups, or is a partial update).
pub fn plan(
    device: &Device,
    manifest: &Manifest,
    ota_state: &Path,
) -> Result<Option<lp::Metadata>> {
    if !device.has_super() {
        return Ok(None);
    }
    let Some(dynamic) = &manifest.dynamic else {
        if manifest.partial_update {
            // A partial payload without groups changes no logical partition: the target
            // slot keeps the metadata it has.
            log::info!("partial update without dynamic_partition_metadata: super left as it is");
        }
        return Ok(None);
    };
    ota_state::check(ota_state)?;
    let (_, source) = device.super_metadata(device.current_slot())?;
    let virtual_ab =
        source.header_flags() & lp::HEADER_FLAG_VIRTUAL_AB_DEVICE != 0 || ota_state.exists();
    if dynamic.snapshot_enabled && virtual_ab {
        log::info!(
            "payload has snapshot_enabled on a Virtual A/B device: abupdate makes no snapshots \
             and takes the non-snapshot path (the target slot's own extents in super)"
        );
    }
    let groups: Vec<lp::DynamicGroup> = dynamic
        .groups
        .iter()
        .map(|g| lp::DynamicGroup {
            name: g.name.clone(),
            size: g.size,
            partitions: g.partitions.clone(),
        })
        .collect();
    let sizes: Vec<(String, u64)> = manifest
        .partitions
        .iter()
        .filter(|p| dynamic.group_of(&p.name).is_some())
        .map(|p| (p.name.clone(), p.new_info.size))
        .collect();
    let target_suffix = device.target_slot().suffix();
    let target = lp::prepare_target_on(&source, target_suffix, &groups, &sizes, virtual_ab)?;
    Ok(Some(target))
}
