#!/bin/busybox sh
# /init of the test VM (see run.sh): an A/B device with super on loop devices, updated
# through Binder and device-mapper. Loads the modules, runs each step, prints "STEP <name> PASS|FAIL" on the
# console, and powers off. /data holds what `vm_images build` made (expected.env says
# what to expect), /bin our binaries.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
# The state directory needs a file system that reports free space (rootfs may not).
mkdir -p /run/cryptsetup /data/state /etc /dev/block/by-name
mount -t tmpfs state /data/state
echo 'root:x:0:0::/:/bin/sh' > /etc/passwd
echo 'shell:x:2000:2000::/:/bin/sh' >> /etc/passwd
echo 'root:x:0:' > /etc/group
echo 'shell:x:2000:' >> /etc/group
export DM_DISABLE_UDEV=1
. /data/expected.env
BY_NAME=/dev/block/by-name
MAPPER=/dev/block/mapper
PROPS=/data/payload_properties.txt

# Steps' functions share the shell's variables: this one's are prefixed.
step() {
    step_name=$1
    shift
    # ONLY=a,b (from the kernel command line, see run.sh) runs just those steps.
    case ",${ONLY:-$step_name}," in
        *",$step_name,"*) ;;
        *) return 0 ;;
    esac
    # The leading newline keeps a kernel message from sharing the line.
    # What a step saw is shown either way: the console log is the evidence.
    if "$@" > "/tmp/$step_name.out" 2>&1; then
        printf '\n'
        sed "s/^/INFO $step_name: /" "/tmp/$step_name.out"
        printf 'STEP %s PASS\n' "$step_name"
    else
        printf '\n'
        sed "s/^/INFO $step_name: /" "/tmp/$step_name.out"
        printf 'STEP %s FAIL\n' "$step_name"
    fi
}

# Polls a command for up to $1 tenths of a second.
within() {
    tries=$1
    shift
    while ! "$@"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
    done
}

expect_exit() {
    want=$1
    shift
    "$@"
    got=$?
    echo "exit $got, expected $want"
    [ "$got" -eq "$want" ]
}

load_modules() {
    insmod /lib/modules/binder_linux.ko devices=binder,hwbinder,vndbinder &&
        insmod /lib/modules/loop.ko max_loop=16 &&
        insmod /lib/modules/reed_solomon.ko &&
        insmod /lib/modules/dm-mod.ko &&
        insmod /lib/modules/dm-zero.ko &&
        insmod /lib/modules/dm-bufio.ko &&
        insmod /lib/modules/dm-verity.ko
}

