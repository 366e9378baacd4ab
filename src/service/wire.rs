//! Conversions between the service's types and the AIDL parcelables, both ways.
//!
//! The parcelables carry plain `int`/`long`; reading them back (client side) checks every
//! value instead of trusting the peer.

use crate::error::{Error, ErrorCode, Result};
use crate::service::backend::{RollbackFloor, SlotInfo, SlotState};
use crate::service::binder_adapter::aidl;
use crate::service::status::{State, Status};

pub(crate) fn status_to_aidl(s: &Status) -> aidl::UpdateStatus {
    aidl::UpdateStatus {
        state: s.state.as_i32(),
        progress: s.progress(),
        bytesDone: to_long(s.done),
        bytesTotal: to_long(s.total),
        errorCode: s.error_code.as_i32(),
        errorMessage: s.error_message.clone(),
        currentSlot: slot_to_int(s.current_slot),
        targetSlot: slot_to_int(s.target_slot),
    }
}

pub(crate) fn status_from_aidl(s: &aidl::UpdateStatus) -> Result<Status> {
    Ok(Status {
        state: State::from_i32(s.state).ok_or_else(|| bad(format!("state {}", s.state)))?,
        done: from_long(s.bytesDone, "bytesDone")?,
        total: from_long(s.bytesTotal, "bytesTotal")?,
        error_code: error_code(s.errorCode)?,
        error_message: s.errorMessage.clone(),
        current_slot: slot_from_int(s.currentSlot)?,
        target_slot: slot_from_int(s.targetSlot)?,
    })
}

pub(crate) fn slots_to_aidl(info: &SlotInfo) -> aidl::SlotInfo {
    aidl::SlotInfo {
        currentSlot: slot_to_int(Some(info.current)),
        activeSlot: slot_to_int(Some(info.active)),
        slots: info
            .slots
            .iter()
            .map(|s| aidl::SlotState {
                slot: slot_to_int(Some(s.slot)),
                suffix: s.suffix.clone(),
                bootable: s.bootable,
                successful: s.successful,
                triesRemaining: i32::try_from(s.tries_remaining).unwrap_or(i32::MAX),
            })
            .collect(),
    }
}

pub(crate) fn slots_from_aidl(info: &aidl::SlotInfo) -> Result<SlotInfo> {
    let slot = |n: i32| slot_from_int(n)?.ok_or_else(|| bad(format!("slot {n}")));
    Ok(SlotInfo {
        current: slot(info.currentSlot)?,
        active: slot(info.activeSlot)?,
        slots: info
            .slots
            .iter()
            .map(|s| {
                Ok(SlotState {
                    slot: slot(s.slot)?,
                    suffix: s.suffix.clone(),
                    bootable: s.bootable,
                    successful: s.successful,
                    tries_remaining: u32::try_from(s.triesRemaining)
                        .map_err(|_| bad(format!("triesRemaining {}", s.triesRemaining)))?,
                })
            })
            .collect::<Result<_>>()?,
    })
}

/// Rollback indexes are unsigned 64-bit; the AIDL `long` carries the same bits.
pub(crate) fn floors_to_aidl(floors: &[RollbackFloor]) -> Vec<aidl::RollbackFloor> {
    floors
        .iter()
        .map(|f| aidl::RollbackFloor {
            location: i32::try_from(f.location).unwrap_or(i32::MAX),
            index: i64::from_ne_bytes(f.index.to_ne_bytes()),
        })
        .collect()
}

pub(crate) fn floors_from_aidl(floors: &[aidl::RollbackFloor]) -> Result<Vec<RollbackFloor>> {
    floors
        .iter()
        .map(|f| {
            Ok(RollbackFloor {
                location: u32::try_from(f.location)
                    .map_err(|_| bad(format!("rollback location {}", f.location)))?,
                index: u64::from_ne_bytes(f.index.to_ne_bytes()),
            })
        })
        .collect()
}

pub(crate) fn error_code(code: i32) -> Result<ErrorCode> {
    ErrorCode::from_i32(code).ok_or_else(|| bad(format!("error code {code}")))
}

fn to_long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_long(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| bad(format!("{what} {n}")))
}

fn slot_to_int(slot: Option<u32>) -> i32 {
    slot.and_then(|n| i32::try_from(n).ok()).unwrap_or(-1)
}

