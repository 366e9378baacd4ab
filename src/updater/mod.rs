//! The updater: one device's partitions, boot control and state directory, put together around
//! the engine. This is what the CLI and the service call; it owns the slot transitions that
//! make an interrupted update safe:
//!
//! - before the first byte is written, by a fresh start and by every resume, the running slot is
//!   marked successful (if it is not) and the target slot unbootable;
//! - a resumed update whose checkpoint says it was done is verified again before the switch;
//! - a partial update's target slot gets the running slot's copy of every physical partition the
//!   payload does not carry ([`carry_over`]);
//! - only after every partition is written and verified (and the AVB checks pass) is the target
//!   slot set active, and only if `SWITCH_SLOT_ON_REBOOT` is not `0`;
//! - payloads older than the running build are refused before anything is written
//!   ([`downgrade`]), and a slot AVB would refuse is never switched to ([`avb_check`]);
//! - on a device with dynamic partitions, the target slot's metadata in `super` is planned
//!   before anything is written and written right after the target is marked unbootable
//!   ([`dynamic`]);
//! - on a Virtual A/B device, a payload with compressed snapshots is written as snapshots, and
//!   merged after the reboot into it once that slot is marked successful ([`virtual_ab`]).

pub mod avb_check;
pub mod carry_over;
pub mod downgrade;
pub mod dynamic;
pub mod ota_state;
pub mod slot_contents;
pub mod snapshot_state;
pub mod snapuserd_merge;
pub mod virtual_ab;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::boot_control::MiscBootControl;
use crate::checkpoint_store::FileCheckpointStore;
use crate::device::image_store::CowImages;
use crate::device::super_meta::ReadHalf;
use crate::device::{Device, Layout};
use crate::dm::{DmConfig, DmMapper};
use crate::engine::checkpoint::{CheckpointStore, Phase};
use crate::engine::metadata::Metadata;
use crate::engine::{
    self, ApplyOptions, ApplyReport, Observer, PayloadSource, SlotPartitions, UpdateHooks,
};
use crate::error::Result;
use crate::slot::BootControl;
use crate::slot::Slot;
use avb_check::AvbPolicy;
use downgrade::RunningBuild;

/// A device and everything abupdate keeps about it.
pub struct Updater {
    device: Device,
    partitions: Box<dyn SlotPartitions + Send>,
    boot: Mutex<Box<dyn BootControl + Send>>,
    store: Box<dyn CheckpointStore>,
    avb: AvbPolicy,
    running: RunningBuild,
    ota_state: PathBuf,
    postinstall: crate::postinstall::Config,
    postinstall_record: PathBuf,
    snapuserd: Option<crate::snapuserd::Config>,
}

/// What an [`Updater`] is made of. The engine reaches the partitions, the slot metadata and the
/// checkpoints only through `partitions`, `boot` and `store`, so a layer can sit under any of
/// them (the power-cut tests record every write and sync there); the AVB and downgrade checks
/// read `device` directly.
pub struct UpdaterParts {
    /// The partitions, slot metadata and layout of the device.
    pub device: Device,
    /// The engine's partitions: `device` itself, or a layer over it.
    pub partitions: Box<dyn SlotPartitions + Send>,
    /// The slot metadata: the `misc` record or the boot HAL.
    pub boot: Box<dyn BootControl + Send>,
    /// Where the engine keeps its resume checkpoints.
    pub store: Box<dyn CheckpointStore>,
    /// The AVB key and the persisted rollback floors new slots are checked against.
    pub avb: AvbPolicy,
    /// The running build, for downgrade checks.
    pub running: RunningBuild,
    /// libsnapshot's Virtual A/B state file (Android: `/metadata/ota/state`; a host device
    /// directory: `DIR/metadata/ota/state`). Only read.
    pub ota_state: PathBuf,
    /// Where postinstall mounts partitions and how long a program may run.
    pub postinstall: crate::postinstall::Config,
    /// The applied update's postinstall steps, kept once its postinstall phase passed, for
    /// [`Updater::trigger_postinstall`] (`STATE_DIR/postinstall`).
    pub postinstall_record: PathBuf,
    /// snapuserd, which merges an update made of userspace snapshots when its socket is there
    /// (Android: `/dev/socket/snapuserd`; a host device directory: `DIR/dev/socket/snapuserd`);
    /// `None`, or no socket, leaves the merge to our own (`virtual_ab`).
    pub snapuserd: Option<crate::snapuserd::Config>,
}

