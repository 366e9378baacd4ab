// abupdate's copy of the facts of AOSP system/gsid aidl/android/gsi (android-15.0.0_r1), for
// host builds: see platform_aidl/README.md. Every method, in AOSP's order: the transaction
// code is FIRST_CALL_TRANSACTION plus the method's index. abupdate calls openImageService only.
package android.gsi;

import android.gsi.AvbPublicKey;
import android.gsi.GsiProgress;
import android.gsi.IGsiServiceCallback;
import android.gsi.IImageService;
import android.os.ParcelFileDescriptor;

/** gsid's service, "gsiservice". */
interface IGsiService {
    const int STATUS_NO_OPERATION = 0;
    const int STATUS_WORKING = 1;
    const int STATUS_COMPLETE = 2;

    const int INSTALL_OK = 0;
    const int INSTALL_ERROR_GENERIC = 1;
    const int INSTALL_ERROR_NO_SPACE = 2;
    const int INSTALL_ERROR_FILE_SYSTEM_CLUTTERED = 3;

    boolean commitGsiChunkFromStream(in ParcelFileDescriptor stream, long bytes);
    GsiProgress getInstallProgress();
    boolean setGsiAshmem(in ParcelFileDescriptor stream, long size);
    boolean commitGsiChunkFromAshmem(long bytes);
    int enableGsi(boolean oneShot, @utf8InCpp String dsuSlot);
    @SuppressWarnings(value={"mixed-oneway"})
    oneway void enableGsiAsync(boolean oneShot, @utf8InCpp String dsuSlot, IGsiServiceCallback result);
    boolean isGsiEnabled();
    boolean cancelGsiInstall();
    boolean isGsiInstallInProgress();
    boolean removeGsi();
    @SuppressWarnings(value={"mixed-oneway"})
    oneway void removeGsiAsync(IGsiServiceCallback result);
    boolean disableGsi();
    boolean isGsiInstalled();
    boolean isGsiRunning();
    @utf8InCpp String getActiveDsuSlot();
    @utf8InCpp String getInstalledGsiImageDir();
    @utf8InCpp List<String> getInstalledDsuSlots();
    int openInstall(in @utf8InCpp String installDir);
    int closeInstall();
    int createPartition(in @utf8InCpp String name, long size, boolean readOnly);
    int closePartition();
    int zeroPartition(in @utf8InCpp String name);
    IImageService openImageService(@utf8InCpp String prefix);
    @utf8InCpp String dumpDeviceMapperDevices();
    int getAvbPublicKey(out AvbPublicKey dst);
    long suggestScratchSize();
}
