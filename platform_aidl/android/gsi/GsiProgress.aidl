// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md.
package android.gsi;

/** A DSU installation's progress (unused by abupdate; here for the wire). */
parcelable GsiProgress {
    @utf8InCpp String step;
    int status;
    long bytes_processed;
    long total_bytes;
}