/// Android's Virtual A/B state file, read before dynamic partitions are prepared.
pub const OTA_STATE: &str = "/metadata/ota/state";

/// Host device directory settings beyond the directory itself.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// The running slot; default: what `misc.img` records.
    pub current: Option<Slot>,
    /// Checkpoints and the rollback store; default `DIR/state`.
    pub state_dir: Option<PathBuf>,
    /// The AVB key slots must be signed with; default `DIR/avb_key.pem` or
    /// `DIR/avb_key.avbpubkey` if present, else the running slot's vbmeta key.
    pub avb_key: Option<PathBuf>,
}

/// A device whose partitions are block devices named `<name>_a`, `<name>_b` in one directory
/// (Android: `/dev/block/by-name`), slot metadata in `misc` there.
#[derive(Clone, Debug)]
pub struct ByNameOptions {
    /// The running slot (Android: `ro.boot.slot_suffix`); default: what `misc` records.
    pub current: Option<Slot>,
    /// Checkpoints and the rollback store (Android: `/data/misc/abupdate`).
    pub state_dir: PathBuf,
    /// The AVB key slots must be signed with; default: the running slot's vbmeta key.
    pub avb_key: Option<PathBuf>,
    /// The running build's properties, for downgrade checks (Android: the system properties).
    pub running: RunningBuild,
    /// Where device-mapper is: target logical partitions in `super` are written through
    /// dm-linear mappings (as update_engine does). `None` writes their extents in `super`
    /// directly.
    pub device_mapper: Option<DmConfig>,
}

/// What became of an apply.
#[derive(Debug)]
pub struct Outcome {
    /// The engine's report.
    pub report: ApplyReport,
    /// The slot set active for the next boot, when the switch was made.
    pub switched_to: Option<Slot>,
}

/// One line for logs and the CLI: "N operations (resumed at operation K), B payload bytes
/// read; slot b is active for the next boot".
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let report = &self.report;
        write!(f, "{} operations", report.operations_applied)?;
        if let Some(op) = report.resumed_at {
            write!(f, " (resumed at operation {op})")?;
        }
        write!(f, ", {} payload bytes read; ", report.bytes_read)?;
        match self.switched_to {
            Some(slot) => write!(f, "slot {slot} is active for the next boot"),
            None => write!(f, "slot not switched (SWITCH_SLOT_ON_REBOOT=0)"),
        }
    }
}

impl Updater {
    /// An updater over `device` with its own adapters; see [`UpdaterParts::new`].
    pub fn new(
        device: Device,
        boot: Box<dyn BootControl + Send>,
        state_dir: PathBuf,
        avb_key: Option<crate::avb::AvbPublicKey>,
        running: RunningBuild,
    ) -> Result<Self> {
        UpdaterParts::new(device, boot, state_dir, avb_key, running).map(Self::from_parts)
    }

    /// A host device directory, as [`UpdaterParts::host`] describes it.
    pub fn open_host(dir: &Path, options: &HostOptions) -> Result<Self> {
        UpdaterParts::host(dir, options).map(Self::from_parts)
    }

    /// An updater over `parts`, as they are.
    pub fn from_parts(parts: UpdaterParts) -> Self {
        Updater {
            device: parts.device,
            partitions: parts.partitions,
            boot: Mutex::new(parts.boot),
            store: parts.store,
            avb: parts.avb,
            running: parts.running,
            ota_state: parts.ota_state,
            postinstall: parts.postinstall,
            postinstall_record: parts.postinstall_record,
            snapuserd: parts.snapuserd,
        }
    }

    /// Sets where snapuserd is (`None`: the merge is always our own).
    pub fn set_snapuserd(&mut self, config: Option<crate::snapuserd::Config>) {
        self.snapuserd = config;
    }

    /// Sets how postinstall runs (mount point, timeout).
    pub fn set_postinstall(&mut self, config: crate::postinstall::Config) {
        self.postinstall = config;
    }

    /// Block devices by name in `dir`, as on Android (see [`ByNameOptions`]).
    pub fn open_by_name(dir: &Path, options: ByNameOptions) -> Result<Self> {
        let boot = MiscBootControl::open(&dir.join("misc"), options.current)?;
        Self::open_by_name_with(dir, options, Box::new(boot))
    }

