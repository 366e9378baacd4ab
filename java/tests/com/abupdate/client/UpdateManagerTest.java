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
import com.abupdate.RollbackFloor;
import com.abupdate.SlotInfo;
import com.abupdate.UpdateStatus;

import java.util.ArrayList;
import java.util.List;

/**
 * {@link UpdateManager} on a JVM, against an in-process {@code IUpdateService} (the generated
 * Stub, local calls; the Rust service's own parcels are tested over RPC Binder in
 * tests/service_rpc.rs): reports arrive on the given handler and only there, a second bind is
 * refused, a service death is reported and the callback re-registered with the service that
 * comes back, unbind stops the reports, and the constants are the structured codes. Run by
 * java/check.sh (no JUnit: a main() that throws on the first failed check).
 */
public final class UpdateManagerTest {
    /** The service side: records calls, reports to its registered callbacks. */
    static final class Service extends IUpdateService.Stub {
        final List<IUpdateCallback> callbacks = new ArrayList<>();
        final List<String> calls = new ArrayList<>();
        int state;

        Service(int state) {
            this.state = state;
        }

        UpdateStatus status() {
            UpdateStatus s = new UpdateStatus();
            s.state = state;
            s.errorMessage = "";
            s.currentSlot = 0;
            s.targetSlot = 1;
            return s;
        }

        void report() throws RemoteException {
            for (IUpdateCallback c : new ArrayList<>(callbacks)) {
                c.onStatusUpdate(status());
            }
        }

        @Override
        public void applyPayload(String url, long offset, long size, String[] headers)
                throws RemoteException {
            calls.add("applyPayload " + url + " " + offset + " " + size + " " + headers.length);
            state = UpdateManager.STATE_DOWNLOADING;
            report();
        }

        @Override
        public void applyPayloadFd(ParcelFileDescriptor pfd, long offset, long size,
                String[] headers) {
            calls.add("applyPayloadFd");
        }

        @Override
        public void suspend() {
            calls.add("suspend");
        }

        @Override
        public void resume() {
            calls.add("resume");
        }

        @Override
        public void cancel() throws RemoteException {
            calls.add("cancel");
            state = UpdateManager.STATE_IDLE;
            for (IUpdateCallback c : new ArrayList<>(callbacks)) {
                c.onPayloadApplicationComplete(UpdateManager.ERROR_CANCELLED, "cancelled");
            }
        }

        @Override
        public void resetStatus() {
            calls.add("resetStatus");
        }

        @Override
        public UpdateStatus getStatus() {
            return status();
        }

        @Override
        public void registerCallback(IUpdateCallback callback) throws RemoteException {
            callbacks.add(callback);
            callback.onStatusUpdate(status());
        }

        @Override
        public void unregisterCallback(IUpdateCallback callback) {
            callbacks.remove(callback);
        }

        @Override
        public void verifyPayloadApplicable(byte[] metadata) {
            calls.add("verify " + metadata.length);
        }

        @Override
        public String checkForUpdate(String feedUrl, String deviceId, String token) {
            calls.add("check " + feedUrl + " " + deviceId + " " + token);
            return "NO_UPDATE";
        }

        @Override
        public String applyFeedOffer(String feedUrl, String deviceId, String token) {
            calls.add("applyFeedOffer " + feedUrl + " " + deviceId + " " + token);
            return "UPDATE_AVAILABLE id=o1";
        }

        @Override
        public SlotInfo getSlotInfo() {
            return new SlotInfo();
        }

        @Override
        public void markBootSuccessful() {
            calls.add("markBootSuccessful");
        }

        @Override
        public RollbackFloor[] getRollbackFloors() {
            return new RollbackFloor[0];
        }
    }

    /** What the app's callback saw, in order. */
    static final class Seen extends UpdateManager.Callback {
        final List<String> events = new ArrayList<>();

        @Override
        public void onStatusUpdate(UpdateStatus status) {
            events.add("status " + status.state);
        }

        @Override
        public void onPayloadApplicationComplete(int errorCode, String message) {
            events.add("complete " + errorCode + " " + message);
        }

        @Override
        public void onServiceDied() {
            events.add("died");
        }
    }

