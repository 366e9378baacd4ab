// Host stand-in for AOSP hardware/interfaces/security/keymint/aidl (android.hardware.security.keymint
// V3, Android 15), written for abupdate from its names and values: see platform_aidl/README.md.
package android.hardware.security.keymint;

import android.hardware.security.keymint.KeyParameterValue;
import android.hardware.security.keymint.Tag;

/** One key parameter: a tag and its value. */
@VintfStability
@RustDerive(Clone=true, Eq=true, Hash=true, Ord=true, PartialEq=true, PartialOrd=true)
parcelable KeyParameter {
    Tag tag = Tag.INVALID;
    KeyParameterValue value;
}
