/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate;

/** The boot control state of one slot. */
parcelable SlotState {
    int slot;
    /** The partition name suffix, "_a" or "_b". */
    String suffix;
    boolean bootable;
    boolean successful;
    /** Boot attempts left before the bootloader gives up on the slot. */
    int triesRemaining;
}
