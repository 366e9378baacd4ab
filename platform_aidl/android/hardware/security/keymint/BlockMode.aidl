// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** A block cipher mode (Tag.BLOCK_MODE). */
@VintfStability @Backing(type="int")
enum BlockMode {
    ECB = 1,
    CBC = 2,
    CTR = 3,
    GCM = 32,
}
