// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md.
package android.gsi;

/** An AVB public key gsid reads from an image (unused by abupdate; here for the wire). */
parcelable AvbPublicKey {
    byte[] bytes;
    byte[] sha1;
}
