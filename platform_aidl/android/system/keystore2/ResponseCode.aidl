// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

/**
 * keystore2's own service-specific error codes (KeyMint's ErrorCode values, negative, pass
 * through as they are). The ones up to OUT_OF_KEYS; V4 has a few more.
 */
@VintfStability @Backing(type="int")
enum ResponseCode {
    LOCKED = 2,
    UNINITIALIZED = 3,
    SYSTEM_ERROR = 4,
    PERMISSION_DENIED = 6,
    KEY_NOT_FOUND = 7,
    VALUE_CORRUPTED = 8,
    KEY_PERMANENTLY_INVALIDATED = 17,
    BACKEND_BUSY = 18,
    OPERATION_BUSY = 19,
    INVALID_ARGUMENT = 20,
    TOO_MUCH_DATA = 21,
    OUT_OF_KEYS = 22,
}
