/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate;

import com.abupdate.UpdateStatus;

/** What abupdated tells a registered listener. Oneway: the service never waits on it. */
oneway interface IUpdateCallback {
    /**
     * The state changed or the progress moved by a useful step (1%, or once a
     * second while bytes are written).
     */
    void onStatusUpdate(in UpdateStatus status);

    /**
     * An update ended: `errorCode` is IUpdateService.ERROR_OK when the target
     * slot is ready, the failure's code otherwise.
     */
    void onPayloadApplicationComplete(int errorCode, String message);
}
