// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.system.keystore2.IKeystoreOperation;
import android.system.keystore2.KeyParameters;
import android.system.keystore2.OperationChallenge;

/** createOperation's answer: the operation, and what the caller may need for it. */
@VintfStability
parcelable CreateOperationResponse {
    IKeystoreOperation iOperation;
    @nullable OperationChallenge operationChallenge;
    @nullable KeyParameters parameters;
    @nullable byte[] upgradedBlob;
}
