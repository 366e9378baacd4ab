//! Android Verified Boot checks on a slot before abupdate switches to it.
//!
//! The bootloader will refuse a slot whose vbmeta is not signed by its trusted key, whose
//! rollback index is below the value in its tamper-evident storage, or whose partitions do not
//! match their hash descriptors; dm-verity fails reads of data that does not match its hash
//! tree. abupdate refuses such a slot first, so a device never switches to something that
//! cannot boot: 28 for a signature or chain key that does not verify (or a descriptor naming a
//! partition badly), 27 for a rollback index below the floor, 43 for contents that do not match
//! a hash or hashtree descriptor or a partition the vbmeta names that is missing or short
//! ([`super::slot_contents`]).
//!
//! A device uses AVB ([`AvbPolicy::required`]) when abupdate runs on Android with partitions
//! by name (every A/B device Android ships verifies boot), or, on a host device directory, when
//! `vbmeta_a.img` or `vbmeta_b.img` exists or an AVB key is configured. On such a device a
//! running slot whose vbmeta cannot be read refuses the update (28) before anything is written:
//! the key and rollback floors an update is checked against come from it.

use std::path::{Path, PathBuf};

use crate::avb::{self, AvbPublicKey, RollbackFloors, VbmetaImage};
use crate::device::{Device, Layout};
use crate::engine::{Observer, SourceRead};
use crate::error::{Error, Result};
use crate::rollback_store::{effective_floors, RollbackStore};
use crate::slot::Slot;
use crate::{bail, ErrorCode};

/// The top-level vbmeta partition, as libavb names it.
const VBMETA: &str = "vbmeta";

/// A slot's vbmeta images: the top level and every partition it chains to.
pub struct SlotVbmeta {
    /// The top-level `vbmeta`.
    pub top: VbmetaImage,
    /// Each chained partition's name and its vbmeta.
    pub chained: Vec<(String, VbmetaImage)>,
}

impl SlotVbmeta {
    /// Every image with the partition it was read from: `vbmeta` first, then the chained ones.
    pub fn images(&self) -> impl Iterator<Item = (&str, &VbmetaImage)> {
        std::iter::once((VBMETA, &self.top))
            .chain(self.chained.iter().map(|(n, i)| (n.as_str(), i)))
    }

    fn chained_refs(&self) -> Vec<(&str, &VbmetaImage)> {
        self.chained.iter().map(|(n, i)| (n.as_str(), i)).collect()
    }

    fn floors(&self) -> Result<RollbackFloors> {
        RollbackFloors::from_slot(&self.top, &self.chained_refs())
    }
}

/// The device's AVB policy: which key to expect and the persisted rollback floors.
pub struct AvbPolicy {
    configured_key: Option<AvbPublicKey>,
    store: RollbackStore,
}

impl AvbPolicy {
    /// Expects `configured_key` (`None`: the running slot's key), with the rollback store at
    /// `store_path`.
    pub fn new(configured_key: Option<AvbPublicKey>, store_path: PathBuf) -> Self {
        AvbPolicy {
            configured_key,
            store: RollbackStore::new(store_path),
        }
    }