# The device-mapper adapter alone, on a scratch loop device: a linear+zero+linear table,
# written through the mapping and read back from the loop device at the mapped sectors;
# then a mapping left behind by a process that exited (as a killed run leaves one) is
# found and removed. sysfs is the independent witness of what the kernel holds.
dm_adapter() {
    truncate -s 2M /data/dm.img && losetup /dev/loop8 /data/dm.img || return 1
    node=$(vm_images dm-map probe_b "$MAPPER" linear:16:/dev/loop8:2048 zero:8 \
        linear:16:/dev/loop8:100) || { dmesg | grep device-mapper | tail -3; return 1; }
    dm=${node##*/}
    echo "probe_b at $node: $(cat "/sys/block/$dm/dm/name") $(cat "/sys/block/$dm/size") sectors"
    [ "$(readlink "$MAPPER/probe_b")" = "$node" ] &&
        [ "$(cat "/sys/block/$dm/dm/name")" = probe_b ] &&
        [ "$(cat "/sys/block/$dm/size")" = 40 ] || return 1
    vm_images dm-table probe_b > /tmp/dm.table || return 1
    cat /tmp/dm.table
    printf '0 16 linear 7:8 2048\n16 8 zero\n24 16 linear 7:8 100\n' | cmp - /tmp/dm.table ||
        return 1
    head -c 20480 /dev/urandom > /tmp/dm.pattern &&
        dd if=/tmp/dm.pattern of="$node" bs=4096 conv=fsync 2>/dev/null || return 1
    echo 3 > /proc/sys/vm/drop_caches
    # Sectors 0-15 of the mapping are loop sectors 2048-2063, 24-39 are 100-115; 16-23 read
    # as zeros and the loop device around the extents is untouched.
    dd if=/dev/loop8 bs=512 skip=2048 count=16 2>/dev/null > /tmp/dm.got1 &&
        dd if=/tmp/dm.pattern bs=512 count=16 2>/dev/null | cmp - /tmp/dm.got1 &&
        dd if=/dev/loop8 bs=512 skip=100 count=16 2>/dev/null > /tmp/dm.got2 &&
        dd if=/tmp/dm.pattern bs=512 skip=24 count=16 2>/dev/null | cmp - /tmp/dm.got2 &&
        dd if="$node" bs=512 skip=16 count=8 2>/dev/null > /tmp/dm.zero &&
        dd if=/dev/zero bs=512 count=8 2>/dev/null | cmp - /tmp/dm.zero &&
        dd if=/dev/loop8 bs=512 count=100 2>/dev/null > /tmp/dm.before &&
        dd if=/dev/zero bs=512 count=100 2>/dev/null | cmp - /tmp/dm.before || return 1
    echo "written through $node, read back from /dev/loop8 at sectors 2048 and 100"
    vm_images dm-remove "$MAPPER" probe_b || return 1
    [ ! -e "$MAPPER/probe_b" ] && [ ! -e "/sys/block/$dm" ] || return 1
    echo "probe_b removed"
    left=$(vm_images dm-map left_b "$MAPPER" zero:8) || return 1
    ours=$(vm_images dm-ours) || return 1
    echo "after an exit without unmapping: $ours"
    [ "$ours" = "left_b $(cat "/sys/block/${left##*/}/dev")" ] || return 1
    out=$(vm_images dm-cleanup "$MAPPER" left_b other_b) || return 1
    echo "$out"
    [ "$out" = "removed left_b" ] && [ -z "$(vm_images dm-ours)" ] &&
        [ ! -e "$MAPPER/left_b" ] && [ ! -e "/sys/block/${left##*/}" ] &&
        losetup -d /dev/loop8
}

binder_device() {
    [ -c /dev/binder ] && chmod 0666 /dev/binder
}

manager_serving() {
    kill -0 "$SM" 2>/dev/null && grep -q "serving on" /tmp/sm.log
}

service_manager() {
    /bin/service_manager /dev/binder > /tmp/sm.log 2>&1 &
    SM=$!
    within 100 manager_serving || { cat /tmp/sm.log; return 1; }
}

# super (system and vendor of slot A as logical partitions, slot B's empty), both vbmeta
# and misc become loop devices, named in /dev/block/by-name as on Android.
partitions() {
    truncate -s "$VBMETA_SIZE" /data/vbmeta_b.img || return 1
    n=0
    for part in super vbmeta_a vbmeta_b misc; do
        file=/data/$part.img
        losetup "/dev/loop$n" "$file" || return 1
        ln -s "/dev/loop$n" "$BY_NAME/$part" || return 1
        n=$((n + 1))
    done
    ls -l "$BY_NAME"
    cmp "$BY_NAME/super" /data/super.img || return 1
    # Metadata slot 0 (slot A's, primary copy after the reserved 4 KiB and both geometries):
    # the update must not change it.
    SLOT_A_META=$(slot_a_metadata)
}

slot_a_metadata() {
    dd if="$BY_NAME/super" bs=4096 skip=3 count=16 2>/dev/null | sha256sum
}

daemon_serving() {
    kill -0 "$DAEMON" 2>/dev/null && [ "$(grep -c "serving abupdate" /tmp/abupdated.log)" -gt "$1" ]
}

start_daemon() {
    served=$(grep -c "serving abupdate" /tmp/abupdated.log 2>/dev/null)
    abupdated --binder binder:/dev/binder --by-name "$BY_NAME" --key /data/ota-cert.pem \
        --device-mapper linux --mapper-links "$MAPPER" \
        --build-prop /data/build.prop --state-dir /data/state --allowed-uids 0 \
        >> /tmp/abupdated.log 2>&1 &
    DAEMON=$!
    within 200 daemon_serving "${served:-0}" || { cat /tmp/abupdated.log; return 1; }
}

status_call() {
    out=$(timeout 20 abupdate status) || return 1
    echo "$out"
    [ "$out" = "IDLE" ] || return 1
    out=$(timeout 20 abupdate slots) || return 1
    echo "$out"
    echo "$out" | grep -q "^_a: current=true active=true bootable=true" &&
        echo "$out" | grep -qx "rollback floors: 0=1"
}

permission_check() {
    # Root may cancel but nothing runs: busy (35). Uid 2000 is not allowed: 36.
    expect_exit 35 timeout 20 abupdate cancel &&
        expect_exit 36 timeout 20 su -s /bin/sh -c "abupdate cancel" shell &&
        expect_exit 0 timeout 20 su -s /bin/sh -c "abupdate status" shell
}

verify_payload() {
    timeout 60 abupdate verify /data/payload.bin
}

# The bytes of `done` in `abupdate status` ("DOWNLOADING 31.2% (1073516/1710773 bytes)").
status_done() {
    timeout 20 abupdate status | sed -n 's/.*(\([0-9]*\)\/.*/\1/p'
}

reached_split2() {
    [ "$(status_done)" = "$SPLIT2" ]
}

# The payload arrives through a FIFO: the metadata and the first operation, then after a
# pause (so that the engine saves a checkpoint) two more operations, then nothing. The CLI
# opens the FIFO and hands the service its descriptor (the service opens no paths for
# callers); the service is killed while it waits for more.
apply_interrupted() {
    mkfifo /tmp/payload.fifo || return 1
    {
        head -c "$SPLIT1" /data/payload.bin
        sleep 3
        tail -c +$((SPLIT1 + 1)) /data/payload.bin | head -c $((SPLIT2 - SPLIT1))
        exec sleep 600
    } > /tmp/payload.fifo &
    WRITER=$!
    timeout 60 abupdate apply --properties "$PROPS" /tmp/payload.fifo || return 1
    timeout 300 abupdate watch > /tmp/watch1.log 2>&1 &
    WATCH=$!
    within 1200 reached_split2 || { abupdate status; return 1; }
    abupdate status
    kill -9 "$DAEMON"
    wait "$DAEMON"
    kill "$WRITER"
    # The watcher notices the service is gone: 31 (device error).
    wait "$WATCH"
    code=$?
    cat /tmp/watch1.log
    echo "watch exit $code"
    # The killed service left its dm-linear mappings of the target partitions behind.
    ours=$(vm_images dm-ours)
    echo "mapped after the kill: $(echo $ours)"
    [ "$code" -eq 31 ] && echo "$ours" | grep -q "^system_b " && echo "$ours" | grep -q "^vendor_b "
}

restarted_interrupted() {
    start_daemon || return 1
    out=$(timeout 20 abupdate status) || return 1
    echo "$out"
    case "$out" in
        "INTERRUPTED 0.0%"*) return 1 ;;
        INTERRUPTED*) return 0 ;;
        *) return 1 ;;
    esac
}