    /// As [`Updater::open_by_name`], with the slot metadata kept by `boot` instead of `misc`
    /// (a vendor's boot HAL). The running slot is `options.current`, else what `boot` says.
    pub fn open_by_name_with(
        dir: &Path,
        options: ByNameOptions,
        boot: Box<dyn BootControl + Send>,
    ) -> Result<Self> {
        let current = match options.current {
            Some(slot) => slot,
            None => boot.current_slot()?,
        };
        let avb_key = options
            .avb_key
            .as_deref()
            .map(AvbPolicy::load_key)
            .transpose()?;
        let mut device = Device::new(Layout::ByName(dir.to_owned()), current);
        if let Some(config) = options.device_mapper {
            let target = current.other().suffix();
            device = device.with_mapper(Arc::new(DmMapper::for_target(config, target)));
        }
        Self::new(device, boot, options.state_dir, avb_key, options.running)
    }

    /// The device the updater writes.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The resume checkpoint store.
    pub fn store(&self) -> &dyn CheckpointStore {
        self.store.as_ref()
    }

    /// Runs `f` with the boot control backend.
    pub fn with_boot<T>(&self, f: impl FnOnce(&mut dyn BootControl) -> Result<T>) -> Result<T> {
        let mut boot = self.boot.lock().unwrap_or_else(|e| e.into_inner());
        f(boot.as_mut())
    }

    /// Applies a payload into the target slot and, unless told not to, switches to it.
    pub fn apply(
        &self,
        source: &mut dyn PayloadSource,
        options: &ApplyOptions,
        observer: &dyn Observer,
    ) -> Result<Outcome> {
        let avb_required = self.avb.required(&self.device);
        if avb_required {
            self.avb.check_running(&self.device)?;
        }
        let parts = ApplyPartitions::new(self.partitions.as_ref());
        let hooks = Hooks {
            updater: self,
            parts: &parts,
        };
        let result = engine::apply(
            &parts,
            source,
            self.store.as_ref(),
            &hooks,
            options,
            observer,
        )
        .and_then(|report| {
            // A partial payload's logical partitions it does not carry, copied into the
            // target's own extents before the slot is checked and switched.
            if let Some(plan) = self.device.planned_target() {
                let suffix = self.device.target_slot().suffix();
                let carried = dynamic::carried(&plan, &report.metadata.manifest, suffix);
                dynamic::copy_carried(self.partitions.as_ref(), &carried)?;
            }
            Ok(report)
        });
        if let Some(plan) = self.device.planned_target() {
            // Mappings are for writing; the next boot maps the slot from its own metadata.
            let unmapped = self.device.unmap_target(&plan);
            if result.is_ok() {
                unmapped?;
            } else if let Err(e) = unmapped {
                log::warn!("unmapping the target partitions after a failure: {e}");
            }
        }
        let report = result?;
        let target = self.device.target_slot();
        let manifest = &report.metadata.manifest;
        if manifest.partial_update {
            let carried = manifest
                .partitions
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            // Physical partitions; the logical ones were copied into the target's extents
            // above, before the mappings went.
            carry_over::carry_over(&self.device, self.partitions.as_ref(), &carried, observer)?;
        }
        if avb_required {
            // Through the engine's partitions: a snapshot update's target partitions are its
            // snapshots, whose base extents still hold the running build.
            let read_target = |name: &str| -> Result<Box<dyn crate::engine::SourceRead>> {
                match parts.snapshots() {
                    Some(s) => Ok(Box::new(ReadHalf(s.open_target(name)?))),
                    None => self.device.read_only(name, target),
                }
            };
            self.avb
                .check_slot(&self.device, target, &read_target, observer)?;
        }
        let plan = parts.plan();
        if let Some(plan) = &plan {
            // The snapshots' COW partitions were mapped to be written: closed, then unmapped
            // (the next boot maps the slot from its metadata). Before postinstall, which
            // serves the snapshots' views from the COWs, as update_engine closes every COW
            // writer and unmaps before mapping the snapshots for it
            // (PostinstallRunnerAction::PerformAction).
            parts.close_snapshots();
            self.device.unmap_target(&plan.target.metadata)?;
        }
        // Only a slot whose postinstall programs passed is switched to. A failure leaves a
        // snapshot update Initiated (update_engine calls FinishUpdate only once they passed):
        // the next apply starts it over.
        let snapshots = plan.is_some();
        let postinstalled = self.postinstall_phase(
            manifest,
            options.properties.run_post_install,
            snapshots,
            observer,
        );
        if snapshots {
            self.unmap_cow_images();
        }
        postinstalled?;
        if snapshots {
            virtual_ab::finished_writes(&self.device, &self.ota_dir())?;
        }
        let switched_to = if options.properties.switch_slot_on_reboot {
            self.with_boot(|b| b.set_active(target))?;
            Some(target)
        } else {
            None
        };
        Ok(Outcome {
            report,
            switched_to,
        })
    }