    private static IBinder sRunning;

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void expect(Seen seen, String... events) {
        List<String> want = List.of(events);
        check(seen.events.equals(want), "saw " + seen.events + ", expected " + want);
        seen.events.clear();
    }

    public static void main(String[] args) throws Exception {
        Service first = new Service(UpdateManager.STATE_IDLE);
        sRunning = first;
        UpdateManager manager = new UpdateManager(() -> sRunning);
        Handler handler = new Handler();
        Seen seen = new Seen();

        // Reports wait for the handler.
        check(manager.bind(seen, handler), "bind");
        check(first.callbacks.size() == 1, "the callback is registered");
        expect(seen);
        handler.advance(0);
        expect(seen, "status " + UpdateManager.STATE_IDLE);
        check(!manager.bind(new Seen(), handler), "a second bind is refused");

        // Calls go through; the service's reports come back on the handler.
        manager.applyPayload("https://ota.example/p.bin", 4096, 100, new String[] {"A=1"});
        check(first.calls.contains("applyPayload https://ota.example/p.bin 4096 100 1"),
                "applyPayload reached the service: " + first.calls);
        manager.verifyPayloadApplicable(new byte[24]);
        check("NO_UPDATE".equals(
                manager.checkForUpdate("https://ota.example/feed.json", "dev-1", "")),
                "checkForUpdate's answer");
        check(first.calls.contains("check https://ota.example/feed.json dev-1 "),
                "checkForUpdate reached the service: " + first.calls);
        check("UPDATE_AVAILABLE id=o1".equals(
                manager.applyFeedOffer("https://ota.example/feed.json", "dev-1", "t")),
                "applyFeedOffer's answer");
        check(first.calls.contains("applyFeedOffer https://ota.example/feed.json dev-1 t"),
                "applyFeedOffer reached the service: " + first.calls);
        manager.cancel();
        handler.advance(0);
        expect(seen, "status " + UpdateManager.STATE_DOWNLOADING,
                "complete " + UpdateManager.ERROR_CANCELLED + " cancelled");

        // The service dies and stays away for a while: the app hears of it, the manager keeps
        // looking; the restarted service gets the callback, whose first report is its status.
        sRunning = null;
        first.simulateDeath();
        handler.advance(0);
        expect(seen, "died");
        handler.advance(UpdateManager.RECONNECT_DELAY_MS);
        expect(seen);
        Service second = new Service(UpdateManager.STATE_INTERRUPTED);
        sRunning = second;
        handler.advance(UpdateManager.RECONNECT_DELAY_MS - 1);
        check(second.callbacks.isEmpty(), "reconnected before the delay");
        handler.advance(1);
        check(second.callbacks.size() == 1, "the callback is registered again");
        handler.advance(0);
        expect(seen, "status " + UpdateManager.STATE_INTERRUPTED);
        manager.resume();
        check(second.calls.contains("resume") && !first.calls.contains("resume"),
                "calls go to the new service");

        // Unbind: no more reports, and a later death of the service goes unnoticed.
        check(manager.unbind(), "unbind");
        check(second.callbacks.isEmpty(), "the callback is unregistered");
        second.report();
        second.simulateDeath();
        handler.advance(10 * UpdateManager.RECONNECT_DELAY_MS);
        expect(seen);
        check(handler.pending() == 0, "nothing left queued");
        check(!manager.unbind(), "a second unbind is refused");

        // A report posted before unbind is dropped when it runs after it.
        Service third = new Service(UpdateManager.STATE_IDLE);
        sRunning = third;
        check(manager.bind(seen, handler), "bind again");
        check(manager.unbind(), "unbind again");
        handler.advance(0);
        expect(seen);

        // The structured codes.
        check(UpdateManager.ERROR_POSTINSTALL_FAILED == 44, "44");
        check(UpdateManager.ERROR_POSTINSTALL_TIMEOUT == 45, "45");
        check(UpdateManager.ERROR_FEED_INVALID == 15, "15");
        check(UpdateManager.ERROR_CANCELLED == 38, "38");
        check(UpdateManager.errorClass(0).equals("ok"), "class of 0");
        check(UpdateManager.errorClass(12).equals("download failed"), "class of 12");
        check(UpdateManager.errorClass(45).equals("post-check failed"), "class of 45");
        System.out.println("UpdateManagerTest: all checks passed");
    }
}
