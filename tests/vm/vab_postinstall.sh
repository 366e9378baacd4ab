# Virtual A/B postinstall steps of the VM test, sourced by init.sh (its step/within helpers).
# /data/vpi (run.sh made it with vab_postinstall_images.sh): a Virtual A/B device running
# build 1 of an ext4 `system` (logical, in a super with the VIRTUAL_AB_DEVICE flag) and a
# snapshot payload (COW v3, lz4) to build 2, whose `system` has a postinstall program that
# reads new-build.txt (a file only build 2 has), writes its argv, reports progress, and fails
# while /tmp/vpi-fail exists. abupdated serves it, also as update_engine, and the payload is
# applied through Binder: the update is written as snapshots, and the program runs from
# system_b's snapshot view (slot A's extents plus the COW in system_b-cow), which the service
# serves itself through the kernel's nbd driver, mounted read-only. First the program fails:
# 44 (kPostinstallRunnerError), no slot switch, the snapshots left Initiated; then the service
# is killed while the program runs, leaving its mount and nbd device behind; then, through the
# restarted service, it passes: Unverified, slot B active (the leftovers cleared); then
# triggerPostinstall runs it again from the view. After each,
# nothing is mounted, no nbd device is connected, no loop device and none of the service's
# device-mapper mappings is left.

VPI=/data/vpi
VPI_BY_NAME=/dev/block/vpi/by-name
VPI_LINKS=/dev/block/vpi/mapper
VPI_MOUNT=/run/vpi-postinstall

vpi_serving() {
    kill -0 "$VPI_DAEMON" 2>/dev/null &&
        [ "$(grep -c "serving abupdate, android.os" /tmp/vpi-abupdated.log)" -gt "$vpi_served" ]
}

# The device's partitions on loop devices, /metadata (libsnapshot's /metadata/ota) a tmpfs,
# nbd and ext4 loaded if no earlier step did, and abupdated over it (any other one stopped).
vpi_device() {
    [ -d /sys/module/nbd ] || insmod /lib/modules/nbd.ko nbds_max=2 max_part=0 || return 1
    grep -qw ext4 /proc/filesystems || for m in crc32c_generic libcrc32c crc16 mbcache jbd2 ext4; do
        insmod "/lib/modules/$m.ko" || return 1
    done
    ln -sf abupdate /bin/update_engine_client || return 1
    for pid in ${DAEMON:-} ${PI_DAEMON:-}; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    DAEMON=
    PI_DAEMON=
    mkdir -p /metadata "$VPI_BY_NAME" "$VPI_LINKS" /data/vpi-state &&
        mount -t tmpfs vpimeta /metadata && mkdir -p /metadata/ota &&
        mount -t tmpfs vpistate /data/vpi-state || return 1
    for part in super misc; do
        dev=$(losetup -f) && losetup "$dev" "$VPI/$part.img" &&
            ln -s "$dev" "$VPI_BY_NAME/$part" || return 1
    done
    lpdump --slot=0 "$VPI_BY_NAME/super" | grep -i "flags" | grep -q virtual_ab_device || return 1
    vpi_start_daemon || return 1
    echo "nbd devices: $(ls -d /sys/block/nbd* | tr '\n' ' ')"
}

vpi_start_daemon() {
    vpi_served=$(grep -c "serving abupdate, android.os" /tmp/vpi-abupdated.log 2>/dev/null)
    vpi_served=${vpi_served:-0}
    abupdated --update-engine-compat --binder binder:/dev/binder --by-name "$VPI_BY_NAME" \
        --device-mapper linux --mapper-links "$VPI_LINKS" --allow-unsigned \
        --build-prop "$VPI/build.prop" --state-dir /data/vpi-state --allowed-uids 0 \
        --postinstall-timeout 60 --postinstall-dir "$VPI_MOUNT" \
        >> /tmp/vpi-abupdated.log 2>&1 &
    VPI_DAEMON=$!
    within 200 vpi_serving || { tail -5 /tmp/vpi-abupdated.log; return 1; }
}

