//! Virtual A/B snapshot updates, as update_engine and libsnapshot make them: the path chosen,
//! the target slot's metadata and libsnapshot's state written, and after the reboot the merge
//! (or, when the old slot was booted again, the cancel).
//!
//! The path: a payload whose `dynamic_partition_metadata` has `snapshot_enabled`,
//! `vabc_enabled` and `cow_version` 2 (or 1, written as 2) or 3, on a Virtual A/B device
//! ([`dynamic::is_virtual_ab`]). Anything else (a non-snapshot payload, one without a
//! `cow_version`, legacy dm-snapshot) keeps the dynamic-partitions path; so does a payload with
//! postinstall programs where the snapshots' views cannot be mounted for them (Android, or no
//! nbd driver: [`crate::device::snapshot_mount`]). The target metadata
//! ([`lp::prepare_snapshot_target`]) takes the
//! running slot's partitions over in place, marked UPDATED, and carves a `<name>_<slot>-cow`
//! partition per snapshot from free space; each COW is written into that partition
//! ([`SnapshotPartitions`] over [`CowDevices`]). What does not fit in `super`
//! (`SnapshotStatus.cow_file_size`, split as libsnapshot's `PartitionCowCreator` does) goes
//! into an image `<name>_<slot>-cow-img` on `/data` ([`CowImages`]: libfiemap's images, made
//! by our [`ImageDir`] or, on Android, by gsid), made before the target metadata is
//! written; the COW device is the `-cow` partition followed by the image
//! ([`Device::open_cow`]). When `/data` has not the room either (or there is no `/data`: a
//! host device directory without `data/`; or gsid answers NO_SPACE), the update is refused
//! with 37 before the target metadata is written. The images and their metadata go with the merge's or cancel's cleanup.
//!
//! The state follows libsnapshot ([`OtaDir`]): Initiated with the snapshots' statuses before
//! the first write, then `snapshot-boot` and Unverified (misc: SNAPSHOTTED) once the update is
//! applied, Merging (misc: MERGING) while merging, None once the COW partitions are gone from
//! the running slot's metadata.

use std::sync::Arc;

use super::dynamic;
use super::ota_state::UpdateState;
use super::snapshot_state::{CowSettings, OtaDir, SnapshotState, UpdateOrigin};
use super::snapuserd_merge;
use crate::boot_control::vab_message::{self, MergeStatus};
use crate::cow::{Compression, CowOptions};
use crate::device::cow_image::{self, ImageDir};
use crate::device::image_store::CowImages;
use crate::device::snapshot::{CowDevices, DeviceCow, SnapshotPartitions};
use crate::device::{snapshot_merge, Device};
use crate::engine::SlotPartitions;
use crate::error::Result;
use crate::lp;
use crate::payload::Manifest;
use crate::slot::BootControl;

/// What a snapshot update writes: the target metadata, its snapshots, the COW settings.
#[derive(Clone, Debug)]
pub struct SnapshotPlan {
    /// The target slot's metadata and the snapshots' sizes.
    pub target: lp::SnapshotTarget,
    /// How the COWs are written.
    pub options: CowOptions,
    /// What the snapshots' statuses record, by snapshot name.
    pub settings: Vec<(String, CowSettings)>,
}

/// Whether `manifest` asks for compressed snapshots this updater writes (COW v2 or v3). A payload
/// with postinstall programs takes them only when the snapshots' views can be mounted for the
/// programs (`views`, asked only then: [`crate::device::snapshot_mount::available`] or
/// [`crate::device::snapshot_user::available`]); otherwise it keeps the dynamic-partitions
/// path, as postinstall would mount the target partitions through their extents, which hold
/// the snapshots' base until the merge.
pub fn wants_snapshots(manifest: &Manifest, views: &dyn Fn() -> bool) -> bool {
    let asked = manifest
        .dynamic
        .as_ref()
        .is_some_and(|d| d.snapshot_enabled && d.vabc.enabled && cow_version(d).is_some());
    if asked && manifest.partitions.iter().any(|p| p.postinstall.is_some()) && !views() {
        log::info!(
            "compressed snapshots asked for, but the payload has postinstall programs and the \
             snapshots' views cannot be mounted here (neither nbd nor snapuserd's dm-user): \
             taking the dynamic-partitions path"
        );
        return false;
    }
    asked
}

