// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** A key's algorithm (Tag.ALGORITHM). */
@VintfStability @Backing(type="int")
enum Algorithm {
    RSA = 1,
    EC = 3,
    AES = 32,
    TRIPLE_DES = 33,
    HMAC = 128,
}
