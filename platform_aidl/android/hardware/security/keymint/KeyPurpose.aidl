// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** What a key may do (Tag.PURPOSE). */
@VintfStability @Backing(type="int")
enum KeyPurpose {
    ENCRYPT = 0,
    DECRYPT = 1,
    SIGN = 2,
    VERIFY = 3,
    WRAP_KEY = 5,
    AGREE_KEY = 6,
    ATTEST_KEY = 7,
}
