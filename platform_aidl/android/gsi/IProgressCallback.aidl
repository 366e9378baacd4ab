// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md.
package android.gsi;

/** Progress of an image's creation. */
interface IProgressCallback {
    void onProgress(long current, long total);
}