/// The COW version the payload asks for, if this updater writes it: 2 (Android 13 and 14,
/// and 1, which libsnapshot writes as 2) or 3. libsnapshot's `CreateUpdateSnapshots`
/// refuses a compressed update whose `cow_version` is outside 1..=3, an unset one included:
/// no default is taken here either.
fn cow_version(d: &crate::payload::manifest::DynamicPartitions) -> Option<u16> {
    match d.vabc.cow_version? {
        1 | 2 => Some(2),
        3 => Some(3),
        _ => None,
    }
}

/// The snapshot plan for `manifest`, or `None` when it takes another path. Refuses with 39
/// while another update's snapshots or merge are pending, and with 37 when the COWs fit
/// neither in `super` nor, for what overflows it, on `/data`. As libsnapshot's `BeginUpdate` (`TryCancelUpdate`), an Initiated update (its
/// writing never finished) is started over, and so is an Unverified one made on this slot
/// and not switched to (`switched`: the target slot is active), which a kill between its
/// last state write and the slot switch leaves; one switched to waits for its reboot.
/// `views`: whether postinstall can mount the snapshots' views ([`wants_snapshots`]).
pub fn plan(
    device: &Device,
    manifest: &Manifest,
    ota: &OtaDir,
    virtual_ab_property: bool,
    switched: bool,
    views: &dyn Fn() -> bool,
) -> Result<Option<SnapshotPlan>> {
    if !device.has_super() || !wants_snapshots(manifest, views) {
        return Ok(None);
    }
    let (_, source) = device.super_metadata(device.current_slot())?;
    if !dynamic::is_virtual_ab(&source, &ota.state_path(), virtual_ab_property) {
        return Ok(None);
    }
    let state = ota.state()?;
    let made_here = ota.boot_indicator()?.as_deref() == Some(device.current_slot().suffix());
    let restartable = |s: &UpdateState| {
        *s == UpdateState::Initiated || (*s == UpdateState::Unverified && made_here && !switched)
    };
    if let Some(s) = state.filter(|s| s.is_pending() && !restartable(s)) {
        crate::bail!(
            MergePending,
            "{} says a Virtual A/B snapshot update is {s:?}: it must finish (merge) before \
             another update",
            ota.state_path().display()
        );
    }
    let Some(d) = &manifest.dynamic else {
        return Ok(None);
    };
    let compression_name = d.vabc.compression_param.as_deref().unwrap_or("gz");
    // libsnapshot's parameter may carry a level ("lz4,3"); the algorithm is what counts.
    let algorithm = compression_name.split(',').next().unwrap_or("gz");
    let Some(compression) = Compression::from_name(algorithm) else {
        crate::bail!(
            Unsupported,
            "the payload asks for COW compression {compression_name:?}"
        );
    };
    let factor = d.vabc.compression_factor.unwrap_or(4096);
    let Some(version) = cow_version(d) else {
        return Ok(None);
    };
    let options = CowOptions {
        version,
        compression,
        compression_factor: u32::try_from(factor)
            .map_err(|_| crate::err!(MalformedPayload, "compression factor {factor}"))?,
        ..CowOptions::default()
    };
    let groups = dynamic::lp_groups(&d.groups);
    let in_group = |n: &str| d.groups.iter().any(|g| g.partitions.iter().any(|p| p == n));
    let mut updates = Vec::new();
    let mut settings = Vec::new();
    let target_suffix = device.target_slot().suffix();
    // The engine labels each COW at every checkpoint (at most one per operation) and at the
    // end.
    let labels = manifest
        .partitions
        .iter()
        .map(|p| p.operations.len() as u64)
        .sum::<u64>()
        .saturating_add(2);
    for p in manifest.partitions.iter().filter(|p| in_group(&p.name)) {
        let fallback =
            crate::device::snapshot::worst_case_cow_size(p, options.block_size, version, labels);
        updates.push(lp::SnapshotUpdate {
            name: p.name.clone(),
            size: p.new_info.size,
            cow_size: lp::cow_size(p.cow.estimate_cow_size, fallback),
        });
        settings.push((
            format!("{}{target_suffix}", p.name),
            CowSettings {
                compression: algorithm.to_owned(),
                compression_factor: factor,
                estimated_cow_size: p.cow.estimate_cow_size.unwrap_or(0),
                estimated_ops: p.cow.estimate_op_count_max.unwrap_or(0),
                // The running build's, set when the update begins.
                read_ahead_size: 0,
            },
        ));
    }
    let target = lp::prepare_snapshot_target(
        &source,
        device.current_slot().suffix(),
        target_suffix,
        &groups,
        &updates,
        manifest.partial_update,
    )?;
    check_image_room(device, &target.snapshots)?;
    Ok(Some(SnapshotPlan {
        target,
        options,
        settings,
    }))
}

