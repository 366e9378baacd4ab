// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md.
package android.gsi;

/** Where a mapped image is: its block device. */
parcelable MappedImage {
    @utf8InCpp String path;
}
