/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate;

/** A snapshot of the update service. */
parcelable UpdateStatus {
    /** One of IUpdateService.STATE_*. */
    int state;
    /** Fraction of the current phase done, 0 to 1. */
    float progress;
    /** Bytes of the current phase done so far. */
    long bytesDone;
    /** Bytes the current phase handles in all; 0 while unknown. */
    long bytesTotal;
    /** How the last update ended: IUpdateService.ERROR_*; ERROR_OK if none failed. */
    int errorCode;
    /** What exactly failed; empty when errorCode is ERROR_OK. */
    String errorMessage;
    /** The slot running now (0 is "_a"); -1 if unknown. */
    int currentSlot;
    /** The slot being or last updated; -1 if none. */
    int targetSlot;
}