/// Whether `/data` has room for the COW images of `snapshots` (images an earlier run of the
/// same update made count as room): 37 when it has not, or when there is no `/data`. As
/// libsnapshot's `CreateUpdateSnapshots` reports it, the message says how much the images
/// need (`Return::NoSpace` of the sum of `cow_file_size`).
fn check_image_room(device: &Device, snapshots: &[lp::SnapshotSpace]) -> Result<()> {
    let overflow: Vec<_> = snapshots.iter().filter(|s| s.cow_file_size > 0).collect();
    if overflow.is_empty() {
        return Ok(());
    }
    let needed = overflow
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(s.cow_file_size));
    let names = overflow
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if device.image_service().is_some() {
        // gsid has no call for the room on /data: its createBackingImage answers NO_SPACE
        // (37) before the target metadata is written, as libsnapshot's CreateCowImage learns.
        log::info!(
            "Virtual A/B: {needed} bytes of COW for {names} go into images the image service \
             makes on the data partition"
        );
        return Ok(());
    }
    // Only gsid may reach /data/gsi on Android (sepolicy's gsid.te neverallows): without its
    // IImageService (the `gsid` feature) there is no way to make the images.
    if cfg!(target_os = "android") {
        crate::bail!(
            SuperNoSpace,
            "the COWs of {names} need {needed} bytes more than super has free, and COW images \
             on /data are gsid's to make on Android, which this build does not ask"
        );
    }
    let images = ImageDir::for_device(device);
    let mut made = 0u64;
    for s in &overflow {
        if images
            .existing(&cow_image::image_name(&s.name), s.cow_file_size)?
            .is_some()
        {
            made = made.saturating_add(s.cow_file_size);
        }
    }
    match images.available()? {
        None => crate::bail!(
            SuperNoSpace,
            "the COWs of {names} need {needed} bytes more than super has free, and there is \
             no data partition for COW images"
        ),
        // Each image is rounded up to its file system's block: at most 64 KiB each.
        Some(free)
            if free.saturating_add(made) < needed.saturating_add(65536 * overflow.len() as u64) =>
        {
            crate::bail!(
                SuperNoSpace,
                "the COWs of {names} need {needed} bytes more than super has free, and the data \
                 partition has only {free} bytes free for COW images"
            )
        }
        Some(_) => {
            log::info!(
                "Virtual A/B: {needed} bytes of COW for {names} go into images on the data \
                 partition"
            );
            Ok(())
        }
    }
}

