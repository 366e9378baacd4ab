//! update_engine's numbers: its `UpdateStatus` (update_status.h) and `ErrorCode`
//! (common/error_code.h, as `android.os.UpdateEngine.ErrorCodeConstants`), and the one table
//! from abupdate's structured codes to them. The `com.abupdate` interface and the CLI keep
//! the structured codes; only the `android.os.IUpdateEngine` face reports these.

use crate::error::ErrorCode;
use crate::service::status::State;

/// update_engine's `UpdateStatus` values that abupdated reports.
pub mod status {
    /// `UpdateStatus::IDLE`.
    pub const IDLE: i32 = 0;
    /// `UpdateStatus::DOWNLOADING`.
    pub const DOWNLOADING: i32 = 3;
    /// `UpdateStatus::VERIFYING`.
    pub const VERIFYING: i32 = 4;
    /// `UpdateStatus::FINALIZING`.
    pub const FINALIZING: i32 = 5;
    /// `UpdateStatus::UPDATED_NEED_REBOOT`.
    pub const UPDATED_NEED_REBOOT: i32 = 6;
    /// `UpdateStatus::CLEANUP_PREVIOUS_UPDATE`.
    pub const CLEANUP_PREVIOUS_UPDATE: i32 = 11;
}

/// update_engine's `ErrorCode` values that abupdated reports or that its clients test for.
pub mod error {
    /// `ErrorCode::kSuccess`.
    pub const SUCCESS: i32 = 0;
    /// `ErrorCode::kError`.
    pub const ERROR: i32 = 1;
    /// `ErrorCode::kPostinstallRunnerError`.
    pub const POSTINSTALL_RUNNER_ERROR: i32 = 5;
    /// `ErrorCode::kInstallDeviceOpenError`.
    pub const INSTALL_DEVICE_OPEN_ERROR: i32 = 7;
    /// `ErrorCode::kDownloadTransferError`.
    pub const DOWNLOAD_TRANSFER_ERROR: i32 = 9;
    /// `ErrorCode::kPayloadHashMismatchError`.
    pub const PAYLOAD_HASH_MISMATCH_ERROR: i32 = 10;
    /// `ErrorCode::kPayloadSizeMismatchError`.
    pub const PAYLOAD_SIZE_MISMATCH_ERROR: i32 = 11;
    /// `ErrorCode::kDownloadPayloadVerificationError`.
    pub const DOWNLOAD_PAYLOAD_VERIFICATION_ERROR: i32 = 12;
    /// `ErrorCode::kDownloadWriteError`.
    pub const DOWNLOAD_WRITE_ERROR: i32 = 14;
    /// `ErrorCode::kNewRootfsVerificationError`.
    pub const NEW_ROOTFS_VERIFICATION_ERROR: i32 = 15;
    /// `ErrorCode::kDownloadPayloadPubKeyVerificationError`.
    pub const DOWNLOAD_PAYLOAD_PUB_KEY_VERIFICATION_ERROR: i32 = 18;
    /// `ErrorCode::kDownloadStateInitializationError`.
    pub const DOWNLOAD_STATE_INITIALIZATION_ERROR: i32 = 20;
    /// `ErrorCode::kDownloadManifestParseError`.
    pub const DOWNLOAD_MANIFEST_PARSE_ERROR: i32 = 23;
    /// `ErrorCode::kDownloadMetadataSignatureMismatch`.
    pub const DOWNLOAD_METADATA_SIGNATURE_MISMATCH: i32 = 26;
    /// `ErrorCode::kDownloadOperationHashMismatch`.
    pub const DOWNLOAD_OPERATION_HASH_MISMATCH: i32 = 29;
    /// `ErrorCode::kUnsupportedMinorPayloadVersion`.
    pub const UNSUPPORTED_MINOR_PAYLOAD_VERSION: i32 = 45;
    /// `ErrorCode::kFilesystemVerifierError`.
    pub const FILESYSTEM_VERIFIER_ERROR: i32 = 47;
    /// `ErrorCode::kUserCanceled`.
    pub const USER_CANCELED: i32 = 48;
    /// `ErrorCode::kPayloadTimestampError`.
    pub const PAYLOAD_TIMESTAMP_ERROR: i32 = 51;
    /// `ErrorCode::kUpdatedButNotActive`.
    pub const UPDATED_BUT_NOT_ACTIVE: i32 = 52;
    /// `ErrorCode::kVerityCalculationError`.
    pub const VERITY_CALCULATION_ERROR: i32 = 56;
    /// `ErrorCode::kNotEnoughSpace`.
    pub const NOT_ENOUGH_SPACE: i32 = 60;
    /// `ErrorCode::kDeviceCorrupted`.
    pub const DEVICE_CORRUPTED: i32 = 61;
    /// `ErrorCode::kUpdateProcessing`.
    pub const UPDATE_PROCESSING: i32 = 65;
    /// `ErrorCode::kUpdateAlreadyInstalled`.
    pub const UPDATE_ALREADY_INSTALLED: i32 = 66;
}

