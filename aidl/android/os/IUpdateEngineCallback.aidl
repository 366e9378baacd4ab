/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package android.os;

/**
 * update_engine's callback, as android.os.UpdateEngine's clients implement it. Written
 * from the documented interface (transaction 1 onStatusUpdate, 2 onPayloadApplicationComplete);
 * abupdated calls it with update_engine's numbers (see IUpdateEngine).
 */
oneway interface IUpdateEngineCallback {
    /** `status`: update_engine's UpdateStatus (IDLE 0 ... CLEANUP_PREVIOUS_UPDATE 11);
     * `percent`: progress of the current phase, 0 to 1. */
    void onStatusUpdate(int status_code, float percentage);

    /** update_engine's ErrorCode: 0 success, 48 cancelled, ... */
    void onPayloadApplicationComplete(int error_code);
}
