/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Runnable in-process stand-in for the Android class of the same name, for the client test
 * on a JVM: it does what an in-process Binder does (a local interface, death recipients) and
 * nothing else. Methods without an SDK counterpart are marked "test only".
 */

package android.os;

/** The platform's hidden service registry; no service runs on a JVM. */
public final class ServiceManager {
    private ServiceManager() {}

    public static IBinder getService(String name) {
        return null;
    }
}
