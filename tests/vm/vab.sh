# Virtual A/B steps of the VM test, sourced by init.sh (its step/within/expect_exit helpers,
# verity_open and expected.env). /data/vab is a Virtual A/B device (examples/vm_images.rs):
# slot A (build 1) in a super with the VIRTUAL_AB_DEVICE flag, vbmeta_a, misc, and a signed
# delta payload to build 2 with compressed snapshots (COW v3, lz4, 64 KiB); its partitions are
# loop devices named in /dev/block/vab/by-name, /metadata (libsnapshot's /metadata/ota) is a
# tmpfs. abupdated serves it, also as update_engine, and the payload is applied through
# Binder: the service writes each partition as a COW into a `<name>_b-cow` partition carved
# from super's free space (through dm-linear mappings) and libsnapshot's state. AOSP's lpdump
# reads the target metadata and AOSP's inspect_cow each COW in the VM. The new slot is then
# read as snapuserd would serve it: base extents plus the COW partition, both mapped from slot
# B's metadata, served by `abupdate cow serve` through the kernel's nbd driver, opened with
# dm-verity and the new vbmeta's root digest. A reboot into slot B (the service restarted as
# slot B's), mark-successful and `update_engine_client --merge` merge the snapshots through the
# service, killed (SIGKILL) mid-merge and restarted to resume; then slot B's partitions are
# build 2's, the COW partitions, the state and misc's merge status gone, and the service left
# no mapping behind. Before the reboot, a bootloader fallback to slot A (vab-rollback) cancels the
# update with slot A untouched, and the update is applied again (vab-reapply).

VAB=/data/vab
VAB_BY_NAME=/dev/block/vab/by-name
VAB_LINKS=/dev/block/vab/mapper
OTA=/metadata/ota

vab_step() {
    vab_t=$(date +%s)
    step "$@"
    printf 'INFO %s took %ss\n' "$1" "$(($(date +%s) - vab_t))"
}

vab_serving() {
    kill -0 "$DAEMON" 2>/dev/null &&
        [ "$(grep -c "serving abupdate, android.os" /tmp/vab-abupdated.log)" -gt "$1" ]
}

# abupdated over the Virtual A/B device (its arguments added), replacing the running one.
vab_start_daemon() {
    if [ -n "${DAEMON:-}" ]; then
        kill "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
    fi
    served=$(grep -c "serving abupdate, android.os" /tmp/vab-abupdated.log 2>/dev/null)
    abupdated --update-engine-compat --binder binder:/dev/binder --by-name "$VAB_BY_NAME" \
        --key /data/ota-cert.pem --device-mapper linux --mapper-links "$VAB_LINKS" \
        --build-prop "$VAB/build.prop" --state-dir /data/vab-state --allowed-uids 0 "$@" \
        >> /tmp/vab-abupdated.log 2>&1 &
    DAEMON=$!
    within 200 vab_serving "${served:-0}" || { tail -5 /tmp/vab-abupdated.log; return 1; }
}

# The mappings the service made (its dm uuid prefix) that are still there.
vab_no_mappings() {
    ours=$(vm_images dm-ours) || return 1
    echo "mapped by the service: ${ours:-nothing}"
    [ -z "$ours" ]
}

# AOSP's lpdump's block of partition $2 in its dump $1.
lp_block() {
    sed -n "/Name: $2\$/,/------/p" "$1"
}

vab_device() {
    insmod /lib/modules/nbd.ko nbds_max=1 max_part=0 || return 1
    ln -sf abupdate /bin/update_engine_client || return 1
    mkdir -p /metadata "$VAB_BY_NAME" "$VAB_LINKS" /data/vab-state &&
        mount -t tmpfs metadata /metadata && mkdir -p "$OTA" &&
        mount -t tmpfs vabstate /data/vab-state || return 1
    truncate -s "$VBMETA_SIZE" "$VAB/vbmeta_b.img" || return 1
    for part in super vbmeta_a vbmeta_b misc; do
        dev=$(losetup -f) && losetup "$dev" "$VAB/$part.img" &&
            ln -s "$dev" "$VAB_BY_NAME/$part" || return 1
    done
    ls -l "$VAB_BY_NAME"
    lpdump --slot=0 "$VAB_BY_NAME/super" > /tmp/lpdump0 || return 1
    grep -i "flags" /tmp/lpdump0
    grep -q "virtual_ab_device" /tmp/lpdump0 || return 1
    vab_start_daemon
}