# Nothing left by postinstall (a kill's leftovers included): no mount, no nbd device
# connected, no loop device over one, none of the service's mappings.
vpi_nothing_left() {
    mounted=$(grep -c "$VPI_MOUNT" /proc/mounts)
    connected=$(ls /sys/block/nbd*/pid 2>/dev/null | wc -l)
    sized=0
    for s in /sys/block/nbd*/size; do
        [ "$(cat "$s")" -eq 0 ] || sized=$((sized + 1))
    done
    loops=$(cat /sys/block/loop*/loop/backing_file 2>/dev/null | grep -c nbd)
    ours=$(vm_images dm-ours) || return 1
    echo "left: mounts $mounted, nbd connected $connected (sized $sized), loop over nbd $loops," \
        "mappings: ${ours:-none}"
    [ "$mounted" -eq 0 ] && [ "$connected" -eq 0 ] && [ "$sized" -eq 0 ] && [ "$loops" -eq 0 ] &&
        [ -z "$ours" ]
}

# The active slot's line of `abupdate slots` for slot $1.
vpi_slot() {
    timeout 20 abupdate slots | grep "^_$1:"
}

# update_engine_client's --update, followed, into /tmp/vpi-$1.log; its exit code.
vpi_update() {
    timeout 300 update_engine_client --update --follow --payload="file://$VPI/payload.bin" \
        "--headers=$(cat "$VPI/payload_properties.txt")" > "/tmp/vpi-$1.log" 2>&1
    code=$?
    grep -v "DOWNLOADING (3), 0\.[0-9]*[1-9]" "/tmp/vpi-$1.log"
    echo "exit $code"
    return $code
}

# The program fails: kPostinstallRunnerError (5) from our 44, after it ran from the snapshot
# view (it read build 2's file); slot A stays active, libsnapshot's state Initiated (the
# snapshots as update_engine leaves them), nothing left.
vpi_fails() {
    rm -f /tmp/vpi.argv /tmp/vpi.read
    touch /tmp/vpi-fail
    vpi_update fails
    code=$?
    rm -f /tmp/vpi-fail
    grep -E "snapshot|nbd|postinst" /tmp/vpi-abupdated.log
    echo "argv: $(cat /tmp/vpi.argv 2>/dev/null); read: $(cat /tmp/vpi.read 2>/dev/null)"
    vm_images vab-state /metadata/ota "$VPI_BY_NAME/misc" > /tmp/vpi-state || return 1
    cat /tmp/vpi-state
    b=$(vpi_slot b) || return 1
    echo "$b"
    [ "$code" -eq 1 ] &&
        grep -q "onPayloadApplicationComplete(kPostinstallRunnerError (5))" /tmp/vpi-fails.log &&
        grep -q "written as snapshots" /tmp/vpi-abupdated.log &&
        grep -q "system_b: its snapshot view served as /dev/nbd" /tmp/vpi-abupdated.log &&
        grep -q "asked to fail" /tmp/vpi-abupdated.log &&
        grep -q "^build 2 of system" /tmp/vpi.read &&
        grep -qx "$VPI_MOUNT/postinst 1 3" /tmp/vpi.argv &&
        grep -qx "state: Initiated" /tmp/vpi-state &&
        echo "$b" | grep -q "active=false" || return 1
    vpi_nothing_left
}

vpi_program_running() {
    [ -s /tmp/vpi.argv ]
}

# The postinstall programs still running (their command lines name the mount point).
vpi_programs() {
    for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline"; echo; done 2>/dev/null |
        grep -c "^/bin/sh $VPI_MOUNT/postinst"
}

vpi_no_programs() {
    [ "$(vpi_programs)" -eq 0 ]
}

# The service killed (SIGKILL) while the program runs (held by /tmp/vpi-hold): its mount, the
# loop device and the nbd device under it stay, and the program outlives it (as it would
# update_engine's). Once the program ended, the restarted service is what the next step
# applies through: it must clear those leftovers itself.
vpi_killed() {
    rm -f /tmp/vpi.argv /tmp/vpi.read
    touch /tmp/vpi-hold
    timeout 300 update_engine_client --update --follow --payload="file://$VPI/payload.bin" \
        "--headers=$(cat "$VPI/payload_properties.txt")" > /tmp/vpi-killed.log 2>&1 &
    client=$!
    within 600 vpi_program_running || { rm -f /tmp/vpi-hold; tail -5 /tmp/vpi-abupdated.log; return 1; }
    sleep 1
    kill -9 "$VPI_DAEMON"
    wait "$VPI_DAEMON" 2>/dev/null
    kill "$client" 2>/dev/null
    wait "$client" 2>/dev/null
    echo "service killed; programs running: $(vpi_programs)"
    rm -f /tmp/vpi-hold
    within 100 vpi_no_programs || return 1
    echo "after the kill and the program's end:"
    vpi_nothing_left && return 1
    grep -q "$VPI_MOUNT" /proc/mounts || return 1
    vpi_start_daemon
}