/// The snapshots the engine writes for `plan`: their COWs in the `-cow` partitions of the
/// planned metadata (followed by their images on `/data` when they overflow `super`), their
/// bases the running slot's partitions of `plain`. The payload's other partitions (physical
/// ones such as `vbmeta` and `boot`) are written to `plain` in place.
pub fn snapshot_partitions<'p>(
    plain: &'p dyn SlotPartitions,
    device: &Device,
    manifest: &Manifest,
    plan: &SnapshotPlan,
) -> Result<SnapshotPartitions<'p>> {
    let suffix = device.target_slot().suffix();
    let mut snapshotted = manifest.clone();
    snapshotted.partitions.retain(|p| {
        let name = format!("{}{suffix}", p.name);
        plan.target.snapshots.iter().any(|s| s.name == name)
    });
    let device = device.clone();
    let metadata = plan.target.metadata.clone();
    let spaces = plan.target.snapshots.clone();
    let images = CowImages::for_device(&device);
    let files = CowDevices(Box::new(move |snapshot: &str| {
        match spaces.iter().find(|s| s.name == snapshot) {
            Some(space) => device.open_cow(&metadata, space, &images),
            None => device.open_logical(&metadata, &lp::cow_name(snapshot)),
        }
    }));
    SnapshotPartitions::with_files(plain, Arc::new(files), plan.options.clone(), &snapshotted)
}

/// Where misc is, if the device has one.
fn misc_path(device: &Device) -> Option<std::path::PathBuf> {
    let path = match device.layout() {
        crate::device::Layout::HostDir(dir) => dir.join(crate::boot_control::misc::HOST_MISC_IMAGE),
        crate::device::Layout::ByName(dir) => dir.join("misc"),
    };
    path.exists().then_some(path)
}

fn set_merge_status(device: &Device, status: MergeStatus) -> Result<()> {
    match misc_path(device) {
        Some(path) => vab_message::set_merge_status(&path, status, device.current_slot()),
        None => Ok(()),
    }
}

/// Before the first write (and again at every resume): the state Initiated with what
/// `origin` says of the running build, the snapshots' statuses, the COW images on `/data` (kept when a killed run made them; others, an older
/// update's, removed as libsnapshot's `BeginUpdate` purges them), then the target metadata.
/// Whether the metadata had to be written.
pub fn begin(
    device: &Device,
    ota: &OtaDir,
    plan: &SnapshotPlan,
    origin: &UpdateOrigin,
) -> Result<bool> {
    ota.write_initiated(origin)?;
    set_merge_status(device, MergeStatus::None)?;
    for space in &plan.target.snapshots {
        let settings = plan
            .settings
            .iter()
            .find(|(n, _)| *n == space.name)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let settings = CowSettings {
            read_ahead_size: origin.read_ahead_size,
            ..settings
        };
        ota.write_snapshot(space, &settings, SnapshotState::Created)?;
    }
    make_images(device, &plan.target)?;
    device.write_target_metadata(&plan.target.metadata)
}

/// The COW images of `target`'s snapshots that overflow `super`, made (or kept, when a killed
/// run made them with the same size); recorded images no snapshot of the plan has removed
/// first. A COW whose image is new starts over: the head of its `-cow` partition is zeroed,
/// so that a COW header an earlier run left there (whose ops went on into an image that is
/// gone) is not resumed from (libsnapshot writes an empty COW into each new COW device).
fn make_images(device: &Device, target: &lp::SnapshotTarget) -> Result<()> {
    let images = CowImages::for_device(device);
    let snapshots = &target.snapshots;
    let wanted = |name: &str| {
        snapshots.iter().any(|s| {
            s.cow_file_size > 0
                && cow_image::image_name(&s.name) == name
                && images.existing(name, s.cow_file_size).unwrap_or(false)
        })
    };
    let names = images.names()?;
    if names.iter().any(|n| !wanted(n)) {
        log::info!("removing the COW images of an earlier update");
        images.remove_all()?;
    }
    for s in snapshots.iter().filter(|s| s.cow_file_size > 0) {
        let image = cow_image::image_name(&s.name);
        if images.existing(&image, s.cow_file_size)? {
            continue;
        }
        images.create(&image, s.cow_file_size)?;
        if s.cow_partition_size > 0 {
            let cow = device.open_logical(&target.metadata, &format!("{}-cow", s.name))?;
            let head = vec![0u8; cow.size().min(4096) as usize];
            cow.write_at(&head, 0)
                .and_then(|()| cow.sync())
                .map_err(|e| crate::error::Error::io(format!("clearing {}-cow", s.name), e))?;
        }
    }
    Ok(())
}