# Through Binder, update_engine_client's line: statuses to UPDATED_NEED_REBOOT, code 0.
vab_apply() {
    # Each status line with the seconds since the start.
    t0=$(date +%s)
    {
        timeout 300 update_engine_client --update --follow --payload="file://$VAB/payload.bin" \
            "--headers=$(cat "$VAB/payload_properties.txt")" 2>&1
        echo "$?" > /tmp/vab-apply.rc
    } | while read -r line; do echo "$(($(date +%s) - t0))s $line"; done > /tmp/vab-apply.log
    code=$(cat /tmp/vab-apply.rc)
    grep -v "DOWNLOADING (3), 0\.[0-9]*[1-9]" /tmp/vab-apply.log
    echo "exit $code"
    grep -iE "snapshot|cow" /tmp/vab-abupdated.log
    [ "$code" -eq 0 ] && grep -q "onStatusUpdate(UPDATED_NEED_REBOOT (6), 1)" /tmp/vab-apply.log &&
        grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vab-apply.log &&
        grep -q "snapshot" /tmp/vab-abupdated.log
}

# What the update left for first-stage init: slot B's metadata (lpdump) with each partition
# UPDATED on slot A's extents and a `-cow` partition in the cow group; libsnapshot's state
# Unverified with snapshot-boot _a and one status per snapshot; misc SNAPSHOTTED (2) from
# slot A; each COW accepted by AOSP's inspect_cow with a consistent merge sequence; no
# mapping left; slot B active.
vab_snapshots() {
    lpdump --slot=1 "$VAB_BY_NAME/super" > /tmp/lpdump1 || return 1
    lpdump --slot=0 "$VAB_BY_NAME/super" > /tmp/lpdump0b || return 1
    for name in system vendor; do
        lp_block /tmp/lpdump1 "${name}_b"
        lp_block /tmp/lpdump1 "${name}_b-cow"
        lp_block /tmp/lpdump1 "${name}_b" | grep -q "Attributes: readonly,updated" &&
            lp_block /tmp/lpdump1 "${name}_b-cow" | grep -q "Group: cow" || return 1
        # The base: slot A's first extent.
        a=$(lp_block /tmp/lpdump0b "${name}_a" | grep -m1 "linear super")
        b=$(lp_block /tmp/lpdump1 "${name}_b" | grep -m1 "linear super")
        [ -n "$a" ] && [ "$a" = "$b" ] || { echo "$name: $a vs $b"; return 1; }
    done
    vm_images vab-state "$OTA" "$VAB_BY_NAME/misc" > /tmp/vab-state || return 1
    cat /tmp/vab-state
    grep -qx "state: Unverified" /tmp/vab-state && grep -qx "snapshot-boot: _a" /tmp/vab-state &&
        grep -q "^snapshot system_b: device_size=$SYSTEM_SIZE " /tmp/vab-state &&
        grep -q "^snapshot vendor_b: device_size=$VENDOR_SIZE " /tmp/vab-state &&
        grep -qx "misc: merge_status=2 source_slot=0" /tmp/vab-state || return 1
    vab_no_mappings || return 1
    # Mapped read-only until the next step has served them.
    vm_images map-partitions "$VAB_BY_NAME" b "$VAB_LINKS" system_b-cow vendor_b-cow || return 1
    # The moved run's blocks are copies, in a merge sequence (the payload's merge operations).
    abupdate cow info "$VAB_LINKS/system_b-cow" > /tmp/cow.info || return 1
    grep -E "^(ops|sequence)" /tmp/cow.info
    grep -q "^ops: *copy=[1-9]" /tmp/cow.info && grep -q "^sequence: *[1-9]" /tmp/cow.info ||
        return 1
    for name in system vendor; do
        inspect_cow --verify_merge_sequence "$VAB_LINKS/${name}_b-cow" > "/tmp/inspect-$name" 2>&1
        code=$?
        grep -iE "^(Header|Ops|Merge|Compression)|consistent" "/tmp/inspect-$name" | head -8
        [ "$code" -eq 0 ] && grep -q "Merge sequence is consistent." "/tmp/inspect-$name" ||
            { tail -5 "/tmp/inspect-$name"; return 1; }
    done
    out=$(timeout 20 abupdate slots) || return 1
    echo "$out"
    echo "$out" | grep -q "^_b: current=false active=true bootable=true successful=false"
}

