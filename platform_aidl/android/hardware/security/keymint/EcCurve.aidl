// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** An EC key's curve (Tag.EC_CURVE); CURVE_25519 is X25519 for AGREE_KEY keys. */
@VintfStability @Backing(type="int")
enum EcCurve {
    P_224 = 0,
    P_256 = 1,
    P_384 = 2,
    P_521 = 3,
    CURVE_25519 = 4,
}