    /// Whether a payload with this (verified) metadata could be applied now, without writing
    /// anything: its operations are supported, it is no downgrade, every target partition is
    /// large enough, a delta's base is the running slot's content, and on a device with AVB the
    /// running slot's vbmeta can be read (as [`Updater::apply`] requires).
    pub fn check_applicable(&self, metadata: &Metadata) -> Result<()> {
        metadata.manifest.check_supported()?;
        if self.avb_required() {
            self.avb.check_running(&self.device)?;
        }
        downgrade::check(metadata, &self.running)?;
        if let Some(plan) = virtual_ab::plan(
            &self.device,
            &metadata.manifest,
            &self.ota_dir(),
            self.running.virtual_ab,
            self.target_active()?,
            &|| self.snapshot_views(),
        )? {
            let device = self.device.detached_with_plan(Some(plan.target.metadata));
            return engine::check_device(&device, metadata, &engine::Quiet);
        }
        let plan = dynamic::plan(
            &self.device,
            &metadata.manifest,
            &self.ota_state,
            self.running.virtual_ab,
        )?;
        let device = self.device.detached_with_plan(plan);
        engine::check_device(&device, metadata, &engine::Quiet)
    }

    /// Forgets the last update, as update_engine's `resetStatus`: drops the checkpoint, and if
    /// the update was fully applied and made the target slot active, makes the running slot
    /// active again (the target slot keeps its content but will not boot next). A Virtual A/B
    /// snapshot update not yet booted into is cancelled.
    pub fn reset(&self) -> Result<()> {
        if self.update_pending()? {
            let current = self.device.current_slot();
            self.with_boot(|b| {
                if b.active_slot()? != current {
                    b.set_active(current)?;
                }
                Ok(())
            })?;
        }
        // A snapshot update not booted into goes with it (update_engine's `ResetUpdate`:
        // libsnapshot's `CancelUpdate`).
        let ota = self.ota_dir();
        if self.with_boot(|b| virtual_ab::cancel_unbooted(&self.device, b, &ota))? {
            log::info!("the snapshot update was cancelled");
        }
        self.store.clear()
    }

    /// Marks the running slot as booted successfully, then raises the stored rollback floors
    /// to its indexes: only a slot that proved it boots may advance them.
    pub fn mark_boot_successful(&self) -> Result<()> {
        self.with_boot(|b| b.mark_boot_successful())?;
        if self.avb_required() {
            self.avb.advance(&self.device)?;
        }
        Ok(())
    }

    /// Raises the stored rollback floors to the running slot's indexes if that slot is already
    /// marked successful, by whoever marked it: on Android, update_verifier through the boot
    /// HAL once it has read the verified partitions. The daemon calls this when it starts; a
    /// slot not yet marked is left alone. Whether the floors were raised.
    pub fn advance_floors_if_marked(&self) -> Result<bool> {
        if !self.avb_required() {
            return Ok(false);
        }
        let current = self.device.current_slot();
        if !self.with_boot(|b| b.is_successful(current))? {
            return Ok(false);
        }
        self.avb.advance(&self.device)?;
        Ok(true)
    }

    /// After the reboot into an updated slot that is now marked successful: merges a Virtual
    /// A/B snapshot update this slot booted into, or cancels one whose old slot runs again
    /// ([`virtual_ab::finish`]); refuses (39) while libsnapshot's state still says an update or
    /// merge is pending; raises the rollback floors to the running slot's indexes.
    pub fn finish_previous_update(&self) -> Result<()> {
        self.finish_previous_update_with(&mut |_| {})
    }

