// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md. Every method, in AOSP's order: the transaction
// code is FIRST_CALL_TRANSACTION plus the method's index.
package android.gsi;

import android.gsi.AvbPublicKey;
import android.gsi.IProgressCallback;
import android.gsi.MappedImage;

/** The images of one directory ("ota/" for Virtual A/B's COW images), made and mapped by gsid. */
interface IImageService {
    /* createBackingImage's flags (libfiemap's ImageManager ones). */
    const int CREATE_IMAGE_DEFAULT = 0x0;
    const int CREATE_IMAGE_READONLY = 0x1;
    const int CREATE_IMAGE_ZERO_FILL = 0x2;

    const int IMAGE_OK = 0;
    const int IMAGE_ERROR = 1;

    /* Errors are service-specific with libfiemap's FiemapStatus code (-ENOSPC: no room). */
    void createBackingImage(@utf8InCpp String name, long size, int flags,
                            @nullable IProgressCallback on_progress);
    void deleteBackingImage(@utf8InCpp String name);
    void mapImageDevice(@utf8InCpp String name, int timeout_ms, out MappedImage mapping);
    void unmapImageDevice(@utf8InCpp String name);
    boolean backingImageExists(@utf8InCpp String name);
    boolean isImageMapped(@utf8InCpp String name);
    int getAvbPublicKey(@utf8InCpp String name, out AvbPublicKey dst);
    @utf8InCpp List<String> getAllBackingImages();
    void zeroFillNewImage(@utf8InCpp String name, long bytes);
    void removeAllImages();
    void disableImage(@utf8InCpp String name);
    void removeDisabledImages();
    boolean isImageDisabled(@utf8InCpp String name);
    @utf8InCpp String getMappedImageDevice(@utf8InCpp String name);
}
