// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

/**
 * One operation on a key. Every method of the interface, in AOSP's order (transaction codes
 * follow it).
 */
@SensitiveData @VintfStability
interface IKeystoreOperation {
    void updateAad(in byte[] aadInput);
    @nullable byte[] update(in byte[] input);
    /** For AGREE_KEY: input is the peer's SubjectPublicKeyInfo (DER), the answer the secret. */
    @nullable byte[] finish(in @nullable byte[] input, in @nullable byte[] signature);
    void abort();
}