    /// [`Updater::finish_previous_update`], reporting the merge's progress (0 to 1).
    pub fn finish_previous_update_with(&self, progress: &mut dyn FnMut(f32)) -> Result<()> {
        let ota = self.ota_dir();
        let snapuserd = self.snapuserd.as_ref();
        let finished = self
            .with_boot(|b| virtual_ab::finish(&self.device, b, &ota, snapuserd, &mut *progress))?;
        if finished != virtual_ab::Finished::Nothing {
            log::info!("previous snapshot update: {finished:?}");
        }
        // A cancelled update's COWs are gone (its COW images removed, its -cow partitions
        // free): its checkpoint must not make the same payload resume past writes that no
        // longer exist.
        if finished == virtual_ab::Finished::Cancelled {
            self.store.clear()?;
        }
        ota_state::check(&self.ota_state)?;
        if self.advance_floors_if_marked()? {
            log::info!("rollback floors raised to the running slot's indexes");
        }
        Ok(())
    }

    /// Whether the target slot is the active one (an update into it switched to).
    fn target_active(&self) -> Result<bool> {
        let target = self.device.target_slot();
        self.with_boot(|b| Ok(b.active_slot()? == target))
    }

    /// libsnapshot's state directory (`/metadata/ota`; a host device directory's
    /// `DIR/metadata/ota`).
    pub fn ota_dir(&self) -> snapshot_state::OtaDir {
        snapshot_state::OtaDir::new(
            self.ota_state
                .parent()
                .unwrap_or_else(|| Path::new("/metadata/ota")),
        )
    }

    /// Whether the device uses AVB, so that its checks are made (see [`avb_check`]).
    pub fn avb_required(&self) -> bool {
        self.avb.required(&self.device)
    }

    /// The rollback floors an update is checked against now.
    pub fn rollback_floors(&self) -> Result<crate::avb::RollbackFloors> {
        let current = avb_check::load_slot(&self.device, self.device.current_slot(), false)?;
        self.avb.floors(&current)
    }

    /// The postinstall phase of an apply: the manifest's programs run on the new slot's
    /// partitions (see [`crate::postinstall`]). Once it passed, its steps are recorded for
    /// [`Updater::trigger_postinstall`]; a failed one leaves no record.
    fn postinstall_phase(
        &self,
        manifest: &crate::payload::Manifest,
        run_post_install: bool,
        snapshots: bool,
        observer: &dyn Observer,
    ) -> Result<()> {
        use crate::postinstall::plan;
        crate::state_file::remove(&self.postinstall_record)?;
        let steps = plan::plan(manifest, run_post_install);
        self.run_postinstall_steps(&steps, snapshots, observer)?;
        if !steps.is_empty() {
            crate::state_file::replace(&self.postinstall_record, plan::encode(&steps).as_bytes())?;
        }
        Ok(())
    }

