/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Compile-time stand-in for the Android SDK class of the same name, declaring only
 * what AIDL-generated Java calls. Like the SDK's own android.jar stubs, every body
 * throws: these classes exist to type-check generated code, never to run it.
 */

package android.os;

public class Binder implements IBinder {
    public Binder() {
        throw new RuntimeException("Stub!");
    }

    public void attachInterface(IInterface owner, String descriptor) {
        throw new RuntimeException("Stub!");
    }

    @Override
    public IInterface queryLocalInterface(String descriptor) {
        throw new RuntimeException("Stub!");
    }

    @Override
    public final boolean transact(int code, Parcel data, Parcel reply, int flags)
            throws RemoteException {
        throw new RuntimeException("Stub!");
    }

    protected boolean onTransact(int code, Parcel data, Parcel reply, int flags)
            throws RemoteException {
        throw new RuntimeException("Stub!");
    }
}
