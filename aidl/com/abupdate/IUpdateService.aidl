/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate;

import com.abupdate.IUpdateCallback;
import com.abupdate.RollbackFloor;
import com.abupdate.SlotInfo;
import com.abupdate.UpdateStatus;

/**
 * The A/B update service `abupdated`, registered as "abupdate".
 *
 * Calls that change anything (apply*, suspend, resume, cancel, resetStatus,
 * markBootSuccessful) are allowed only to the service's configured UIDs; others
 * get a security exception. A request that fails for a reason the update engine
 * knows is a service-specific exception whose code is one of ERROR_* below.
 * Kept within Android 10 AIDL: int constants, structured parcelables, no enums.
 */
interface IUpdateService {
    /** UpdateStatus.state: nothing is being applied. */
    const int STATE_IDLE = 0;
    /** Downloading the payload and writing the target slot. */
    const int STATE_DOWNLOADING = 1;
    /** Checking what was written (partition hashes, verity). */
    const int STATE_VERIFYING = 2;
    /** Computing verity/FEC, switching the active slot. */
    const int STATE_FINALIZING = 3;
    /** The target slot is ready and active; it runs after the next reboot. */
    const int STATE_UPDATED_NEED_REBOOT = 4;
    /** suspend() paused the update; resume() continues it. */
    const int STATE_SUSPENDED = 5;
    /** The service stopped while an update ran; resume() continues it. */
    const int STATE_INTERRUPTED = 6;

    /** UpdateStatus.errorCode and the service-specific exception codes. */
    const int ERROR_OK = 0;
    const int ERROR_DOWNLOAD_FAILED = 10;
    const int ERROR_DOWNLOAD_PROTOCOL = 11;
    const int ERROR_DOWNLOAD_CHANGED = 12;
    const int ERROR_NOT_ENOUGH_STORAGE = 13;
    const int ERROR_SIZE_MISMATCH = 14;
    const int ERROR_FEED_INVALID = 15;
    const int ERROR_FEED_STALE = 16;
    const int ERROR_FEED_NOT_FOR_DEVICE = 17;
    const int ERROR_VERIFICATION_FAILED = 20;
    const int ERROR_MALFORMED_PAYLOAD = 21;
    const int ERROR_METADATA_SIGNATURE = 22;
    const int ERROR_PAYLOAD_SIGNATURE = 23;
    const int ERROR_PAYLOAD_HASH = 24;
    const int ERROR_SOURCE_HASH = 25;
    const int ERROR_DOWNGRADE = 26;
    const int ERROR_ROLLBACK_INDEX = 27;
    const int ERROR_AVB_SIGNATURE = 28;
    const int ERROR_NO_TRUSTED_KEY = 29;
    const int ERROR_INSTALL_FAILED = 30;
    const int ERROR_DEVICE_ERROR = 31;
    const int ERROR_UNSUPPORTED = 32;
    const int ERROR_PARTITION_MISSING = 33;
    const int ERROR_SLOT_ERROR = 34;
    const int ERROR_BUSY = 35;
    const int ERROR_PERMISSION_DENIED = 36;
    const int ERROR_SUPER_NO_SPACE = 37;
    const int ERROR_CANCELLED = 38;
    const int ERROR_MERGE_PENDING = 39;
    const int ERROR_POST_CHECK_FAILED = 40;
    const int ERROR_PARTITION_HASH = 41;
    const int ERROR_VERITY = 42;
    const int ERROR_AVB_CONTENTS = 43;
    /** A postinstall program failed (or its partition did not mount); slot not switched. */
    const int ERROR_POSTINSTALL_FAILED = 44;
    /** A postinstall program ran past its timeout and was killed; slot not switched. */
    const int ERROR_POSTINSTALL_TIMEOUT = 45;

    /**
     * Starts applying the payload at `url` (http, https or file), `size` bytes from
     * `offset` (inside an OTA zip, say). `headerKeyValuePairs` are "KEY=VALUE"
     * strings as in payload_properties.txt (FILE_HASH, FILE_SIZE, METADATA_HASH,
     * METADATA_SIZE, ...). Returns once the update started; progress and the
     * result arrive through getStatus() and the callbacks. An update interrupted
     * earlier resumes where it stopped when the same payload is applied again.
     */
    void applyPayload(String url, long offset, long size, in String[] headerKeyValuePairs);

    /** As applyPayload(), reading the payload from an open file. */
    void applyPayloadFd(in ParcelFileDescriptor pfd, long offset, long size,
            in String[] headerKeyValuePairs);

    /** Pauses the running update between two operations. */
    void suspend();

    /** Continues a suspended or interrupted update. */
    void resume();

    /** Stops the running update; it completes with ERROR_CANCELLED. */
    void cancel();

    /**
     * Forgets the last update: its error, its resume point, and after
     * STATE_UPDATED_NEED_REBOOT the slot switch (the current slot stays active).
     */
    void resetStatus();

    UpdateStatus getStatus();

    /**
     * Adds a listener. It gets the current status at once, then every useful
     * change. A listener whose process dies is dropped.
     */
    void registerCallback(IUpdateCallback callback);

    void unregisterCallback(IUpdateCallback callback);

    /**
     * Checks that a payload whose metadata (header, manifest and metadata
     * signature) is `metadata` can be applied to this device. Fails with a
     * service-specific exception naming the reason when it cannot.
     */
    void verifyPayloadApplicable(in byte[] metadata);

    SlotInfo getSlotInfo();

    /** Marks the running slot as successfully booted. */
    void markBootSuccessful();

    /** The device's rollback index floor for each AVB rollback index location. */
    RollbackFloor[] getRollbackFloors();

    /**
     * Fetches the signed update feed at `feedUrl` (its signature at feedUrl + ".sig"),
     * verifies it against the trusted OTA keys, this device's model and channel and its
     * age, checks in with the fleet service when the feed names one and `token` is not
     * empty, and picks this device's offer by running build and rollout bucket of
     * `deviceId`. Returns "UPDATE_AVAILABLE id=... build=... size=N full|delta
     * [encrypted] notes=..." or "NO_UPDATE". Fails with ERROR_FEED_INVALID,
     * ERROR_FEED_STALE, ERROR_FEED_NOT_FOR_DEVICE or a download error.
     */
    String checkForUpdate(String feedUrl, String deviceId, String token);

    /**
     * Checks the feed as checkForUpdate() does and starts applying this device's offer into
     * the inactive slot, as applyPayload() does: the same worker, suspend(), resume(),
     * cancel() and resume from the engine's checkpoint when the offer is applied again.
     * An encrypted offer is decrypted while streaming with the device's key; a key the
     * offer was not encrypted for ends the update with ERROR_VERIFICATION_FAILED before
     * anything is written. Returns the offer's line as checkForUpdate() does once the
     * update started (progress and the result through getStatus() and the callbacks), or
     * "NO_UPDATE" when nothing was started. A report at each phase end and at completion
     * is queued in the service's state and sent to the feed's report URL with `token`;
     * reports still queued after a restart go with the next call that carries a token.
     * Fails as checkForUpdate() does, or with ERROR_BUSY while an update runs or waits
     * for its reboot.
     */
    String applyFeedOffer(String feedUrl, String deviceId, String token);
}
