// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.hardware.security.keymint.KeyParameter;
import android.system.keystore2.AuthenticatorSpec;
import android.system.keystore2.CreateOperationResponse;
import android.system.keystore2.EphemeralStorageKeyResponse;
import android.system.keystore2.KeyDescriptor;
import android.system.keystore2.KeyMetadata;

/**
 * A security level (TEE, StrongBox) of keystore2. Every method of the interface, in AOSP's order
 * (transaction codes follow it).
 */
@SensitiveData @VintfStability
interface IKeystoreSecurityLevel {
    const int KEY_FLAG_AUTH_BOUND_WITHOUT_CRYPTOGRAPHIC_LSKF_BINDING = 0x1;

    CreateOperationResponse createOperation(in KeyDescriptor key,
            in KeyParameter[] operationParameters, in boolean forced);
    KeyMetadata generateKey(in KeyDescriptor key, in @nullable KeyDescriptor attestationKey,
            in KeyParameter[] params, in int flags, in byte[] entropy);
    KeyMetadata importKey(in KeyDescriptor key, in @nullable KeyDescriptor attestationKey,
            in KeyParameter[] params, in int flags, in byte[] keyData);
    KeyMetadata importWrappedKey(in KeyDescriptor key, in KeyDescriptor wrappingKey,
            in @nullable byte[] maskingKey, in KeyParameter[] params,
            in AuthenticatorSpec[] authenticators);
    EphemeralStorageKeyResponse convertStorageKeyToEphemeral(in KeyDescriptor storageKey);
    void deleteKey(in KeyDescriptor key);
}
