/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package android.os;

import android.os.IUpdateEngineCallback;

/**
 * update_engine's Binder interface, served by `abupdated --update-engine-compat` as
 * "android.os.UpdateEngineService" so that android.os.UpdateEngine, update_engine_client and
 * update_device.py work unchanged. Written from the documented interface: the methods must
 * stay in this order, their transaction codes are FIRST_CALL_TRANSACTION + position
 * (applyPayload 1 ... cleanupSuccessfulUpdate 13, triggerPostinstall 14).
 *
 * Failures are service-specific exceptions whose code is update_engine's ErrorCode
 * (README.md has the table from abupdate's codes).
 */
interface IUpdateEngine {
    /** 1: apply the payload at `url` (http, https, file), `payload_size` bytes from
     * `payload_offset`; headers are payload_properties.txt's KEY=VALUE lines. */
    void applyPayload(String url, long payload_offset, long payload_size,
            in String[] headerKeyValuePairs);
    /** 2: as applyPayload, from an open file. */
    void applyPayloadFd(in ParcelFileDescriptor pfd, long payload_offset, long payload_size,
            in String[] headerKeyValuePairs);
    /** 3: adds a callback; it hears the current status at once. */
    boolean bind(IUpdateEngineCallback callback);
    /** 4: removes a callback; false if it was not bound. */
    boolean unbind(IUpdateEngineCallback callback);
    /** 5 */
    void suspend();
    /** 6 */
    void resume();
    /** 7: the update completes with 48 (USER_CANCELED). */
    void cancel();
    /** 8 */
    void resetStatus();
    /** 9 */
    void setShouldSwitchSlotOnReboot(String metadataFilename);
    /** 10 */
    void resetShouldSwitchSlotOnReboot();
    /** 11: whether the payload whose metadata is in the file can be applied. */
    boolean verifyPayloadApplicable(String metadataFilename);
    /** 12: 0 when the space is there, else the bytes needed. */
    long allocateSpaceForPayload(String metadataFilename, in String[] headerKeyValuePairs);
    /** 13: the callback hears CLEANUP_PREVIOUS_UPDATE (11) progress, then the result. */
    void cleanupSuccessfulUpdate(IUpdateEngineCallback callback);
    /** 14 (newer trees): runs the postinstall step of one partition of the applied update. */
    void triggerPostinstall(String partition);
}
