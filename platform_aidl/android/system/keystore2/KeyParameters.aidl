// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.hardware.security.keymint.KeyParameter;

/** A list of key parameters. */
@VintfStability
parcelable KeyParameters {
    KeyParameter[] keyParameter;
}
