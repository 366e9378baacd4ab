/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate;

import com.abupdate.SlotState;

/** The A/B slots of the device. */
parcelable SlotInfo {
    /** The slot running now. */
    int currentSlot;
    /** The slot the bootloader picks next. */
    int activeSlot;
    /** One entry per slot, in slot order. */
    SlotState[] slots;
}