use self::error as ue;

/// Each structured code and the update_engine `ErrorCode` the IUpdateEngine face reports for
/// it, with that code's name in update_engine (README.md shows the same table). Several of
/// ours map to one of theirs; `PermissionDenied` travels as a security exception instead.
pub const ERROR_CODES: [(ErrorCode, i32, &str); 35] = [
    (ErrorCode::Ok, ue::SUCCESS, "kSuccess"),
    (
        ErrorCode::DownloadFailed,
        ue::DOWNLOAD_TRANSFER_ERROR,
        "kDownloadTransferError",
    ),
    (
        ErrorCode::DownloadProtocol,
        ue::DOWNLOAD_TRANSFER_ERROR,
        "kDownloadTransferError",
    ),
    (
        ErrorCode::DownloadChanged,
        ue::PAYLOAD_HASH_MISMATCH_ERROR,
        "kPayloadHashMismatchError",
    ),
    (
        ErrorCode::NotEnoughStorage,
        ue::NOT_ENOUGH_SPACE,
        "kNotEnoughSpace",
    ),
    (
        ErrorCode::SizeMismatch,
        ue::PAYLOAD_SIZE_MISMATCH_ERROR,
        "kPayloadSizeMismatchError",
    ),
    // The update feed is abupdate's own (update_engine has no feed): `checkForUpdate` on
    // com.abupdate reports these; were one to reach the IUpdateEngine face, it is a kError.
    (ErrorCode::FeedInvalid, ue::ERROR, "kError"),
    (ErrorCode::FeedStale, ue::ERROR, "kError"),
    (ErrorCode::FeedNotForDevice, ue::ERROR, "kError"),
    (
        ErrorCode::VerificationFailed,
        ue::DOWNLOAD_PAYLOAD_VERIFICATION_ERROR,
        "kDownloadPayloadVerificationError",
    ),
    (
        ErrorCode::MalformedPayload,
        ue::DOWNLOAD_MANIFEST_PARSE_ERROR,
        "kDownloadManifestParseError",
    ),
    (
        ErrorCode::MetadataSignature,
        ue::DOWNLOAD_METADATA_SIGNATURE_MISMATCH,
        "kDownloadMetadataSignatureMismatch",
    ),
    (
        ErrorCode::PayloadSignature,
        ue::DOWNLOAD_PAYLOAD_VERIFICATION_ERROR,
        "kDownloadPayloadVerificationError",
    ),
    (
        ErrorCode::PayloadHash,
        ue::DOWNLOAD_OPERATION_HASH_MISMATCH,
        "kDownloadOperationHashMismatch",
    ),
    (
        ErrorCode::SourceHash,
        ue::DOWNLOAD_STATE_INITIALIZATION_ERROR,
        "kDownloadStateInitializationError",
    ),
    (
        ErrorCode::Downgrade,
        ue::PAYLOAD_TIMESTAMP_ERROR,
        "kPayloadTimestampError",
    ),
    (
        ErrorCode::RollbackIndex,
        ue::PAYLOAD_TIMESTAMP_ERROR,
        "kPayloadTimestampError",
    ),
    (
        ErrorCode::AvbSignature,
        ue::DOWNLOAD_PAYLOAD_VERIFICATION_ERROR,
        "kDownloadPayloadVerificationError",
    ),
    (
        ErrorCode::NoTrustedKey,
        ue::DOWNLOAD_PAYLOAD_PUB_KEY_VERIFICATION_ERROR,
        "kDownloadPayloadPubKeyVerificationError",
    ),
    (ErrorCode::InstallFailed, ue::ERROR, "kError"),
    (
        ErrorCode::DeviceError,
        ue::DOWNLOAD_WRITE_ERROR,
        "kDownloadWriteError",
    ),
    (
        ErrorCode::Unsupported,
        ue::UNSUPPORTED_MINOR_PAYLOAD_VERSION,
        "kUnsupportedMinorPayloadVersion",
    ),
    (
        ErrorCode::PartitionMissing,
        ue::INSTALL_DEVICE_OPEN_ERROR,
        "kInstallDeviceOpenError",
    ),
    (ErrorCode::SlotError, ue::ERROR, "kError"),
    (ErrorCode::Busy, ue::UPDATE_PROCESSING, "kUpdateProcessing"),
    (ErrorCode::PermissionDenied, ue::ERROR, "kError"),
    (
        ErrorCode::SuperNoSpace,
        ue::NOT_ENOUGH_SPACE,
        "kNotEnoughSpace",
    ),
    (ErrorCode::Cancelled, ue::USER_CANCELED, "kUserCanceled"),
    (ErrorCode::MergePending, ue::ERROR, "kError"),
    (
        ErrorCode::PostCheckFailed,
        ue::FILESYSTEM_VERIFIER_ERROR,
        "kFilesystemVerifierError",
    ),
    (
        ErrorCode::PartitionHash,
        ue::NEW_ROOTFS_VERIFICATION_ERROR,
        "kNewRootfsVerificationError",
    ),
    (
        ErrorCode::Verity,
        ue::VERITY_CALCULATION_ERROR,
        "kVerityCalculationError",
    ),
    (
        ErrorCode::AvbContents,
        ue::FILESYSTEM_VERIFIER_ERROR,
        "kFilesystemVerifierError",
    ),
    (
        ErrorCode::PostinstallFailed,
        ue::POSTINSTALL_RUNNER_ERROR,
        "kPostinstallRunnerError",
    ),
    (
        ErrorCode::PostinstallTimeout,
        ue::POSTINSTALL_RUNNER_ERROR,
        "kPostinstallRunnerError",
    ),
];

