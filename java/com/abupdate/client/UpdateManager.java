/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 */

package com.abupdate.client;

import android.os.Handler;
import android.os.IBinder;
import android.os.ParcelFileDescriptor;
import android.os.RemoteException;

import com.abupdate.IUpdateCallback;
import com.abupdate.IUpdateService;
import com.abupdate.UpdateStatus;

/**
 * The client side of the system service {@code abupdated} ({@code com.abupdate.IUpdateService},
 * registered as "abupdate"), in the manner of {@code android.os.UpdateEngine}: callbacks arrive
 * on the caller's {@link Handler}, and a binding survives the service restarting: when the
 * service dies the callback hears {@link Callback#onServiceDied()}, and the manager looks the
 * service up again (every {@link #RECONNECT_DELAY_MS} ms on the handler) and registers the
 * callback anew, whose first {@link Callback#onStatusUpdate} then tells where the update is
 * (an update cut short by the restart reports {@link #STATE_INTERRUPTED}).
 *
 * <p>Calls that change anything need a UID the service allows (root, system, shell by default);
 * a refusal is a {@code SecurityException}, an engine error a {@code ServiceSpecificException}
 * whose {@code errorCode} is one of the {@code ERROR_*} constants.
 */
public final class UpdateManager {
    /** The name the service registers with the service manager. */
    public static final String SERVICE_NAME = "abupdate";

    /** How long to wait between lookups of a service that died. */
    public static final long RECONNECT_DELAY_MS = 1000;

    // The structured status codes (the CLI's exit codes): class by tens digit.
    public static final int STATE_IDLE = IUpdateService.STATE_IDLE;
    public static final int STATE_DOWNLOADING = IUpdateService.STATE_DOWNLOADING;
    public static final int STATE_VERIFYING = IUpdateService.STATE_VERIFYING;
    public static final int STATE_FINALIZING = IUpdateService.STATE_FINALIZING;
    public static final int STATE_UPDATED_NEED_REBOOT = IUpdateService.STATE_UPDATED_NEED_REBOOT;
    public static final int STATE_SUSPENDED = IUpdateService.STATE_SUSPENDED;
    public static final int STATE_INTERRUPTED = IUpdateService.STATE_INTERRUPTED;

    public static final int ERROR_OK = IUpdateService.ERROR_OK;
    public static final int ERROR_DOWNLOAD_FAILED = IUpdateService.ERROR_DOWNLOAD_FAILED;
    public static final int ERROR_DOWNLOAD_PROTOCOL = IUpdateService.ERROR_DOWNLOAD_PROTOCOL;
    public static final int ERROR_DOWNLOAD_CHANGED = IUpdateService.ERROR_DOWNLOAD_CHANGED;
    public static final int ERROR_NOT_ENOUGH_STORAGE = IUpdateService.ERROR_NOT_ENOUGH_STORAGE;
    public static final int ERROR_SIZE_MISMATCH = IUpdateService.ERROR_SIZE_MISMATCH;
    public static final int ERROR_VERIFICATION_FAILED = IUpdateService.ERROR_VERIFICATION_FAILED;
    public static final int ERROR_MALFORMED_PAYLOAD = IUpdateService.ERROR_MALFORMED_PAYLOAD;
    public static final int ERROR_METADATA_SIGNATURE = IUpdateService.ERROR_METADATA_SIGNATURE;
    public static final int ERROR_PAYLOAD_SIGNATURE = IUpdateService.ERROR_PAYLOAD_SIGNATURE;
    public static final int ERROR_PAYLOAD_HASH = IUpdateService.ERROR_PAYLOAD_HASH;
    public static final int ERROR_SOURCE_HASH = IUpdateService.ERROR_SOURCE_HASH;
    public static final int ERROR_DOWNGRADE = IUpdateService.ERROR_DOWNGRADE;
    public static final int ERROR_ROLLBACK_INDEX = IUpdateService.ERROR_ROLLBACK_INDEX;
    public static final int ERROR_AVB_SIGNATURE = IUpdateService.ERROR_AVB_SIGNATURE;
    public static final int ERROR_NO_TRUSTED_KEY = IUpdateService.ERROR_NO_TRUSTED_KEY;
    public static final int ERROR_INSTALL_FAILED = IUpdateService.ERROR_INSTALL_FAILED;
    public static final int ERROR_DEVICE_ERROR = IUpdateService.ERROR_DEVICE_ERROR;
    public static final int ERROR_UNSUPPORTED = IUpdateService.ERROR_UNSUPPORTED;
    public static final int ERROR_PARTITION_MISSING = IUpdateService.ERROR_PARTITION_MISSING;
    public static final int ERROR_SLOT_ERROR = IUpdateService.ERROR_SLOT_ERROR;
    public static final int ERROR_BUSY = IUpdateService.ERROR_BUSY;
    public static final int ERROR_PERMISSION_DENIED = IUpdateService.ERROR_PERMISSION_DENIED;
    public static final int ERROR_SUPER_NO_SPACE = IUpdateService.ERROR_SUPER_NO_SPACE;
    public static final int ERROR_CANCELLED = IUpdateService.ERROR_CANCELLED;
    public static final int ERROR_MERGE_PENDING = IUpdateService.ERROR_MERGE_PENDING;
    public static final int ERROR_POST_CHECK_FAILED = IUpdateService.ERROR_POST_CHECK_FAILED;
    public static final int ERROR_PARTITION_HASH = IUpdateService.ERROR_PARTITION_HASH;
    public static final int ERROR_VERITY = IUpdateService.ERROR_VERITY;
    public static final int ERROR_AVB_CONTENTS = IUpdateService.ERROR_AVB_CONTENTS;
    public static final int ERROR_POSTINSTALL_FAILED = IUpdateService.ERROR_POSTINSTALL_FAILED;
    public static final int ERROR_POSTINSTALL_TIMEOUT = IUpdateService.ERROR_POSTINSTALL_TIMEOUT;
    public static final int ERROR_FEED_INVALID = IUpdateService.ERROR_FEED_INVALID;
    public static final int ERROR_FEED_STALE = IUpdateService.ERROR_FEED_STALE;
    public static final int ERROR_FEED_NOT_FOR_DEVICE = IUpdateService.ERROR_FEED_NOT_FOR_DEVICE;

