// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md.
package android.gsi;

/** The answer of gsid's asynchronous DSU calls (unused by abupdate; here for the wire). */
oneway interface IGsiServiceCallback {
    void onResult(int result);
}