/// The update_engine `ErrorCode` for one of ours (`kError` for a code missing from the
/// table, which the table test rules out).
pub fn error_code(code: ErrorCode) -> i32 {
    ERROR_CODES
        .iter()
        .find(|(ours, _, _)| *ours == code)
        .map_or(ue::ERROR, |(_, theirs, _)| *theirs)
}

/// The update_engine `UpdateStatus` for a state of ours. update_engine keeps reporting the
/// phase while it is suspended, and comes back idle after a restart (an interrupted update
/// resumes when the same payload is applied again).
pub fn update_status(state: State) -> i32 {
    match state {
        State::Idle | State::Interrupted => status::IDLE,
        State::Downloading | State::Suspended => status::DOWNLOADING,
        State::Verifying => status::VERIFYING,
        State::Finalizing => status::FINALIZING,
        State::UpdatedNeedReboot => status::UPDATED_NEED_REBOOT,
    }
}

/// update_engine's name of a status number, as update_engine_client prints it.
pub fn status_name(status: i32) -> &'static str {
    const NAMES: [&str; 12] = [
        "IDLE",
        "CHECKING_FOR_UPDATE",
        "UPDATE_AVAILABLE",
        "DOWNLOADING",
        "VERIFYING",
        "FINALIZING",
        "UPDATED_NEED_REBOOT",
        "REPORTING_ERROR_EVENT",
        "ATTEMPTING_ROLLBACK",
        "DISABLED",
        "NEED_PERMISSION_TO_UPDATE",
        "CLEANUP_PREVIOUS_UPDATE",
    ];
    usize::try_from(status)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// update_engine's name of an error number this service reports or clients test for.