    /** The class of a status code, as its tens digit names it (for messages and analytics). */
    public static String errorClass(int code) {
        if (code == ERROR_OK) {
            return "ok";
        }
        switch (code / 10) {
            case 1: return "download failed";
            case 2: return "verification failed";
            case 3: return "install failed";
            case 4: return "post-check failed";
            default: return "unknown";
        }
    }

    /** What the service reports; every method runs on the handler given to {@link #bind}. */
    public abstract static class Callback {
        /** The state or progress changed; the first call after a (re)bind is the current status. */
        public abstract void onStatusUpdate(UpdateStatus status);

        /** An update ended with {@code errorCode} ({@link #ERROR_OK}: the new slot is ready). */
        public abstract void onPayloadApplicationComplete(int errorCode, String message);

        /** The service died; the manager is looking it up again. */
        public void onServiceDied() {}
    }

    /** Finds the service; on a device {@code ServiceManager.getService(SERVICE_NAME)}. */
    public interface ServiceLookup {
        /** The service's binder, or null while it is not running. */
        IBinder find();
    }

    private final Object mLock = new Object();
    private final ServiceLookup mLookup;
    private IUpdateService mService;
    private Callback mCallback;
    private Handler mHandler;
    private IUpdateCallback.Stub mRelay;
    private IBinder.DeathRecipient mDeath;

    /** A manager that finds the service through {@code lookup}. */
    public UpdateManager(ServiceLookup lookup) {
        mLookup = lookup;
    }

    /** A manager for the device's service, found through the service manager. */
    public static UpdateManager forDevice() {
        return new UpdateManager(() -> android.os.ServiceManager.getService(SERVICE_NAME));
    }

    /**
     * Delivers the service's reports to {@code callback} on {@code handler} until {@link
     * #unbind}, across restarts of the service. Returns false if the service cannot be reached
     * now (the manager keeps trying) or another callback is bound.
     */
    public boolean bind(Callback callback, Handler handler) {
        synchronized (mLock) {
            if (mCallback != null) {
                return false;
            }
            mCallback = callback;
            mHandler = handler;
            final Handler h = handler;
            mRelay = new IUpdateCallback.Stub() {
                @Override
                public void onStatusUpdate(UpdateStatus status) {
                    h.post(() -> deliver(c -> c.onStatusUpdate(status)));
                }

                @Override
                public void onPayloadApplicationComplete(int errorCode, String message) {
                    h.post(() -> deliver(c -> c.onPayloadApplicationComplete(errorCode, message)));
                }
            };
            return connectLocked();
        }
    }