/// The update is applied (libsnapshot's `FinishedSnapshotWrites`): `snapshot-boot` names the
/// source slot, misc says SNAPSHOTTED, the state is Unverified.
pub fn finished_writes(device: &Device, ota: &OtaDir) -> Result<()> {
    ota.write_boot_indicator(device.current_slot().suffix())?;
    set_merge_status(device, MergeStatus::Snapshotted)?;
    ota.write_state(UpdateState::Unverified)
}

/// What [`finish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// No snapshot update to finish (or it waits for its reboot).
    Nothing,
    /// The snapshots were merged into the running slot.
    Merged,
    /// The old slot was booted again: the update was cancelled.
    Cancelled,
}

/// After a boot whose slot is marked successful: merges a snapshot update booted into, or
/// cancels one whose old slot runs again. The merge is snapuserd's when the update uses
/// userspace snapshots and `snapuserd`'s socket is there ([`snapuserd_merge`]), else our own.
/// `progress` hears the merge's progress, 0 to 1.
pub fn finish(
    device: &Device,
    boot: &mut dyn BootControl,
    ota: &OtaDir,
    snapuserd: Option<&crate::snapuserd::Config>,
    progress: &mut dyn FnMut(f32),
) -> Result<Finished> {
    let state = ota.state()?;
    let live = matches!(
        state,
        Some(
            UpdateState::Unverified
                | UpdateState::Merging
                | UpdateState::MergeNeedsReboot
                | UpdateState::MergeFailed
                | UpdateState::MergeCompleted
        )
    );
    if !live || !device.has_super() {
        return Ok(Finished::Nothing);
    }
    let current = device.current_slot();
    let booted_source = ota.boot_indicator()?.as_deref() == Some(current.suffix());
    if booted_source {
        if state != Some(UpdateState::Unverified) {
            // A merge began in the new slot: the old slot's partitions are being overwritten
            // and it should not have booted. Nothing here can repair that; leave the state.
            log::warn!("slot {current} runs while its snapshot update is {state:?}");
            return Ok(Finished::Nothing);
        }
        if boot.active_slot()? != current {
            // Applied, waiting for the reboot into it.
            return Ok(Finished::Nothing);
        }
        cancel(device, boot, ota)?;
        return Ok(Finished::Cancelled);
    }
    if state == Some(UpdateState::Unverified) && !boot.is_successful(current)? {
        // The merge starts only once the new slot proved it boots (a merge under way goes on).
        log::info!("slot {current} is not marked successful yet: no merge");
        return Ok(Finished::Nothing);
    }
    merge(device, boot, ota, snapuserd, progress)?;
    Ok(Finished::Merged)
}

/// Cancels a snapshot update that is being written or waits for its reboot, from the slot it
/// was made on (libsnapshot's `CancelUpdate`). Whether there was one.
pub fn cancel_unbooted(device: &Device, boot: &mut dyn BootControl, ota: &OtaDir) -> Result<bool> {
    let state = ota.state()?;
    if !matches!(
        state,
        Some(UpdateState::Initiated | UpdateState::Unverified)
    ) || !device.has_super()
    {
        return Ok(false);
    }
    let source = ota.boot_indicator()?;
    if source.is_some_and(|s| s != device.current_slot().suffix()) {
        // Booted into the update: only its merge finishes it.
        return Ok(false);
    }
    cancel(device, boot, ota)?;
    Ok(true)
}

/// The old slot runs again: the snapshots and their COW partitions go, the target slot is
/// unbootable; no base partition is written.
fn cancel(device: &Device, boot: &mut dyn BootControl, ota: &OtaDir) -> Result<()> {
    let target = device.target_slot();
    log::info!("the snapshot update's slot {target} was not booted: cancelling it");
    boot.set_unbootable(target)?;
    let (_, metadata) = device.super_metadata(target)?;
    device.write_slot_metadata(target, &lp::without_snapshots(&metadata)?)?;
    CowImages::for_device(device).remove_all()?;
    ota.remove_all()?;
    set_merge_status(device, MergeStatus::None)
}