pub fn error_name(code: i32) -> &'static str {
    let extra = [
        (ue::POSTINSTALL_RUNNER_ERROR, "kPostinstallRunnerError"),
        (ue::UPDATED_BUT_NOT_ACTIVE, "kUpdatedButNotActive"),
        (ue::DEVICE_CORRUPTED, "kDeviceCorrupted"),
        (ue::UPDATE_ALREADY_INSTALLED, "kUpdateAlreadyInstalled"),
    ];
    ERROR_CODES
        .iter()
        .map(|(_, n, name)| (*n, *name))
        .chain(extra)
        .find(|(n, _)| *n == code)
        .map_or("unknown", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the whole mapping: a change to it is a change to what stock clients see.
    #[test]
    fn error_table_is_pinned() {
        let pinned: Vec<(i32, i32)> = ERROR_CODES
            .iter()
            .map(|(ours, theirs, _)| (ours.as_i32(), *theirs))
            .collect();
        assert_eq!(
            pinned,
            [
                (0, 0),
                (10, 9),
                (11, 9),
                (12, 10),
                (13, 60),
                (14, 11),
                (15, 1),
                (16, 1),
                (17, 1),
                (20, 12),
                (21, 23),
                (22, 26),
                (23, 12),
                (24, 29),
                (25, 20),
                (26, 51),
                (27, 51),
                (28, 12),
                (29, 18),
                (30, 1),
                (31, 14),
                (32, 45),
                (33, 7),
                (34, 1),
                (35, 65),
                (36, 1),
                (37, 60),
                (38, 48),
                (39, 1),
                (40, 47),
                (41, 15),
                (42, 56),
                (43, 47),
                (44, 5),
                (45, 5),
            ]
        );
    }

    #[test]
    fn every_code_has_exactly_one_row() {
        for code in ErrorCode::ALL {
            let rows = ERROR_CODES.iter().filter(|(c, _, _)| *c == code).count();
            assert_eq!(rows, 1, "{code}");
        }
        assert_eq!(ERROR_CODES.len(), ErrorCode::ALL.len());
    }

    /// The names in the table are update_engine's for those numbers (common/error_code.h).
    #[test]
    fn names_match_update_engine_numbers() {
        let known = [
            (0, "kSuccess"),
            (1, "kError"),
            (5, "kPostinstallRunnerError"),
            (7, "kInstallDeviceOpenError"),
            (9, "kDownloadTransferError"),
            (10, "kPayloadHashMismatchError"),
            (11, "kPayloadSizeMismatchError"),
            (12, "kDownloadPayloadVerificationError"),
            (14, "kDownloadWriteError"),
            (15, "kNewRootfsVerificationError"),
            (18, "kDownloadPayloadPubKeyVerificationError"),
            (20, "kDownloadStateInitializationError"),
            (23, "kDownloadManifestParseError"),
            (26, "kDownloadMetadataSignatureMismatch"),
            (29, "kDownloadOperationHashMismatch"),
            (45, "kUnsupportedMinorPayloadVersion"),
            (47, "kFilesystemVerifierError"),
            (48, "kUserCanceled"),
            (51, "kPayloadTimestampError"),
            (56, "kVerityCalculationError"),
            (60, "kNotEnoughSpace"),
            (65, "kUpdateProcessing"),
        ];
        for (_, number, name) in ERROR_CODES {
            assert!(known.contains(&(number, name)), "{number} {name}");
        }
        assert_eq!(error_code(ErrorCode::Cancelled), 48);
    }

    #[test]
    fn states_map_to_update_engine_statuses() {
        let got: Vec<(i32, i32)> = State::ALL
            .iter()
            .map(|s| (s.as_i32(), update_status(*s)))
            .collect();
        // Idle, Downloading, Verifying, Finalizing, UpdatedNeedReboot, Suspended, Interrupted.
        assert_eq!(
            got,
            [(0, 0), (1, 3), (2, 4), (3, 5), (4, 6), (5, 3), (6, 0)]
        );
    }
}
