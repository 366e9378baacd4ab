/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package android.os;

/** update_engine's stable callback (frozen V1/V2): 1 onStatusUpdate, 2 onPayloadApplicationComplete. */
oneway interface IUpdateEngineStableCallback {
    void onStatusUpdate(int status_code, float percentage);
    void onPayloadApplicationComplete(int error_code);
}
