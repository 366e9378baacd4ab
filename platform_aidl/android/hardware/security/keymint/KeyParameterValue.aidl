// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

import android.hardware.security.keymint.Algorithm;
import android.hardware.security.keymint.BlockMode;
import android.hardware.security.keymint.Digest;
import android.hardware.security.keymint.EcCurve;
import android.hardware.security.keymint.HardwareAuthenticatorType;
import android.hardware.security.keymint.KeyOrigin;
import android.hardware.security.keymint.KeyPurpose;
import android.hardware.security.keymint.PaddingMode;
import android.hardware.security.keymint.SecurityLevel;

/**
 * A key parameter's value. All fifteen members, in KeyMint's order: a union's wire tag is the
 * member's index.
 */
@VintfStability
@RustDerive(Clone=true, Eq=true, Hash=true, Ord=true, PartialEq=true, PartialOrd=true)
union KeyParameterValue {
    int invalid;
    Algorithm algorithm;
    BlockMode blockMode;
    PaddingMode paddingMode;
    Digest digest;
    EcCurve ecCurve;
    KeyOrigin origin;
    KeyPurpose keyPurpose;
    HardwareAuthenticatorType hardwareAuthenticatorType;
    SecurityLevel securityLevel;
    boolean boolValue;
    int integer;
    long longInteger;
    long dateTime;
    byte[] blob;
}