    /// Runs `steps` on the target slot's partitions; `snapshots`: the update was written as
    /// Virtual A/B snapshots, whose views are mounted (the partitions' extents hold the
    /// running build until the merge).
    fn run_postinstall_steps(
        &self,
        steps: &[crate::postinstall::plan::Step],
        snapshots: bool,
        observer: &dyn Observer,
    ) -> Result<()> {
        use crate::device::snapshot_mount::SnapshotMount;
        use crate::device::snapshot_user::UserMount;
        use crate::postinstall::mount::Located;
        let target = self.device.target_slot();
        // The target slot's metadata and the snapshots' sizes, as the apply wrote them.
        let views = if snapshots && !steps.is_empty() {
            Some((
                self.device.super_metadata(target)?.1,
                self.ota_dir().snapshots()?,
            ))
        } else {
            None
        };
        // The running slot's metadata: where snapuserd's views read their sources.
        let running = match (&views, &self.postinstall.dm_user) {
            (Some(_), Some(_)) => Some(self.device.super_metadata(self.device.current_slot())?.1),
            _ => None,
        };
        let used_snapuserd = std::cell::Cell::new(false);
        let locate = |name: &str| -> Result<Located> {
            let snapshot = format!("{name}{}", target.suffix());
            let view = views.as_ref().and_then(|(metadata, spaces)| {
                Some((metadata, spaces.iter().find(|s| s.name == snapshot)?))
            });
            let Some((metadata, space)) = view else {
                return Ok(self.device.mount_source(name, target)?.into());
            };
            if let (Some(config), Some(running)) = (&self.postinstall.dm_user, &running) {
                used_snapuserd.set(true);
                let mount = UserMount::map(&self.device, metadata, running, space, name, config)?;
                return Ok(Located {
                    source: mount.source(),
                    keep: Some(Box::new(mount)),
                });
            }
            let Some(sys_block) = self.postinstall.nbd_sys.as_deref() else {
                crate::bail!(
                    PostinstallFailed,
                    "{snapshot} is a snapshot, whose view this device cannot serve (no nbd)"
                );
            };
            let mount = SnapshotMount::serve(&self.device, metadata, space, name, sys_block)?;
            Ok(Located {
                source: mount.source(),
                keep: Some(Box::new(mount)),
            })
        };
        // Slot numbers as update_engine passes them: 0 for _a, 1 for _b.
        let number = u32::from(target.index() == 1);
        let result = crate::postinstall::run(steps, number, &locate, &self.postinstall, observer);
        // Every view unmapped: snapuserd let go, as update_engine's UnmapAllPartitions does.
        if let (true, Some(config)) = (used_snapuserd.get(), &self.postinstall.dm_user) {
            crate::device::snapshot_user::detach(config);
        }
        // Partitions of several extents were mounted through a mapping of their own.
        for step in steps {
            if let Err(e) = self.device.unmap_mounted(&step.partition, target) {
                log::warn!("unmapping {} after postinstall: {e}", step.partition);
            }
        }
        result
    }

    /// Runs the postinstall program of `partition` again on the applied (not yet booted)
    /// update, as update_engine's `triggerPostinstall(partition)`: only after an apply whose
    /// postinstall phase passed (the program may be one `RUN_POST_INSTALL=0` skipped), never
    /// switching slots. Fails with 44 when there is no such update or the partition has no
    /// program, 44/45 when the program fails or times out (unless it is optional), 38 when
    /// cancelled. Call it from the thread that runs updates: it blocks until the program ends.
    pub fn trigger_postinstall(&self, partition: &str, observer: &dyn Observer) -> Result<()> {
        use crate::postinstall::plan;
        let record = match crate::state_file::read(&self.postinstall_record)? {
            Some(bytes) if self.update_pending()? => bytes,
            _ => crate::bail!(
                PostinstallFailed,
                "no applied update whose postinstall phase passed: apply one first"
            ),
        };
        let text = String::from_utf8(record)
            .map_err(|_| crate::err!(DeviceError, "the postinstall record is not text"))?;
        let step = plan::trigger(&plan::decode(&text)?, partition)?;
        // A snapshot update applied from this slot and not booted yet: its snapshots' views.
        let ota = self.ota_dir();
        let snapshots = ota.state()? == Some(ota_state::UpdateState::Unverified)
            && ota.boot_indicator()?.as_deref() == Some(self.device.current_slot().suffix());
        let result = self.run_postinstall_steps(&[step], snapshots, observer);
        if snapshots {
            self.unmap_cow_images();
        }
        result
    }

    /// Unmaps a snapshot update's COW images once postinstall is over, whatever its result,
    /// as update_engine's PostinstallRunnerAction does when it ends, after an apply or a
    /// trigger (~PostinstallRunnerAction: UnmapAllPartitions, libsnapshot's
    /// UnmapAllSnapshots). A failure is only logged, as there: the next boot's first-stage
    /// init maps the images itself.
    fn unmap_cow_images(&self) {
        if let Err(e) = CowImages::for_device(&self.device).unmap_all() {
            log::warn!("unmapping the COW images: {e}");
        }
    }

    /// Whether postinstall can mount a snapshot update's views here: served through nbd
    /// ([`crate::device::snapshot_mount`]) or, where configured, by snapuserd through dm-user
    /// ([`crate::device::snapshot_user`], which it may start). The path choice of a snapshot
    /// payload with postinstall programs, made before anything is written.
    fn snapshot_views(&self) -> bool {
        match &self.postinstall.dm_user {
            Some(config) => crate::device::snapshot_user::available(&self.device, Some(config)),
            None => crate::device::snapshot_mount::available(self.postinstall.nbd_sys.as_deref()),
        }
    }

