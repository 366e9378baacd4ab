// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.system.keystore2.Domain;

/** Names a key: by alias in a domain and namespace, by key id, or as a blob. */
@VintfStability
@RustDerive(Clone=true, Eq=true, Ord=true, PartialEq=true, PartialOrd=true)
parcelable KeyDescriptor {
    Domain domain = Domain.APP;
    long nspace;
    @nullable String alias;
    @nullable byte[] blob;
}