    /// Reads a key file: AVB's own public key format (`avbtool extract_public_key`) or PEM.
    pub fn load_key(path: &Path) -> Result<AvbPublicKey> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
        if bytes.starts_with(b"-----BEGIN") {
            AvbPublicKey::from_pem(&bytes)
        } else {
            AvbPublicKey::from_avb_blob(&bytes)
        }
    }

    /// The persisted rollback floors.
    pub fn store(&self) -> &RollbackStore {
        &self.store
    }

    /// Whether the device uses AVB (see the module documentation). A vbmeta image whose
    /// presence cannot be established (a stat error other than "not found") counts as present:
    /// an unreadable vbmeta must refuse, not skip, the checks.
    pub fn required(&self, device: &Device) -> bool {
        if cfg!(target_os = "android") && matches!(device.layout(), Layout::ByName(_)) {
            return true;
        }
        self.configured_key.is_some()
            || [Slot::A, Slot::B].into_iter().any(|slot| {
                match std::fs::symlink_metadata(device.partition_path(VBMETA, slot)) {
                    Ok(_) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::NotFound,
                }
            })
    }

    /// Before anything is written on a device with AVB: the running slot's vbmeta must be
    /// readable, since the key and rollback floors of the update come from it. 28 otherwise.
    pub fn check_running(&self, device: &Device) -> Result<()> {
        let slot = device.current_slot();
        load(&|name| device.read_only(name, slot), VBMETA, slot)
            .map(|_| ())
            .map_err(|e| {
                crate::err!(
                AvbSignature,
                "the device uses AVB but the running slot's vbmeta cannot be read, so no update \
                 can be checked against its key and rollback indexes: {}",
                e.message
            )
            })
    }

    /// The early check, as soon as the new top-level vbmeta is written: its signature and its
    /// own rollback index (chained partitions may not be written yet).
    pub fn check_top(&self, device: &Device, target: Slot) -> Result<()> {
        let current = load_slot(device, device.current_slot(), false)?;
        let top = load(&|name| device.read_only(name, target), VBMETA, target)?;
        if let Some(key) = self.expected_key(&current)? {
            top.verify_with_key(&key)
                .map_err(|e| crate::err!(AvbSignature, "new vbmeta: {}", e.message))?;
        }
        let floors = self.floors(&current)?;
        let location = top.rollback_index_location();
        let floor = floors.get(location).unwrap_or(0);
        if top.rollback_index() < floor {
            bail!(
                RollbackIndex,
                "new vbmeta rollback index {} is below the floor {floor} at location {location}",
                top.rollback_index()
            );
        }
        Ok(())
    }

    /// The full check before switching: every image of the target slot verifies against the
    /// expected key chain, no rollback index is below its floor, and every partition a hash or
    /// hashtree descriptor names holds what the descriptor says (checked last, once the
    /// descriptors are known to be signed; `observer` may cancel it, 38). The target's
    /// partitions are read through `read_target`: a Virtual A/B update's are its snapshots
    /// (base plus COW), not the base extents the target metadata names.
    pub fn check_slot(
        &self,
        device: &Device,
        target: Slot,
        read_target: ReadPartition<'_>,
        observer: &dyn Observer,
    ) -> Result<()> {
        let current = load_slot(device, device.current_slot(), false)?;
        let new = load_slot_with(read_target, target, true)?;
        if let Some(key) = self.expected_key(&current)? {
            avb::verify_chain(&new.top, &key, &new.chained_refs())?;
        }
        avb::check_rollback(&new.top, &new.chained_refs(), &self.floors(&current)?)?;
        super::slot_contents::check(read_target, target, &new, observer)
    }

    /// After the running slot was marked successful: its indexes become the stored floors
    /// (never lowering any), as the bootloader does with its own storage.
    pub fn advance(&self, device: &Device) -> Result<RollbackFloors> {
        let current = load_slot(device, device.current_slot(), false)?;
        self.store.advance_to(&current.floors()?)
    }

    /// The floors an update must meet: the running slot's indexes raised by the store.
    pub fn floors(&self, current: &SlotVbmeta) -> Result<RollbackFloors> {
        Ok(effective_floors(&current.floors()?, &self.store.load()?))
    }

    /// The configured key, else the one the running slot's vbmeta is signed with (the
    /// bootloader accepted it). `None` for an unsigned running slot without a configured key
    /// (an unlocked engineering device): signatures are then not checked.
    fn expected_key(&self, current: &SlotVbmeta) -> Result<Option<AvbPublicKey>> {
        if let Some(key) = &self.configured_key {
            return Ok(Some(key.clone()));
        }
        Ok(current.top.public_key().cloned())
    }
}

/// Loads a slot's top-level vbmeta and the chained partitions' images. A chain descriptor
/// whose partition name is not [`avb::validate_partition_name`]-clean is refused (28) before
/// any path is built from it. With `all_chained`, a chained partition that is missing is 43
/// and one that cannot be read otherwise is 28; without, it is skipped, since the running
/// slot's floors are a lower bound either way.
pub fn load_slot(device: &Device, slot: Slot, all_chained: bool) -> Result<SlotVbmeta> {
    load_slot_with(&|name| device.read_only(name, slot), slot, all_chained)
}

/// Opens one partition of a slot for reading (no slot suffix).
pub type ReadPartition<'a> = &'a dyn Fn(&str) -> Result<Box<dyn SourceRead>>;

/// [`load_slot`] with `slot`'s partitions read through `read`.
pub fn load_slot_with(
    read: ReadPartition<'_>,
    slot: Slot,
    all_chained: bool,
) -> Result<SlotVbmeta> {
    let top = load(read, VBMETA, slot)?;
    let mut chained = Vec::new();
    for c in top.chain_partitions() {
        avb::validate_partition_name(&c.partition_name).map_err(|e| {
            crate::err!(
                AvbSignature,
                "slot {slot} vbmeta chain descriptor: {}",
                e.message
            )
        })?;
        match load(read, &c.partition_name, slot) {
            Ok(image) => chained.push((c.partition_name.clone(), image)),
            Err(e) if all_chained && e.code == ErrorCode::PartitionMissing => {
                return Err(crate::err!(
                    AvbContents,
                    "chained partition {} named by slot {slot}'s vbmeta: {}",
                    c.partition_name,
                    e.message
                ))
            }
            Err(e) if all_chained => {
                return Err(crate::err!(
                    AvbSignature,
                    "chained partition {}: {}",
                    c.partition_name,
                    e.message
                ))
            }
            Err(e) => log::warn!("running slot's {} vbmeta unreadable: {e}", c.partition_name),
        }
    }
    Ok(SlotVbmeta { top, chained })
}

fn load(read: ReadPartition<'_>, name: &str, slot: Slot) -> Result<VbmetaImage> {
    let part = read(name)?;
    let size = part.size();
    avb::load_vbmeta(name, size, |offset, len| {
        let len = len.min(size.saturating_sub(offset) as usize);
        let mut buf = vec![0u8; len];
        part.read_at(&mut buf, offset)
            .map_err(|e| Error::io(format!("reading {name}"), e))?;
        Ok(buf)
    })
    .map_err(|e| match e.code {
        ErrorCode::DeviceError | ErrorCode::PartitionMissing => e,
        _ => crate::err!(AvbSignature, "slot {slot} {name}: {}", e.message),
    })
}