nbd_up() {
    [ "$(cat "/sys/block/$1/size" 2>/dev/null)" -gt 0 ] 2>/dev/null
}

# Slot B's system served as /dev/nbd0, base plus COW (its base extents and its -cow
# partition, mapped read-only from slot B's metadata); dm-verity reads every block and checks
# it against the new vbmeta's root digest; the device equals the new image. Then every
# read-only mapping goes.
vab_nbd_verity() {
    vm_images map-partitions "$VAB_BY_NAME" b "$VAB_LINKS" system_b || return 1
    base=$VAB_LINKS/system_b
    base_sha=$(sha256sum "$base" | cut -d' ' -f1)
    abupdate cow serve --nbd /dev/nbd0 "$base" "$VAB_LINKS/system_b-cow" > /tmp/nbd.log 2>&1 &
    server=$!
    within 100 nbd_up nbd0 || { cat /tmp/nbd.log; return 1; }
    echo "nbd0: $(cat /sys/block/nbd0/size) sectors, ro=$(cat /sys/block/nbd0/ro)"
    [ "$(cat /sys/block/nbd0/ro)" = 1 ] &&
        [ "$(cat /sys/block/nbd0/size)" -eq $((SYSTEM_SIZE / 512)) ] || return 1
    verity_open system /dev/nbd0 nofec "$VAB_BY_NAME/vbmeta_b" || return 1
    sum=$(sha256sum /dev/mapper/vsystem | cut -d' ' -f1)
    veritysetup close vsystem
    echo "read through dm-verity: $sum"
    [ "$sum" = "$SYSTEM_DATA_SHA" ] && cmp /dev/nbd0 "$VAB/system-v2.img" || return 1
    echo "/dev/nbd0 equals the new system image"
    abupdate cow serve-stop --nbd /dev/nbd0 || return 1
    wait "$server"
    code=$?
    cat /tmp/nbd.log
    [ "$code" -eq 0 ] && grep -q "^disconnected: " /tmp/nbd.log &&
        [ "$(sha256sum "$base" | cut -d' ' -f1)" = "$base_sha" ] || return 1
    vm_images dm-cleanup "$VAB_LINKS" system_b system_b-cow vendor_b-cow
}

