//! Android Verified Boot checks on a slot before abupdate switches to it.
//!
//! The bootloader will refuse a slot whose vbmeta is not signed by its trusted key, or whose
//! rollback index is below the value in its tamper-evident storage. abupdate refuses such a
//! slot first, so a device never switches to something that cannot boot: 28 for a signature
//! or chain key that does not verify, 27 for a rollback index below the floor.

use std::path::{Path, PathBuf};

use crate::avb::{self, AvbPublicKey, RollbackFloors, VbmetaImage};
use crate::device::{Device, Slot};
use crate::error::{Error, Result};
use crate::rollback::{effective_floors, RollbackStore};
use crate::{bail, ErrorCode};

/// The top-level vbmeta partition, as libavb names it.
const VBMETA: &str = "vbmeta";

/// A slot's vbmeta images: the top level and every partition it chains to.
pub struct SlotVbmeta {
    pub top: VbmetaImage,
    pub chained: Vec<(String, VbmetaImage)>,
}

impl SlotVbmeta {
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

    pub fn store(&self) -> &RollbackStore {
        &self.store
    }

    /// Whether the device uses AVB at all: the running slot has a vbmeta partition.
    pub fn enabled(device: &Device) -> bool {
        device
            .partition_path(VBMETA, device.current_slot())
            .exists()
    }

    /// The early check, as soon as the new top-level vbmeta is written: its signature and its
    /// own rollback index (chained partitions may not be written yet).
    pub fn check_top(&self, device: &Device, target: Slot) -> Result<()> {
        let current = load_slot(device, device.current_slot(), false)?;
        let top = load(device, VBMETA, target)?;
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
    /// expected key chain, and no rollback index is below its floor.
    pub fn check_slot(&self, device: &Device, target: Slot) -> Result<()> {
        let current = load_slot(device, device.current_slot(), false)?;
        let new = load_slot(device, target, true)?;
        if let Some(key) = self.expected_key(&current)? {
            avb::verify_chain(&new.top, &key, &new.chained_refs())?;
        }
        avb::check_rollback(&new.top, &new.chained_refs(), &self.floors(&current)?)
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

/// Loads a slot's top-level vbmeta and the chained partitions' images. With `all_chained`,
/// a chained partition that cannot be read is an error (28); otherwise it is skipped, since
/// the running slot's floors are a lower bound either way.
pub fn load_slot(device: &Device, slot: Slot, all_chained: bool) -> Result<SlotVbmeta> {
    let top = load(device, VBMETA, slot)?;
    let mut chained = Vec::new();
    for c in top.chain_partitions() {
        match load(device, &c.partition_name, slot) {
            Ok(image) => chained.push((c.partition_name.clone(), image)),
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

fn load(device: &Device, name: &str, slot: Slot) -> Result<VbmetaImage> {
    let part = device.read_only(name, slot)?;
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