fn slot_from_int(n: i32) -> Result<Option<u32>> {
    match n {
        -1 => Ok(None),
        n => u32::try_from(n)
            .map(Some)
            .map_err(|_| bad(format!("slot {n}"))),
    }
}

fn bad(what: String) -> Error {
    crate::err!(DeviceError, "abupdated sent an invalid {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::binder_adapter::aidl::consts;

    #[test]
    fn aidl_constants_match_the_rust_codes() {
        let states = [
            (State::Idle, consts::STATE_IDLE),
            (State::Downloading, consts::STATE_DOWNLOADING),
            (State::Verifying, consts::STATE_VERIFYING),
            (State::Finalizing, consts::STATE_FINALIZING),
            (State::UpdatedNeedReboot, consts::STATE_UPDATED_NEED_REBOOT),
            (State::Suspended, consts::STATE_SUSPENDED),
            (State::Interrupted, consts::STATE_INTERRUPTED),
        ];
        assert_eq!(states.len(), State::ALL.len());
        for (state, constant) in states {
            assert_eq!(state.as_i32(), constant, "{state}");
        }
        let errors = [
            consts::ERROR_OK,
            consts::ERROR_DOWNLOAD_FAILED,
            consts::ERROR_DOWNLOAD_PROTOCOL,
            consts::ERROR_DOWNLOAD_CHANGED,
            consts::ERROR_NOT_ENOUGH_STORAGE,
            consts::ERROR_SIZE_MISMATCH,
            consts::ERROR_FEED_INVALID,
            consts::ERROR_FEED_STALE,
            consts::ERROR_FEED_NOT_FOR_DEVICE,
            consts::ERROR_VERIFICATION_FAILED,
            consts::ERROR_MALFORMED_PAYLOAD,
            consts::ERROR_METADATA_SIGNATURE,
            consts::ERROR_PAYLOAD_SIGNATURE,
            consts::ERROR_PAYLOAD_HASH,
            consts::ERROR_SOURCE_HASH,
            consts::ERROR_DOWNGRADE,
            consts::ERROR_ROLLBACK_INDEX,
            consts::ERROR_AVB_SIGNATURE,
            consts::ERROR_NO_TRUSTED_KEY,
            consts::ERROR_INSTALL_FAILED,
            consts::ERROR_DEVICE_ERROR,
            consts::ERROR_UNSUPPORTED,
            consts::ERROR_PARTITION_MISSING,
            consts::ERROR_SLOT_ERROR,
            consts::ERROR_BUSY,
            consts::ERROR_PERMISSION_DENIED,
            consts::ERROR_SUPER_NO_SPACE,
            consts::ERROR_CANCELLED,
            consts::ERROR_MERGE_PENDING,
            consts::ERROR_POST_CHECK_FAILED,
            consts::ERROR_PARTITION_HASH,
            consts::ERROR_VERITY,
            consts::ERROR_AVB_CONTENTS,
            consts::ERROR_POSTINSTALL_FAILED,
            consts::ERROR_POSTINSTALL_TIMEOUT,
        ];
        let codes: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.as_i32()).collect();
        assert_eq!(codes, errors);
    }

    #[test]
    fn status_round_trips() {
        let status = Status {
            state: State::Suspended,
            done: 10,
            total: 40,
            error_code: ErrorCode::Ok,
            error_message: String::new(),
            current_slot: Some(0),
            target_slot: None,
        };
        let wire = status_to_aidl(&status);
        assert_eq!(wire.progress, 0.25);
        assert_eq!(wire.targetSlot, -1);
        assert_eq!(status_from_aidl(&wire).unwrap(), status);
    }

    #[test]
    fn invalid_values_from_the_peer_are_refused() {
        let good = || status_to_aidl(&Status::default());
        let cases = [
            aidl::UpdateStatus {
                state: 42,
                ..good()
            },
            aidl::UpdateStatus {
                bytesDone: -5,
                ..good()
            },
            // No status code (37 was none until SUPER_NO_SPACE took it).
            aidl::UpdateStatus {
                errorCode: 99,
                ..good()
            },
            aidl::UpdateStatus {
                currentSlot: -2,
                ..good()
            },
        ];
        for wire in cases {
            assert!(status_from_aidl(&wire).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn rollback_indexes_keep_all_64_bits() {
        let floors = [RollbackFloor {
            location: 1,
            index: u64::MAX - 1,
        }];
        assert_eq!(floors_from_aidl(&floors_to_aidl(&floors)).unwrap(), floors);
    }
}