# The bootloader falls back to slot A before slot B ever booted to success: the service,
# started again as slot A's, cancels the update once the boot completed, as libsnapshot's
# cleanup does when the old slot runs again. Slot B's metadata loses its COW partitions, the
# state and the statuses go, misc's merge status is NONE, slot B is unbootable, and slot A's
# partitions (the snapshots' bases) are byte for byte what they were; nothing stays mapped.
vab_rollback() {
    vm_images map-partitions "$VAB_BY_NAME" a "$VAB_LINKS" system_a vendor_a || return 1
    before=$(sha256sum "$VAB_LINKS/system_a" "$VAB_LINKS/vendor_a" | cut -d' ' -f1 | tr '\n' ' ')
    vm_images dm-cleanup "$VAB_LINKS" system_a vendor_a || return 1
    vm_images boot-fallback "$VAB_BY_NAME/misc" || return 1
    # The reboot: a new boot id (the service's status of the update it applied is the last
    # boot's), as lxcfs mounts its files over /proc's.
    cat /proc/sys/kernel/random/uuid > /tmp/boot_id.fallback &&
        mount -o bind /tmp/boot_id.fallback /proc/sys/kernel/random/boot_id || return 1
    echo "boot id now $(cat /proc/sys/kernel/random/boot_id)"
    vab_start_daemon --current-slot a || return 1
    echo "sys.boot_completed=1" >> "$VAB/build.prop"
    timeout 120 update_engine_client --merge > /tmp/vab-rollback.log 2>&1
    code=$?
    # vab-merge waits for the boot of slot B to complete.
    sed -i '/^sys.boot_completed=/d' "$VAB/build.prop"
    grep -v "CLEANUP_PREVIOUS_UPDATE (11), 0\.[0-9]*[1-9]" /tmp/vab-rollback.log
    echo "exit $code"
    grep -iE "cancel|previous snapshot update" /tmp/vab-abupdated.log
    [ "$code" -eq 0 ] && grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vab-rollback.log ||
        return 1
    vm_images vab-state "$OTA" "$VAB_BY_NAME/misc" > /tmp/vab-state || return 1
    cat /tmp/vab-state
    grep -qix "state: none" /tmp/vab-state && grep -qx "snapshot-boot: none" /tmp/vab-state &&
        ! grep -q "^snapshot " /tmp/vab-state && grep -q "^misc: merge_status=0 " /tmp/vab-state ||
        return 1
    lpdump --slot=1 "$VAB_BY_NAME/super" > /tmp/lpdump1 || return 1
    if grep -E "Name: .*-cow|Group: cow" /tmp/lpdump1; then
        return 1
    fi
    vab_no_mappings || return 1
    vm_images map-partitions "$VAB_BY_NAME" a "$VAB_LINKS" system_a vendor_a || return 1
    after=$(sha256sum "$VAB_LINKS/system_a" "$VAB_LINKS/vendor_a" | cut -d' ' -f1 | tr '\n' ' ')
    vm_images dm-cleanup "$VAB_LINKS" system_a vendor_a || return 1
    echo "slot a before: $before"
    echo "slot a after:  $after"
    [ -n "$before" ] && [ "$before" = "$after" ] || return 1
    out=$(timeout 20 abupdate slots) || return 1
    echo "$out"
    echo "$out" | grep -q "^_a: current=true active=true bootable=true successful=true" &&
        echo "$out" | grep -q "^_b: current=false active=false bootable=false"
}

# The same update applied again from slot A after the cancel: the snapshots are made anew.
vab_reapply() {
    vab_apply && vab_snapshots || return 1
    vm_images dm-cleanup "$VAB_LINKS" system_b-cow vendor_b-cow
}

# The reboot into slot B: the service starts again as slot B's (first-stage init would map
# the snapshots; nothing here reads them), which is then marked successful.
vab_reboot() {
    vab_start_daemon --current-slot b || return 1
    timeout 20 abupdate mark-successful || return 1
    out=$(timeout 20 abupdate slots) || return 1
    echo "$out"
    echo "$out" | grep -q "^_b: current=true active=true bootable=true successful=true"
}

vab_merge_waiting() {
    grep -q "CLEANUP_PREVIOUS_UPDATE (11), 0)" /tmp/vab-merge1.log
}

vab_merge_checkpointed() {
    [ -n "$(ls "$OTA/merge" 2>/dev/null)" ]
}