/// The running slot's snapshots merged into their bases (by snapuserd, or by our own merge),
/// then the COW partitions and the state removed.
fn merge(
    device: &Device,
    boot: &mut dyn BootControl,
    ota: &OtaDir,
    snapuserd: Option<&crate::snapuserd::Config>,
    progress: &mut dyn FnMut(f32),
) -> Result<()> {
    let current = device.current_slot();
    // The old slot's partitions share the bases being overwritten: it cannot boot any more.
    set_merge_status(device, MergeStatus::Merging)?;
    let other = current.other();
    if boot.is_bootable(other)? {
        boot.set_unbootable(other)?;
    }
    let (_, metadata) = device.super_metadata(current)?;
    let daemon = match snapuserd {
        Some(config) if snapuserd_merge::wanted(ota, config)? => {
            let by_name = matches!(device.layout(), crate::device::Layout::ByName(_));
            // On a by-name device the running partitions are snapuserd's dm-user devices:
            // each merged snapshot's is collapsed to dm-linear on its base.
            let collapse = by_name.then_some(snapuserd_merge::Collapse {
                device,
                metadata: &metadata,
            });
            let merged = snapuserd_merge::merge(ota, config, collapse, progress)?;
            if merged.daemon.is_some() && by_name && !merged.collapsed {
                // A device not collapsed may still be the daemon's dm-user device over its
                // COW: the COWs stay in use until the reboot, which maps the merged
                // snapshots plain. The cleanup runs then (libsnapshot's MergeNeedsReboot).
                ota.write_state(UpdateState::MergeNeedsReboot)?;
                progress(1.0);
                log::info!("snapshots merged by snapuserd; the cleanup waits for the reboot");
                return Ok(());
            }
            merged.daemon
        }
        _ => {
            own_merge(device, ota, &metadata, progress)?;
            // The mappings the merge wrote through go before their COW partitions do.
            device.unmap_slot(&metadata, current)?;
            None
        }
    };
    ota.write_state(UpdateState::MergeCompleted)?;
    device.write_slot_metadata(current, &lp::without_snapshots(&metadata)?)?;
    CowImages::for_device(device).remove_all()?;
    ota.remove_all()?;
    set_merge_status(device, MergeStatus::None)?;
    progress(1.0);
    if let Some(client) = daemon {
        snapuserd_merge::detach(client);
    }
    log::info!("snapshot merge complete");
    Ok(())
}

/// Our own merge of the running slot's snapshots, each resumable from its own checkpoints.
fn own_merge(
    device: &Device,
    ota: &OtaDir,
    metadata: &lp::Metadata,
    progress: &mut dyn FnMut(f32),
) -> Result<()> {
    // Made first: a merge past Unverified without it is snapuserd's.
    crate::state_file::create_dir(&ota.own_merge_dir())?;
    ota.write_state(UpdateState::Merging)?;
    let snapshots = ota.snapshots()?;
    for space in &snapshots {
        ota.set_snapshot_state(&space.name, SnapshotState::Merging)?;
    }
    // Each snapshot an equal share of the progress.
    let share = 1.0 / snapshots.len().max(1) as f32;
    let images = CowImages::for_device(device);
    for (i, space) in snapshots.iter().enumerate() {
        let cow_name = lp::cow_name(&space.name);
        let image = cow_image::image_name(&space.name);
        let cleaned = if space.cow_partition_size > 0 {
            metadata.partition(&cow_name).is_none()
        } else {
            !images.existing(&image, space.cow_file_size)?
        };
        if cleaned {
            // Merged, and its COW already removed by an earlier run.
            continue;
        }
        let cow = DeviceCow(device.open_cow(metadata, space, &images)?);
        let base = device.open_logical(metadata, &space.name)?;
        let state = ota.merge_state_path(&space.name);
        log::info!("merging the snapshot {}", space.name);
        snapshot_merge::merge(&cow, base.as_ref(), &state, &mut |done, all| {
            log::debug!("merging {}: {done}/{all} ops", space.name);
            let part = if all == 0 {
                1.0
            } else {
                done as f32 / all as f32
            };
            progress(share * (i as f32 + part));
        })?;
        ota.set_snapshot_state(&space.name, SnapshotState::MergeCompleted)?;
    }
    Ok(())
}