# The program passes: it ran from the view (build 2's file read, argv "<mount>/postinst 1 3"),
# its progress reached the client as FINALIZING fractions; the state is Unverified with
# snapshot-boot _a and misc SNAPSHOTTED, slot B's metadata has system_b-cow and the base
# extents still hold build 1 (no new-build.txt there); slot B is active; nothing left.
vpi_apply() {
    rm -f /tmp/vpi.argv /tmp/vpi.read
    vpi_update apply
    code=$?
    echo "argv: $(cat /tmp/vpi.argv 2>/dev/null); read: $(cat /tmp/vpi.read 2>/dev/null)"
    grep -E "nbd|postinst" /tmp/vpi-abupdated.log | tail -6
    vm_images vab-state /metadata/ota "$VPI_BY_NAME/misc" > /tmp/vpi-state || return 1
    cat /tmp/vpi-state
    progress=$(grep -c "onStatusUpdate(FINALIZING (5), 0\.[0-9]*[1-9]" /tmp/vpi-apply.log)
    echo "FINALIZING fractions: $progress"
    lpdump --slot=1 "$VPI_BY_NAME/super" > /tmp/vpi-lpdump1 || return 1
    grep -q "Name: system_b-cow" /tmp/vpi-lpdump1 || return 1
    vm_images map-partitions "$VPI_BY_NAME" a "$VPI_LINKS" system_a > /dev/null || return 1
    in_base=$(grep -c "build 2 of system" "$VPI_LINKS/system_a")
    vm_images dm-cleanup "$VPI_LINKS" system_a > /dev/null || return 1
    echo "build 2's text in the base extents: $in_base"
    b=$(vpi_slot b) || return 1
    echo "$b"
    [ "$code" -eq 0 ] && grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vpi-apply.log &&
        [ "$progress" -ge 3 ] && [ "$in_base" -eq 0 ] &&
        grep -q "^build 2 of system" /tmp/vpi.read &&
        grep -qx "$VPI_MOUNT/postinst 1 3" /tmp/vpi.argv &&
        grep -qx "state: Unverified" /tmp/vpi-state &&
        grep -qx "snapshot-boot: _a" /tmp/vpi-state &&
        grep -qx "misc: merge_status=2 source_slot=0" /tmp/vpi-state &&
        echo "$b" | grep -q "active=true" || return 1
    vpi_nothing_left
}

# triggerPostinstall("system") on the applied update: the program runs again from the
# snapshot view (the service maps the COW and serves the view anew), then nothing is left.
vpi_trigger() {
    rm -f /tmp/vpi.argv /tmp/vpi.read
    timeout 60 update_engine_client --trigger_postinstall=system --follow > /tmp/vpi-trigger.log 2>&1
    code=$?
    cat /tmp/vpi-trigger.log
    echo "exit $code; argv: $(cat /tmp/vpi.argv 2>/dev/null); read: $(cat /tmp/vpi.read 2>/dev/null)"
    [ "$code" -eq 0 ] && grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vpi-trigger.log &&
        grep -q "^build 2 of system" /tmp/vpi.read &&
        grep -qx "$VPI_MOUNT/postinst 1 3" /tmp/vpi.argv || return 1
    vpi_nothing_left
}

vpi_done() {
    kill "$VPI_DAEMON" 2>/dev/null
    wait "$VPI_DAEMON" 2>/dev/null
    umount /data/vpi-state /metadata
}

vpi_step() {
    vpi_t=$(date +%s)
    step "$@"
    printf 'INFO %s took %ss\n' "$1" "$(($(date +%s) - vpi_t))"
}

run_vab_postinstall_steps() {
    vpi_step vpi-device vpi_device
    vpi_step vpi-fails vpi_fails
    vpi_step vpi-killed vpi_killed
    vpi_step vpi-apply vpi_apply
    vpi_step vpi-trigger vpi_trigger
    vpi_done
}