# cleanupSuccessfulUpdate once the boot completed: the merge, through the service. Killed
# (SIGKILL) once a merge checkpoint exists: the state says Merging and misc MERGING (3); the
# service started again resumes the merge from its checkpoints (the COWs' copies overlap their
# sources: a merge started over would read blocks it already overwrote) to kSuccess. Then
# slot B's partitions (mapped as first-stage init maps them) are build 2's; slot B's metadata
# has no COW partition; the state is None, snapshot-boot and the statuses gone, misc's merge
# status None; slot A (its partitions overwritten) unbootable; nothing left mapped.
vab_merge() {
    timeout 120 update_engine_client --merge > /tmp/vab-merge1.log 2>&1 &
    merger=$!
    within 300 vab_merge_waiting || { cat /tmp/vab-merge1.log; return 1; }
    echo "sys.boot_completed=1" >> "$VAB/build.prop"
    within 600 vab_merge_checkpointed || { cat /tmp/vab-merge1.log; return 1; }
    kill -9 "$DAEMON"
    wait "$DAEMON" 2>/dev/null
    kill "$merger" 2>/dev/null
    wait "$merger" 2>/dev/null
    echo "killed during the merge; checkpoints: $(ls "$OTA/merge" | tr '\n' ' ')"
    vm_images vab-state "$OTA" "$VAB_BY_NAME/misc" > /tmp/vab-state || return 1
    cat /tmp/vab-state
    grep -qx "state: Merging" /tmp/vab-state &&
        grep -qx "misc: merge_status=3 source_slot=1" /tmp/vab-state || return 1
    vab_start_daemon --current-slot b || return 1
    timeout 120 update_engine_client --merge > /tmp/vab-merge.log 2>&1
    code=$?
    grep -v "CLEANUP_PREVIOUS_UPDATE (11), 0\.[0-9]*[1-9]" /tmp/vab-merge.log
    echo "exit $code"
    grep -E "merg" /tmp/vab-abupdated.log
    [ "$code" -eq 0 ] && grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vab-merge.log ||
        return 1
    # The service started again resumes the merge at once, so it may end before the client asks:
    # then the client hears only the result, as update_engine's CleanupSuccessfulUpdate answers
    # once the cleanup is done. A client that asked during the merge saw the bar reach 1.
    if grep -q "CLEANUP_PREVIOUS_UPDATE" /tmp/vab-merge.log; then
        grep -q "CLEANUP_PREVIOUS_UPDATE (11), 1)" /tmp/vab-merge.log || return 1
    fi
    vab_no_mappings || return 1
    vm_images vab-state "$OTA" "$VAB_BY_NAME/misc" > /tmp/vab-state || return 1
    cat /tmp/vab-state
    grep -qx "state: None" /tmp/vab-state && grep -qx "snapshot-boot: none" /tmp/vab-state &&
        ! grep -q "^snapshot " /tmp/vab-state &&
        grep -qx "misc: merge_status=0 source_slot=1" /tmp/vab-state || return 1
    lpdump --slot=1 "$VAB_BY_NAME/super" > /tmp/lpdump1 || return 1
    if grep -E "Name: .*-cow|Group: cow" /tmp/lpdump1; then
        return 1
    fi
    vm_images map-slot "$VAB_BY_NAME" b "$VAB_LINKS" || return 1
    echo 3 > /proc/sys/vm/drop_caches
    for name in system vendor; do
        cmp "$VAB_LINKS/${name}_b" "$VAB/$name-v2.img" || return 1
        echo "merged ${name}_b equals the new image"
        vm_images dm-remove "$VAB_LINKS" "${name}_b" || return 1
    done
    out=$(timeout 20 abupdate slots) || return 1
    echo "$out"
    echo "$out" | grep -q "^_a: current=false active=false bootable=false"
}

# The service goes; /metadata with it (the postinstall device is not Virtual A/B).
vab_done() {
    kill "$DAEMON" 2>/dev/null
    wait "$DAEMON" 2>/dev/null
    DAEMON=
    umount /proc/sys/kernel/random/boot_id 2>/dev/null
    umount /metadata
}

run_vab_steps() {
    vab_step vab-device vab_device
    vab_step vab-apply vab_apply
    vab_step vab-snapshots vab_snapshots
    vab_step vab-nbd-verity vab_nbd_verity
    vab_step vab-rollback vab_rollback
    vab_step vab-reapply vab_reapply
    vab_step vab-reboot vab_reboot
    vab_step vab-merge vab_merge
    vab_done
}
