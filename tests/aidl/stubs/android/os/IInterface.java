/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Compile-time stand-in for the Android SDK class of the same name, declaring only
 * what AIDL-generated Java calls. Like the SDK's own android.jar stubs, every body
 * throws: these classes exist to type-check generated code, never to run it.
 */

package android.os;

public interface IInterface {
    IBinder asBinder();
}
