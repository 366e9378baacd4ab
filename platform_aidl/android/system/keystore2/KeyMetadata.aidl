// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.hardware.security.keymint.SecurityLevel;
import android.system.keystore2.Authorization;
import android.system.keystore2.KeyDescriptor;

/** What keystore2 tells about a key: never its private part. */
@VintfStability
parcelable KeyMetadata {
    KeyDescriptor key;
    SecurityLevel keySecurityLevel = SecurityLevel.SOFTWARE;
    Authorization[] authorizations;
    /** The key's certificate (DER), which holds its public key. */
    @nullable byte[] certificate;
    @nullable byte[] certificateChain;
    long modificationTimeMs;
}
