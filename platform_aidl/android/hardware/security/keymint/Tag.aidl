// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

/**
 * A key parameter's tag: its TagType in the top four bits (ENUM 1, ENUM_REP 2, DATE 6, BOOL 7),
 * its number below. Only the tags abupdate's device key uses; KeyMint has many more.
 */
@VintfStability @Backing(type="int")
enum Tag {
    INVALID = 0,
    /** ENUM_REP | 1 */
    PURPOSE = 0x20000001,
    /** ENUM | 2 */
    ALGORITHM = 0x10000002,
    /** ENUM_REP | 5 */
    DIGEST = 0x20000005,
    /** ENUM | 10 */
    EC_CURVE = 0x1000000A,
    /** BOOL | 503 */
    NO_AUTH_REQUIRED = 0x700001F7,
    /** DATE | 1008 */
    CERTIFICATE_NOT_BEFORE = 0x600003F0,
    /** DATE | 1009 */
    CERTIFICATE_NOT_AFTER = 0x600003F1,
}
