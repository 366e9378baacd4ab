// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

/** How a KeyDescriptor names its key. */
@VintfStability @Backing(type="int")
enum Domain {
    APP = 0,
    GRANT = 1,
    /** nspace is a keystore2 SELinux namespace (keystore2_key_contexts). */
    SELINUX = 2,
    BLOB = 3,
    /** nspace is keystore2's key id: what generateKey and getKeyEntry answer. */
    KEY_ID = 4,
}
