// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.hardware.security.keymint.HardwareAuthenticatorType;

/** An authenticator of a wrapped key being imported. */
@VintfStability
parcelable AuthenticatorSpec {
    HardwareAuthenticatorType authenticatorType = HardwareAuthenticatorType.NONE;
    long authenticatorId;
}
