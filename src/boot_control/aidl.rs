//! A [`BootControl`] backend over the device's boot HAL, `android.hardware.boot.IBootControl`
//! (AIDL V1, crate `android.hardware.boot-V1-rust`), for devices whose bootloader keeps its
//! own slot metadata. Each method is one HAL call; the HAL validates slots and answers
//! `INVALID_SLOT` (-1) or `COMMAND_FAILED` (-2) as service-specific errors.

use android_hardware_boot::aidl::android::hardware::boot::IBootControl::IBootControl;
use binder::Strong;

use crate::error::{Error, Result};
use crate::slot::{BootControl, Slot};

/// The HAL's service instance name.
pub const SERVICE_NAME: &str = "android.hardware.boot.IBootControl/default";

/// Boot control through the vendor's boot HAL.
pub struct AidlBootControl {
    hal: Strong<dyn IBootControl>,
}

impl AidlBootControl {
    /// Connects to the HAL, starting it if it is a lazy service.
    pub fn connect() -> Result<Self> {
        let hal = binder::wait_for_interface::<dyn IBootControl>(SERVICE_NAME)
            .map_err(|status| crate::err!(SlotError, "connecting to {SERVICE_NAME}: {status:?}"))?;
        Ok(AidlBootControl { hal })
    }
}

impl BootControl for AidlBootControl {
    fn slot_count(&self) -> Result<u32> {
        let count = self
            .hal
            .getNumberSlots()
            .map_err(|s| failed("getNumberSlots", s))?;
        u32::try_from(count).map_err(|_| crate::err!(SlotError, "getNumberSlots: {count}"))
    }

    fn current_slot(&self) -> Result<Slot> {
        from_hal("getCurrentSlot", self.hal.getCurrentSlot())
    }

    fn active_slot(&self) -> Result<Slot> {
        from_hal("getActiveBootSlot", self.hal.getActiveBootSlot())
    }

    fn suffix(&self, slot: Slot) -> Result<String> {
        self.hal
            .getSuffix(to_hal(slot))
            .map_err(|s| failed("getSuffix", s))
    }

    fn set_active(&mut self, slot: Slot) -> Result<()> {
        self.hal
            .setActiveBootSlot(to_hal(slot))
            .map_err(|s| failed("setActiveBootSlot", s))
    }

    fn mark_boot_successful(&mut self) -> Result<()> {
        self.hal
            .markBootSuccessful()
            .map_err(|s| failed("markBootSuccessful", s))
    }

    fn set_unbootable(&mut self, slot: Slot) -> Result<()> {
        self.hal
            .setSlotAsUnbootable(to_hal(slot))
            .map_err(|s| failed("setSlotAsUnbootable", s))
    }

    fn is_bootable(&self, slot: Slot) -> Result<bool> {
        self.hal
            .isSlotBootable(to_hal(slot))
            .map_err(|s| failed("isSlotBootable", s))
    }

    fn is_successful(&self, slot: Slot) -> Result<bool> {
        self.hal
            .isSlotMarkedSuccessful(to_hal(slot))
            .map_err(|s| failed("isSlotMarkedSuccessful", s))
    }
}

fn to_hal(slot: Slot) -> i32 {
    slot as i32
}

fn from_hal(call: &str, answer: binder::Result<i32>) -> Result<Slot> {
    let index = answer.map_err(|s| failed(call, s))?;
    usize::try_from(index)
        .ok()
        .and_then(Slot::from_index)
        .ok_or_else(|| crate::err!(SlotError, "IBootControl.{call} returned slot {index}"))
}

fn failed(call: &str, status: binder::Status) -> Error {
    crate::err!(SlotError, "IBootControl.{call}: {status}")
}
