// Host stand-in for AOSP system/hardware/interfaces/keystore2/aidl (android.system.keystore2 V4,
// Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.system.keystore2;

import android.hardware.security.keymint.SecurityLevel;
import android.system.keystore2.Domain;
import android.system.keystore2.IKeystoreSecurityLevel;
import android.system.keystore2.KeyDescriptor;
import android.system.keystore2.KeyEntryResponse;

/**
 * keystore2's service (android.system.keystore2.IKeystoreService/default). Every method of V4
 * (Android 14 and 15), in AOSP's order (transaction codes follow it).
 */
@VintfStability
interface IKeystoreService {
    IKeystoreSecurityLevel getSecurityLevel(in SecurityLevel securityLevel);
    KeyEntryResponse getKeyEntry(in KeyDescriptor key);
    void updateSubcomponent(in KeyDescriptor key, in @nullable byte[] publicCert,
            in @nullable byte[] certificateChain);
    KeyDescriptor[] listEntries(in Domain domain, in long nspace);
    void deleteKey(in KeyDescriptor key);
    KeyDescriptor grant(in KeyDescriptor key, in int granteeUid, in int accessVector);
    void ungrant(in KeyDescriptor key, in int granteeUid);
    int getNumberOfEntries(in Domain domain, in long nspace);
    KeyDescriptor[] listEntriesBatched(in Domain domain, in long nspace,
            in @nullable String startingPastAlias);
}
