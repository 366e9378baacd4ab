/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Compile-time stand-in for the Android SDK class of the same name, declaring only
 * what AIDL-generated Java calls. Like the SDK's own android.jar stubs, every body
 * throws: these classes exist to type-check generated code, never to run it.
 */

package android.os;

public interface IBinder {
    int FIRST_CALL_TRANSACTION = 0x00000001;
    int LAST_CALL_TRANSACTION = 0x00ffffff;
    int INTERFACE_TRANSACTION = ('_' << 24) | ('N' << 16) | ('T' << 8) | 'F';
    int FLAG_ONEWAY = 0x00000001;

    IInterface queryLocalInterface(String descriptor);

    boolean transact(int code, Parcel data, Parcel reply, int flags) throws RemoteException;
}
