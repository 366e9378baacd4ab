// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** Where a key lives. */
@VintfStability @Backing(type="int")
enum SecurityLevel {
    SOFTWARE = 0,
    TRUSTED_ENVIRONMENT = 1,
    STRONGBOX = 2,
    KEYSTORE = 100,
}
