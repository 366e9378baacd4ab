// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.system.keystore2.IKeystoreSecurityLevel;
import android.system.keystore2.KeyMetadata;

/** getKeyEntry's answer: the key's security level (to operate on it) and its metadata. */
@VintfStability
parcelable KeyEntryResponse {
    @nullable IKeystoreSecurityLevel iSecurityLevel;
    KeyMetadata metadata;
}
