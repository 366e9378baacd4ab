// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/** Who authenticates the user for a key. */
@VintfStability @Backing(type="int")
enum HardwareAuthenticatorType {
    NONE = 0,
    PASSWORD = 1,
    FINGERPRINT = 2,
    ANY = 0xFFFFFFFF,
}