    /** Stops the reports; false if nothing was bound. */
    public boolean unbind() {
        synchronized (mLock) {
            if (mCallback == null) {
                return false;
            }
            IUpdateService service = mService;
            if (service != null) {
                service.asBinder().unlinkToDeath(mDeath, 0);
                try {
                    service.unregisterCallback(mRelay);
                } catch (RemoteException e) {
                    // Dead already: nothing left to unregister.
                }
            }
            mService = null;
            mCallback = null;
            mHandler = null;
            mRelay = null;
            mDeath = null;
            return true;
        }
    }

    private interface Delivery {
        void to(Callback callback);
    }

    /** Runs on the handler: the callback may have been unbound since the post. */
    private void deliver(Delivery delivery) {
        Callback callback;
        synchronized (mLock) {
            callback = mCallback;
        }
        if (callback != null) {
            delivery.to(callback);
        }
    }

    private boolean connectLocked() {
        IBinder binder = mLookup.find();
        if (binder == null) {
            scheduleReconnectLocked();
            return false;
        }
        IUpdateService service = IUpdateService.Stub.asInterface(binder);
        final IUpdateCallback.Stub relay = mRelay;
        IBinder.DeathRecipient death = () -> onDied(relay);
        try {
            binder.linkToDeath(death, 0);
            service.registerCallback(relay);
        } catch (RemoteException e) {
            binder.unlinkToDeath(death, 0);
            scheduleReconnectLocked();
            return false;
        }
        mService = service;
        mDeath = death;
        return true;
    }

    private void onDied(IUpdateCallback.Stub relay) {
        Handler handler;
        synchronized (mLock) {
            if (mRelay != relay) {
                return; // unbound (or rebound) since
            }
            mService = null;
            mDeath = null;
            handler = mHandler;
            scheduleReconnectLocked();
        }
        handler.post(() -> deliver(Callback::onServiceDied));
    }

    private void scheduleReconnectLocked() {
        final IUpdateCallback.Stub relay = mRelay;
        mHandler.postDelayed(() -> {
            synchronized (mLock) {
                if (mRelay == relay && mService == null) {
                    connectLocked();
                }
            }
        }, RECONNECT_DELAY_MS);
    }

    private IUpdateService service() throws RemoteException {
        synchronized (mLock) {
            if (mService != null) {
                return mService;
            }
        }
        IBinder binder = mLookup.find();
        if (binder == null) {
            throw new RemoteException("the " + SERVICE_NAME + " service is not running");
        }
        return IUpdateService.Stub.asInterface(binder);
    }

    /** Starts an update from an http(s) URL; see {@code IUpdateService.applyPayload}. */
    public void applyPayload(String url, long offset, long size, String[] headerKeyValuePairs)
            throws RemoteException {
        service().applyPayload(url, offset, size, headerKeyValuePairs);
    }

    /** Starts an update from a file the caller opened. */
    public void applyPayload(ParcelFileDescriptor pfd, long offset, long size,
            String[] headerKeyValuePairs) throws RemoteException {
        service().applyPayloadFd(pfd, offset, size, headerKeyValuePairs);
    }

    public void suspend() throws RemoteException {
        service().suspend();
    }

    public void resume() throws RemoteException {
        service().resume();
    }

    public void cancel() throws RemoteException {
        service().cancel();
    }

    public void resetStatus() throws RemoteException {
        service().resetStatus();
    }

    public UpdateStatus getStatus() throws RemoteException {
        return service().getStatus();
    }

    /** Checks a payload's metadata against the device without applying it. */
    public void verifyPayloadApplicable(byte[] metadata) throws RemoteException {
        service().verifyPayloadApplicable(metadata);
    }

    /**
     * Fetches and verifies the signed update feed and picks this device's offer:
     * "UPDATE_AVAILABLE ..." or "NO_UPDATE". An empty token skips the fleet check-in.
     */
    public String checkForUpdate(String feedUrl, String deviceId, String token)
            throws RemoteException {
        return service().checkForUpdate(feedUrl, deviceId, token);
    }

    /**
     * Checks the feed as {@link #checkForUpdate} does and starts applying this device's
     * offer (decrypted by the service when it is encrypted): "UPDATE_AVAILABLE ..." once it
     * started, its progress and result then arriving through the callback, or "NO_UPDATE"
     * when nothing started. The token also sends the service's queued fleet reports.
     */
    public String applyFeedOffer(String feedUrl, String deviceId, String token)
            throws RemoteException {
        return service().applyFeedOffer(feedUrl, deviceId, token);
    }
}