    /// Whether an update was fully applied and awaits a reboot into its slot.
    pub fn update_pending(&self) -> Result<bool> {
        Ok(self.store.load()?.is_some_and(|cp| cp.phase == Phase::Done))
    }
}

impl UpdaterParts {
    /// The device's own adapters: its partitions, `boot`, checkpoints and the rollback store in
    /// `state_dir`.
    pub fn new(
        device: Device,
        boot: Box<dyn BootControl + Send>,
        state_dir: PathBuf,
        avb_key: Option<crate::avb::AvbPublicKey>,
        running: RunningBuild,
    ) -> Result<Self> {
        let store = FileCheckpointStore::new(&state_dir)?;
        let avb = AvbPolicy::new(avb_key, state_dir.join("rollback_index"));
        let (ota_state, snapuserd) = match device.layout() {
            Layout::HostDir(dir) => (
                dir.join("metadata/ota/state"),
                crate::snapuserd::Config::at(dir.join("dev/socket/snapuserd")),
            ),
            Layout::ByName(_) => (
                PathBuf::from(OTA_STATE),
                crate::snapuserd::Config::android(),
            ),
        };
        Ok(UpdaterParts {
            partitions: Box::new(device.clone()),
            device,
            boot,
            store: Box::new(store),
            avb,
            running,
            ota_state,
            postinstall: crate::postinstall::Config::default(),
            postinstall_record: state_dir.join("postinstall"),
            snapuserd: Some(snapuserd),
        })
    }

    /// A host device directory: partitions `DIR/<name>_<slot>.img`, slot metadata in
    /// `DIR/misc.img`, the running build's properties in `DIR/build.prop`.
    pub fn host(dir: &Path, options: &HostOptions) -> Result<Self> {
        let boot = MiscBootControl::open_device_dir(dir, options.current)?;
        let current = boot.current();
        let state = options
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.join("state"));
        let key_file = options.avb_key.clone().or_else(|| {
            ["avb_key.pem", "avb_key.avbpubkey"]
                .iter()
                .map(|n| dir.join(n))
                .find(|p| p.exists())
        });
        let avb_key = key_file.as_deref().map(AvbPolicy::load_key).transpose()?;
        let running = RunningBuild::load_host(dir)?;
        Self::new(
            Device::host(dir, current),
            Box::new(boot),
            state,
            avb_key,
            running,
        )
    }
}

/// The engine's partitions for one apply: the device's own until the payload's metadata
/// chose the snapshot path; then the target's writes go to snapshots.
struct ApplyPartitions<'p> {
    plain: &'p dyn SlotPartitions,
    snapshots: Mutex<Option<Arc<dyn SlotPartitions + Send + 'p>>>,
    plan: Mutex<Option<Arc<virtual_ab::SnapshotPlan>>>,
}

impl<'p> ApplyPartitions<'p> {
    fn new(plain: &'p dyn SlotPartitions) -> Self {
        ApplyPartitions {
            plain,
            snapshots: Mutex::new(None),
            plan: Mutex::new(None),
        }
    }

