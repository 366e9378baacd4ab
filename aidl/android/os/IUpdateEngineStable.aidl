/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package android.os;

import android.os.IUpdateEngineStableCallback;

/**
 * update_engine's stable interface (frozen V1/V2), served by `abupdated --update-engine-compat`
 * as "android.os.UpdateEngineStableService": 1 applyPayloadFd, 2 bind, 3 unbind. It has no
 * cancel. One callback at a time: bind fails while another is bound.
 */
interface IUpdateEngineStable {
    void applyPayloadFd(in ParcelFileDescriptor pfd, long payload_offset, long payload_size,
            in String[] headerKeyValuePairs);
    boolean bind(IUpdateEngineStableCallback callback);
    boolean unbind(IUpdateEngineStableCallback callback);
}
