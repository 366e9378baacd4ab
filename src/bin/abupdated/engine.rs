//! Where the update engine plugs into the daemon.
//!
//! The service reaches the engine only through [`Engine`]. Until the engine crate is
//! linked here, the daemon runs without one: it serves status, callbacks, permissions
//! and dump, and refuses every request that needs the engine with `Unsupported`, so a
//! client gets a clear answer instead of a hang.

use std::path::Path;
use std::sync::Arc;

use abupdate::service::{ApplyRequest, Control, Engine, Progress, RollbackFloor, SlotInfo};
use abupdate::Result;

/// The engine for this device; `device` is the host stand-in for block devices.
pub fn open(device: Option<&Path>) -> Result<Arc<dyn Engine>> {
    if let Some(dir) = device {
        log::info!(
            "device directory {} (used once an engine is linked)",
            dir.display()
        );
    }
    Ok(Arc::new(NoEngine))
}

/// The daemon without an update engine linked in.
struct NoEngine;

const MISSING: &str = "this abupdated has no update engine linked in";

impl Engine for NoEngine {
    fn apply(&self, _: &ApplyRequest, _: &mut dyn FnMut(Progress), _: &Control) -> Result<()> {
        abupdate::bail!(Unsupported, "{MISSING}")
    }

    fn verify_applicable(&self, _metadata: &[u8]) -> Result<()> {
        abupdate::bail!(Unsupported, "{MISSING}")
    }

    fn slot_info(&self) -> Result<SlotInfo> {
        abupdate::bail!(Unsupported, "{MISSING}")
    }

    fn mark_boot_successful(&self) -> Result<()> {
        abupdate::bail!(Unsupported, "{MISSING}")
    }

    fn rollback_floors(&self) -> Result<Vec<RollbackFloor>> {
        abupdate::bail!(Unsupported, "{MISSING}")
    }

    fn resume_point(&self) -> Result<Option<Progress>> {
        Ok(None)
    }

    fn reset(&self) -> Result<()> {
        Ok(())
    }
}