# A descriptor cannot be reopened by the service, so `resume` refuses; the same payload
# applied again, now as the whole file, continues from the engine's checkpoint; `--wait`
# follows the callbacks to the end.
resume_to_the_end() {
    rm /tmp/payload.fifo || return 1
    timeout 20 abupdate resume 2>&1 | grep -q "apply it again" || return 1
    timeout 600 abupdate apply --properties "$PROPS" --wait /data/payload.bin > /tmp/watch2.log 2>&1
    code=$?
    cat /tmp/watch2.log
    echo "resume exit $code"
    grep "resuming at operation" /tmp/abupdated.log
    [ "$code" -eq 0 ] && grep -q "^DOWNLOADING" /tmp/watch2.log &&
        grep -q "^VERIFYING" /tmp/watch2.log && grep -q "^FINALIZING" /tmp/watch2.log &&
        grep -qx "UPDATED_NEED_REBOOT" /tmp/watch2.log &&
        grep -q "resuming at operation [1-9]" /tmp/abupdated.log || return 1
    # The restarted service removed the killed run's mappings before mapping anew, wrote
    # through dm-linear, and unmapped at the end.
    grep -E "left behind|mapped .*_b|unmapped" /tmp/abupdated.log
    ours=$(vm_images dm-ours) || return 1
    echo "mapped after the update: ${ours:-nothing}"
    grep -q "removing mapping system_b left behind" /tmp/abupdated.log &&
        grep -q "mapped system_b" /tmp/abupdated.log && [ -z "$ours" ] &&
        [ ! -e "$MAPPER/system_b" ]
}

