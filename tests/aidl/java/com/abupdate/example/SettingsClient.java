/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate.example;

import android.os.IBinder;
import android.os.RemoteException;
import com.abupdate.IUpdateCallback;
import com.abupdate.IUpdateService;
import com.abupdate.SlotInfo;
import com.abupdate.UpdateStatus;

/**
 * How a system app (Settings) drives abupdated. Compiled against the generated
 * interface so that a change breaking Java callers fails the check, not a device build.
 */
public final class SettingsClient extends IUpdateCallback.Stub {
    private final IUpdateService service;
    private volatile int lastState = IUpdateService.STATE_IDLE;

    public SettingsClient(IBinder binder) {
        this.service = IUpdateService.Stub.asInterface(binder);
    }

    public void start(String url, long offset, long size, String[] properties)
            throws RemoteException {
        service.registerCallback(this);
        UpdateStatus status = service.getStatus();
        if (status.state == IUpdateService.STATE_UPDATED_NEED_REBOOT) {
            return;
        }
        if (status.state == IUpdateService.STATE_INTERRUPTED) {
            service.resume();
            return;
        }
        service.applyPayload(url, offset, size, properties);
    }

    /**
     * The usual Settings flow with an update feed: one call checks, picks and starts the
     * offer; true when an update started (progress then arrives through the callback).
     */
    public boolean updateFromFeed(String feedUrl, String deviceId, String token)
            throws RemoteException {
        service.registerCallback(this);
        return !"NO_UPDATE".equals(service.applyFeedOffer(feedUrl, deviceId, token));
    }

    public int otherSlot() throws RemoteException {
        SlotInfo info = service.getSlotInfo();
        return info.slots.length < 2 ? -1 : (info.currentSlot + 1) % info.slots.length;
    }

    @Override
    public void onStatusUpdate(UpdateStatus status) {
        lastState = status.state;
    }

    @Override
    public void onPayloadApplicationComplete(int errorCode, String message) {
        if (errorCode != IUpdateService.ERROR_OK) {
            lastState = IUpdateService.STATE_IDLE;
        }
    }

    public int lastState() {
        return lastState;
    }
}