    /// Drops the snapshots, closing their COWs.
    fn close_snapshots(&self) {
        *self.snapshots.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn snapshots(&self) -> Option<Arc<dyn SlotPartitions + Send + 'p>> {
        self.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn plan(&self) -> Option<Arc<virtual_ab::SnapshotPlan>> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl SlotPartitions for ApplyPartitions<'_> {
    fn open_source(&self, name: &str) -> Result<Box<dyn crate::engine::SourceRead>> {
        self.plain.open_source(name)
    }
    fn open_target(&self, name: &str) -> Result<Box<dyn crate::engine::TargetWrite>> {
        match self.snapshots() {
            Some(s) => s.open_target(name),
            None => self.plain.open_target(name),
        }
    }
    fn target_slot_name(&self) -> String {
        self.plain.target_slot_name()
    }
}

struct Hooks<'a, 'p> {
    updater: &'a Updater,
    parts: &'a ApplyPartitions<'p>,
}

impl<'p> Hooks<'_, 'p> {
    /// The snapshot path, when the payload and the device take it: the target's writes go to
    /// snapshots from now on. Whether it was taken.
    fn choose_snapshots(&self, manifest: &crate::payload::Manifest) -> Result<bool> {
        let device = &self.updater.device;
        let plan = virtual_ab::plan(
            device,
            manifest,
            &self.updater.ota_dir(),
            self.updater.running.virtual_ab,
            self.updater.target_active()?,
            &|| self.updater.snapshot_views(),
        )?;
        let snapshots = match &plan {
            Some(p) => Some(Arc::new(virtual_ab::snapshot_partitions(
                self.parts.plain,
                device,
                manifest,
                p,
            )?) as Arc<dyn SlotPartitions + Send + 'p>),
            None => None,
        };
        let taken = plan.is_some();
        *self
            .parts
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = snapshots;
        *self.parts.plan.lock().unwrap_or_else(|e| e.into_inner()) = plan.map(Arc::new);
        if taken {
            device.set_planned_target(None);
            log::info!(
                "Virtual A/B: the payload is written as snapshots of slot {}'s partitions",
                device.current_slot()
            );
        }
        Ok(taken)
    }
}

impl UpdateHooks for Hooks<'_, '_> {
    /// Downgrade checks, then the target slot's dynamic partitions planned (nothing written):
    /// the engine's size checks and writes resolve the target's logical partitions through
    /// the plan.
    fn check_metadata(&self, metadata: &crate::engine::metadata::Metadata) -> Result<()> {
        downgrade::check(metadata, &self.updater.running)?;
        if self.choose_snapshots(&metadata.manifest)? {
            return Ok(());
        }
        let device = &self.updater.device;
        let plan = dynamic::plan(
            device,
            &metadata.manifest,
            &self.updater.ota_state,
            self.updater.running.virtual_ab,
        )?;
        device.set_planned_target(plan);
        Ok(())
    }

    /// The slot marks again (only what changed), then the target metadata: written before the
    /// first checkpoint, it is written again only if a copy no longer holds it (a damaged copy
    /// is repaired).
    fn before_resume(&self) -> Result<()> {
        self.before_first_write()
    }

    fn partition_written(&self, name: &str) -> Result<()> {
        if name == "vbmeta" && self.updater.avb_required() {
            self.updater
                .avb
                .check_top(&self.updater.device, self.updater.device.target_slot())?;
        }
        Ok(())
    }

    /// Marks the running slot successful, then the target unbootable, each durably. Once the
    /// target cannot boot, the running slot is the only one left; if it still depended on its
    /// tries (as after U-Boot replaced a torn record with its default), every reboot during the
    /// update would spend one, and enough power cuts would leave nothing bootable. update_engine
    /// marks the booted slot good first for the same reason (`UpdateBootFlagsAction`).
    ///
    /// Then, with the target unbootable, its metadata slot in `super` gets the planned layout:
    /// before that the target slot might still have booted from its old metadata.
    ///
    /// Called on every resume too (`before_resume`): a bootloader that found its record torn, or
    /// a reset, may have made the half-written target bootable again. Only what changes is
    /// written, so a resume that finds the record as the update left it writes nothing while the
    /// target is half-written (a torn write then could not make it bootable either).
    fn before_first_write(&self) -> Result<()> {
        let target = self.updater.device.target_slot();
        self.updater.with_boot(|b| {
            if !b.is_successful(b.current_slot()?)? {
                b.mark_boot_successful()?;
            }
            if b.is_bootable(target)? {
                b.set_unbootable(target)?;
            }
            Ok(())
        })?;
        self.write_planned_metadata()
    }
}

impl Hooks<'_, '_> {
    fn write_planned_metadata(&self) -> Result<()> {
        let device = &self.updater.device;
        if let Some(plan) = self.parts.plan() {
            let origin = self.updater.running.update_origin()?;
            if virtual_ab::begin(device, &self.updater.ota_dir(), &plan, &origin)? {
                log::info!(
                    "wrote slot {}'s snapshot metadata in super: {} snapshots",
                    device.target_slot(),
                    plan.target.snapshots.len()
                );
            }
            return Ok(());
        }
        if let Some(plan) = device.planned_target() {
            if device.write_target_metadata(&plan)? {
                log::info!(
                    "wrote slot {}'s metadata in super: {} partitions",
                    device.target_slot(),
                    plan.partitions().len()
                );
            }
        }
        Ok(())
    }
}
