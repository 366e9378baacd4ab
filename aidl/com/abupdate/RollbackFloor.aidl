/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate;

/** The lowest AVB rollback index a slot may carry at one rollback index location. */
parcelable RollbackFloor {
    int location;
    long index;
}
