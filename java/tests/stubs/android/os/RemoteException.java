/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Runnable in-process stand-in for the Android class of the same name, for the client test
 * on a JVM: it does what an in-process Binder does (a local interface, death recipients) and
 * nothing else. Methods without an SDK counterpart are marked "test only".
 */

package android.os;

public class RemoteException extends Exception {
    private static final long serialVersionUID = 1L;

    public RemoteException() {
        super();
    }

    public RemoteException(String message) {
        super(message);
    }
}