# bootloader_control at misc+2048: slot_info[0] and [1] are bytes 12 and 14, priority
# in their low four bits.
priority() {
    byte=$(od -An -tu1 -j $((2048 + $1)) -N 1 "$BY_NAME/misc" | tr -d ' ')
    echo $((byte & 15))
}

slot_switched() {
    out=$(timeout 20 abupdate slots) || return 1
    echo "$out"
    a=$(priority 12)
    b=$(priority 14)
    echo "misc: priority a=$a b=$b"
    [ "$b" -eq 15 ] && [ "$a" -lt "$b" ] &&
        echo "$out" | grep -q "^_b: current=false active=true bootable=true successful=false"
}

# A simulated reboot into slot B: first-stage init maps slot B's logical partitions from
# metadata slot 1, read-only. Slot A's metadata is as it was.
reboot_maps_slot_b() {
    out=$(vm_images map-slot "$BY_NAME" b "$MAPPER") || return 1
    echo "$out"
    for name in system_b vendor_b; do
        node=$(readlink "$MAPPER/$name") || return 1
        dm=${node##*/}
        echo "$name: $(cat "/sys/block/$dm/size") sectors, ro=$(cat "/sys/block/$dm/ro")"
        [ "$(cat "/sys/block/$dm/dm/name")" = "$name" ] && [ "$(cat "/sys/block/$dm/ro")" = 1 ] ||
            return 1
    done
    [ "$(slot_a_metadata)" = "$SLOT_A_META" ] && echo "slot A's metadata unchanged"
}

# Opens partition $1 (on device $2) through dm-verity with the root digest and layout
# from its hashtree descriptor in the new vbmeta ($4, default slot B's in $BY_NAME); with
# $3 = fec, FEC from the same device.
verity_open() {
    name=$1
    dev=$2
    args=$(vm_images verity-args "${4:-$BY_NAME/vbmeta_b}" "$name") || return 1
    if [ "$3" = fec ]; then
        args="$args --fec-device=$dev"
    else
        args=${args%% --fec-offset*}
    fi
    echo "veritysetup open $dev v$name $dev $args"
    # shellcheck disable=SC2086 # the options are words
    veritysetup open "$dev" "v$name" "$dev" $args
}

verity_partition() {
    name=$1
    expected=$2
    dev=$(readlink -f "$MAPPER/${name}_b")
    verity_open "$name" "$dev" fec || return 1
    sum=$(sha256sum "/dev/mapper/v$name" | cut -d' ' -f1)
    veritysetup close "v$name"
    echo "read end to end: $sum"
    [ "$sum" = "$expected" ]
}

verity_system() { verity_partition system "$SYSTEM_DATA_SHA"; }
verity_vendor() { verity_partition vendor "$VENDOR_DATA_SHA"; }

# A copy of the written system partition with one data block corrupted.
corrupt_copy() {
    dd if="$MAPPER/system_b" of=/data/system_bad.img bs=4096 2>/dev/null &&
        printf 'corrupted block!' |
        dd of=/data/system_bad.img bs=1 seek=$((3 * 4096 + 100)) conv=notrunc 2>/dev/null &&
        losetup /dev/loop7 /data/system_bad.img
}

verity_corrupt_eio() {
    corrupt_copy || return 1
    verity_open system /dev/loop7 || return 1
    if dd if=/dev/mapper/vsystem of=/dev/null bs=4096 2>/tmp/dd.err; then
        echo "read the corrupted partition without error"
        veritysetup close vsystem
        return 1
    fi
    cat /tmp/dd.err
    veritysetup close vsystem
    dmesg | grep -i "verity" | tail -5
    grep -q "Input/output error" /tmp/dd.err && dmesg | grep -q "data block 3 is corrupted"
}

verity_fec_corrects() {
    verity_open system /dev/loop7 fec || return 1
    sum=$(sha256sum /dev/mapper/vsystem | cut -d' ' -f1)
    veritysetup close vsystem
    dmesg | grep "verity-fec" | tail -3
    [ "$sum" = "$SYSTEM_DATA_SHA" ] && dmesg | grep -q "FEC.*corrected"
}

# --- update_engine's face: android.os.UpdateEngineService through update_engine_client's
# command line (abupdate behind a link of that name: a client generated from
# aidl/android/os/IUpdateEngine.aidl, using update_engine's transaction numbers). ---
UE_HEADERS=
ue_serving() {
    kill -0 "$DAEMON" 2>/dev/null && grep -q "serving abupdate, android.os.UpdateEngineService" /tmp/abupdated.log
}

# The daemon again, now also as update_engine; the last update forgotten (slot A active).
ue_daemon() {
    ln -sf abupdate /bin/update_engine_client || return 1
    kill "$DAEMON" 2>/dev/null
    wait "$DAEMON" 2>/dev/null
    abupdated --update-engine-compat --binder binder:/dev/binder --by-name "$BY_NAME" \
        --key /data/ota-cert.pem --device-mapper linux --mapper-links "$MAPPER" \
        --build-prop /data/build.prop --state-dir /data/state --allowed-uids 0 \
        >> /tmp/abupdated.log 2>&1 &
    DAEMON=$!
    within 200 ue_serving || { tail -5 /tmp/abupdated.log; return 1; }
    grep "serving abupdate, android.os" /tmp/abupdated.log | tail -1
    timeout 20 update_engine_client --reset_status
}

# update_device.py's line: --update --follow, headers one per line; statuses 3 4 5 6, code 0.
ue_full_update() {
    UE_HEADERS=$(cat "$PROPS")
    timeout 300 update_engine_client --update --follow --payload=file:///data/payload.bin \
        "--headers=$UE_HEADERS" > /tmp/ue1.log 2>&1
    code=$?
    grep -v "DOWNLOADING (3), 0\.[0-9]*[1-9]" /tmp/ue1.log
    echo "exit $code"
    [ "$code" -eq 0 ] && grep -q "onStatusUpdate(DOWNLOADING (3)" /tmp/ue1.log &&
        grep -q "onStatusUpdate(VERIFYING (4)" /tmp/ue1.log &&
        grep -q "onStatusUpdate(FINALIZING (5)" /tmp/ue1.log &&
        grep -q "onStatusUpdate(UPDATED_NEED_REBOOT (6), 1)" /tmp/ue1.log &&
        grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/ue1.log &&
        [ "$(priority 14)" -eq 15 ]
}

# Applied and waiting for the reboot: another applyPayload is refused with 66.
ue_already_installed() {
    timeout 20 update_engine_client --update --payload=file:///data/payload.bin \
        "--headers=$UE_HEADERS" > /tmp/ue2.log 2>&1
    code=$?
    cat /tmp/ue2.log
    [ "$code" -eq 1 ] && grep -q "kUpdateAlreadyInstalled (66)" /tmp/ue2.log &&
        timeout 20 update_engine_client --reset_status
}

ue_downloading() {
    grep -q "onStatusUpdate(DOWNLOADING (3)" /tmp/ue3.log
}

# A payload trickling through a FIFO: suspend and resume answer 0, cancel ends the followed
# update with 48 (kUserCanceled); resetStatus then forgets its resume point.
ue_suspend_cancel() {
    mkfifo /tmp/ue.fifo || return 1
    {
        n=0
        while dd if=/data/payload.bin bs=65536 skip=$n count=1 2>/dev/null | grep -q . ; do
            dd if=/data/payload.bin bs=65536 skip=$n count=1 2>/dev/null
            n=$((n + 1))
            sleep 0.3
        done
    } > /tmp/ue.fifo &
    UE_WRITER=$!
    timeout 120 update_engine_client --update --follow --payload=file:///tmp/ue.fifo \
        "--headers=$UE_HEADERS" > /tmp/ue3.log 2>&1 &
    follower=$!
    within 600 ue_downloading || { cat /tmp/ue3.log; return 1; }
    expect_exit 0 timeout 20 update_engine_client --suspend &&
        expect_exit 0 timeout 20 update_engine_client --resume &&
        expect_exit 0 timeout 20 update_engine_client --cancel || return 1
    wait "$follower"
    code=$?
    kill "$UE_WRITER" 2>/dev/null
    grep -v "DOWNLOADING (3), 0\.[0-9]*[1-9]" /tmp/ue3.log
    echo "follower exit $code"
    [ "$code" -eq 1 ] && grep -q "onPayloadApplicationComplete(kUserCanceled (48))" /tmp/ue3.log &&
        timeout 20 update_engine_client --reset_status
}

# The last byte of the first operation's data changed: its hash does not match, 29
# (kDownloadOperationHashMismatch, from our 24), before anything is written.
ue_bad_payload() {
    cp /data/payload.bin /tmp/bad.bin || return 1
    byte=$(od -An -tu1 -j $((SPLIT1 - 1)) -N 1 /tmp/bad.bin | tr -d ' ')
    # shellcheck disable=SC2059 # the format is the flipped byte, in octal
    printf "\\$(printf %o $((byte ^ 255)))" |
        dd of=/tmp/bad.bin bs=1 seek=$((SPLIT1 - 1)) conv=notrunc 2>/dev/null
    cmp -l /data/payload.bin /tmp/bad.bin
    timeout 300 update_engine_client --update --follow --payload=file:///tmp/bad.bin \
        "--headers=$UE_HEADERS" > /tmp/ue4.log 2>&1
    code=$?
    grep -v "DOWNLOADING (3), 0\.[0-9]*[1-9]" /tmp/ue4.log
    echo "exit $code"
    [ "$code" -eq 1 ] && grep -q "onPayloadApplicationComplete(kDownloadOperationHashMismatch (29))" /tmp/ue4.log
}

# The stable service's applyPayloadFd (the descriptor opened by the client), to the end.
ue_stable_fd() {
    timeout 300 update_engine_client --stable --update --follow --payload=/data/payload.bin \
        "--headers=$UE_HEADERS" > /tmp/ue5.log 2>&1
    code=$?
    grep -v "DOWNLOADING (3), 0\.[0-9]*[1-9]" /tmp/ue5.log
    echo "exit $code"
    [ "$code" -eq 0 ] && grep -q "onStatusUpdate(UPDATED_NEED_REBOOT (6), 1)" /tmp/ue5.log &&
        grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/ue5.log
}

# cleanupSuccessfulUpdate: CLEANUP_PREVIOUS_UPDATE (11) at 0 until sys.boot_completed=1, then
# to the end with 0 (slot A, running, is marked successful).
ue_cleanup_waiting() {
    grep -q "CLEANUP_PREVIOUS_UPDATE (11), 0)" /tmp/ue6.log
}

ue_merge() {
    timeout 120 update_engine_client --merge > /tmp/ue6.log 2>&1 &
    merger=$!
    within 300 ue_cleanup_waiting || { cat /tmp/ue6.log; return 1; }
    sleep 1
    if grep -q onPayloadApplicationComplete /tmp/ue6.log; then
        cat /tmp/ue6.log
        echo "completed before sys.boot_completed"
        return 1
    fi
    echo "sys.boot_completed=1" >> /data/build.prop
    wait "$merger"
    code=$?
    cat /tmp/ue6.log
    echo "exit $code"
    [ "$code" -eq 0 ] && grep -q "CLEANUP_PREVIOUS_UPDATE (11), 1)" /tmp/ue6.log &&
        grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/ue6.log
}

step modules load_modules
step dm-adapter dm_adapter
step binder-device binder_device
step service-manager service_manager
step partitions partitions
step daemon-registered start_daemon
step status-call status_call
step permission-check permission_check
step verify verify_payload
step apply-interrupted apply_interrupted
step restarted-interrupted restarted_interrupted
step resume-to-the-end resume_to_the_end
step slot-switched slot_switched
step reboot-maps-slot-b reboot_maps_slot_b
step verity-system verity_system
step verity-vendor verity_vendor
step verity-corrupt-eio verity_corrupt_eio
step verity-fec-corrects verity_fec_corrects
# The update_engine steps print how long they took (TCG is slow: the budget is ~30 s).
timed() {
    t0=$(date +%s)
    "$@"
    rc=$?
    echo "took $(( $(date +%s) - t0 ))s"
    return $rc
}
step ue-daemon timed ue_daemon
step ue-full-update timed ue_full_update
step ue-already-installed timed ue_already_installed
step ue-suspend-cancel timed ue_suspend_cancel
step ue-bad-payload timed ue_bad_payload
step ue-stable-fd timed ue_stable_fd
step ue-merge timed ue_merge
. /vab.sh
run_vab_steps
. /vab_collapse.sh
run_vab_collapse_steps
. /postinstall.sh
run_postinstall_steps
. /vab_data.sh
run_vab_data_steps
. /vab_postinstall.sh
run_vab_postinstall_steps
printf '\nALL STEPS DONE\n'
poweroff -f
