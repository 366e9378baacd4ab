/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Compile-time stand-in for the Android SDK class of the same name, declaring only
 * what AIDL-generated Java calls. Like the SDK's own android.jar stubs, every body
 * throws: these classes exist to type-check generated code, never to run it.
 */

package android.os;

public final class Parcel {
    private Parcel() {
        throw new RuntimeException("Stub!");
    }

    public static Parcel obtain() {
        throw new RuntimeException("Stub!");
    }

    public void recycle() {
        throw new RuntimeException("Stub!");
    }

    public int dataPosition() {
        throw new RuntimeException("Stub!");
    }

    public void setDataPosition(int pos) {
        throw new RuntimeException("Stub!");
    }

    public void writeInterfaceToken(String interfaceName) {
        throw new RuntimeException("Stub!");
    }

    public void enforceInterface(String interfaceName) {
        throw new RuntimeException("Stub!");
    }

    public void writeNoException() {
        throw new RuntimeException("Stub!");
    }

    public void readException() {
        throw new RuntimeException("Stub!");
    }

    public void writeInt(int val) {
        throw new RuntimeException("Stub!");
    }

    public int readInt() {
        throw new RuntimeException("Stub!");
    }

    public void writeLong(long val) {
        throw new RuntimeException("Stub!");
    }

    public long readLong() {
        throw new RuntimeException("Stub!");
    }

    public void writeFloat(float val) {
        throw new RuntimeException("Stub!");
    }

    public float readFloat() {
        throw new RuntimeException("Stub!");
    }

    public void writeString(String val) {
        throw new RuntimeException("Stub!");
    }

    public String readString() {
        throw new RuntimeException("Stub!");
    }

    public void writeStringArray(String[] val) {
        throw new RuntimeException("Stub!");
    }

    public String[] createStringArray() {
        throw new RuntimeException("Stub!");
    }

    public void writeByteArray(byte[] b) {
        throw new RuntimeException("Stub!");
    }

    public byte[] createByteArray() {
        throw new RuntimeException("Stub!");
    }

    public void writeStrongBinder(IBinder val) {
        throw new RuntimeException("Stub!");
    }

    public IBinder readStrongBinder() {
        throw new RuntimeException("Stub!");
    }

    public <T extends Parcelable> void writeTypedArray(T[] val, int parcelableFlags) {
        throw new RuntimeException("Stub!");
    }

    public <T> T[] createTypedArray(Parcelable.Creator<T> c) {
        throw new RuntimeException("Stub!");
    }
}
