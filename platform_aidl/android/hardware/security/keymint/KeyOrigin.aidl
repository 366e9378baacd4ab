// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** Where a key came from (Tag.ORIGIN). */
@VintfStability @Backing(type="int")
enum KeyOrigin {
    GENERATED = 0,
    DERIVED = 1,
    IMPORTED = 2,
    RESERVED = 3,
    SECURELY_IMPORTED = 4,
}
