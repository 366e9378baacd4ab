# The collapse after snapuserd's merge (issue #14), sourced by init.sh after the Virtual A/B
# steps (its step/within helpers, verity_open and expected.env; vab.sh's vab_start_daemon,
# vab_apply, vab_reboot, lp_block and nbd_up, run with this file's device). A second copy of
# the Virtual A/B device of vab.sh, as built (kept before those steps changed it), gets the
# same update through Binder; then slot B's partitions are presented as first-stage init
# presents them with userspace snapshots: `<name>_b-base` (the base extents) and
# `<name>_b-cow` mapped from slot B's metadata, and `<name>_b`, the device the system reads,
# a read-only dm-linear over an nbd device serving base plus COW (`abupdate cow serve`: the
# stock kernel has no dm-user, and this stands in for it). system_b is opened through
# dm-verity (the new vbmeta's root digest) and held open by a reader, as Android mounts it.
# A stand-in snapuserd (`vm_images snapuserd`: tests/common/snapuserd.rs, its merge AOSP's
# applycow --mode merge over the `-base` devices) listens on /dev/socket/snapuserd. The
# service, restarted as slot B's and asked to merge, merges through that socket and collapses
# each snapshot: its `<name>_b` reloaded with the base's dm-linear table on super, in place,
# `delete,<name>_b` (the stand-in answers only once the table no longer names its nbd device,
# then stops serving it), the `-base` and `-cow` devices removed; then the cleanup in the same
# boot: state None, the COW partitions gone.

VABC_KEPT=/tmp/vabc-kept

# Before vab.sh's steps change them: the Virtual A/B device's images as built.
vab_collapse_keep() {
    mkdir -p "$VABC_KEPT" &&
        cp /data/vab/super.img /data/vab/vbmeta_a.img /data/vab/misc.img /data/vab/build.prop \
            "$VABC_KEPT/"
}

# The kept device on loop devices in its own by-name directory, a new /metadata and state
# directory, the service over it (slot A); two nbd devices.
vabc_device() {
    rmmod nbd 2>/dev/null
    insmod /lib/modules/nbd.ko nbds_max=2 max_part=0 || return 1
    ln -sf abupdate /bin/update_engine_client || return 1
    mkdir -p "$VAB" "$VAB_BY_NAME" "$VAB_LINKS" /metadata /data/vab-state /dev/socket || return 1
    cp "$VABC_KEPT"/* "$VAB/" || return 1
    for f in payload.bin payload_properties.txt system-v2.img vendor-v2.img; do
        ln -sf "/data/vab/$f" "$VAB/$f" || return 1
    done
    truncate -s "$VBMETA_SIZE" "$VAB/vbmeta_b.img" || return 1
    umount /data/vab-state 2>/dev/null
    mount -t tmpfs metadata /metadata && mkdir -p /metadata/ota &&
        mount -t tmpfs vabcstate /data/vab-state || return 1
    for part in super vbmeta_a vbmeta_b misc; do
        dev=$(losetup -f) && losetup "$dev" "$VAB/$part.img" &&
            ln -s "$dev" "$VAB_BY_NAME/$part" || return 1
    done
    ls -l "$VAB_BY_NAME"
    vab_start_daemon
}

# What first-stage init maps for each snapshot with userspace snapshots, the dm-user device
# stood in for by nbd; system_b opened through dm-verity and held open; the stand-in daemon.
vabc_init() {
    i=0
    for name in system vendor; do
        vm_images snapshot-devices "$VAB_BY_NAME" b "$VAB_LINKS" "${name}_b" || return 1
        abupdate cow serve --nbd "/dev/nbd$i" "$VAB_LINKS/${name}_b-base" \
            "$VAB_LINKS/${name}_b-cow" > "/tmp/vabc-nbd$i.log" 2>&1 &
        eval "VABC_SERVER$i=\$!"
        within 100 nbd_up "nbd$i" || { cat "/tmp/vabc-nbd$i.log"; return 1; }
        vm_images snapshot-device "${name}_b" "$VAB_LINKS" "/dev/nbd$i" || return 1
        i=$((i + 1))
    done
    vm_images dm-table system_b
    verity_open system "$VAB_LINKS/system_b" nofec "$VAB_BY_NAME/vbmeta_b" || return 1
    # The reader that holds the verified system open across the swap (a mount would).
    exec 7< /dev/mapper/vsystem
    sum=$(sha256sum /dev/mapper/vsystem | cut -d' ' -f1)
    echo "system_b through dm-verity over nbd0: $sum"
    [ "$sum" = "$SYSTEM_DATA_SHA" ] || return 1
    cmp "$VAB_LINKS/vendor_b" "$VAB/vendor-v2.img" || return 1
    rm -f /dev/socket/snapuserd
    vm_images snapuserd /dev/socket/snapuserd /tmp/vabc-standin "$VAB_LINKS" \
        system_b:/dev/nbd0 vendor_b:/dev/nbd1 > /tmp/vabc-standin.log 2>&1 7<&- &
    VABC_STANDIN=$!
    within 100 [ -S /dev/socket/snapuserd ] || { cat /tmp/vabc-standin.log; return 1; }
}

# `major:minor` of block device $1.
dev_num() {
    # shellcheck disable=SC2046 # two words
    set -- $(stat -L -c '%t %T' "$1")
    echo "$((0x$1)):$((0x$2))"
}

# The live table of $1 is its base extents in slot B's metadata, linear on super.
vabc_linear_on_super() {
    super=$(dev_num "$VAB_BY_NAME/super")
    vm_images dm-table "$1" > "/tmp/vabc-table-$1" || return 1
    cat "/tmp/vabc-table-$1"
    lp_block /tmp/vabc-lpdump1 "$1" | awk -v s="$super" 'BEGIN { start = 0 } /linear super/ {
        print start " " ($3 - $1 + 1) " linear " s " " $6; start += $3 - $1 + 1 }' \
        > "/tmp/vabc-want-$1"
    [ -s "/tmp/vabc-want-$1" ] && cmp "/tmp/vabc-want-$1" "/tmp/vabc-table-$1" ||
        { echo "wanted:"; cat "/tmp/vabc-want-$1"; return 1; }
}

vabc_standin_gone() {
    ! kill -0 "$VABC_STANDIN" 2>/dev/null
}

# The merge through the stand-in, then the checks.
vabc_merge() {
    echo "sys.boot_completed=1" >> "$VAB/build.prop"
    t0=$(date +%s)
    timeout 180 update_engine_client --merge > /tmp/vabc-merge.log 2>&1
    code=$?
    echo "merge took $(($(date +%s) - t0))s"
    grep -v "CLEANUP_PREVIOUS_UPDATE (11), 0\.[0-9]*[1-9]" /tmp/vabc-merge.log
    echo "exit $code"
    grep -E "snapuserd|collaps|reloaded|unmapped|merge" /tmp/vab-abupdated.log | tail -30
    within 100 vabc_standin_gone || { echo "the stand-in did not exit"; return 1; }
    cat /tmp/vabc-standin.log
    [ "$code" -eq 0 ] && grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vabc-merge.log ||
        return 1
    for name in system_b vendor_b; do
        grep -q "collapsed $name to its base partition" /tmp/vab-abupdated.log &&
            grep -q "delete,$name: /dev/nbd[01] no longer in its table" /tmp/vabc-standin.log ||
            return 1
    done
    grep -q "detached; deleted \[\"system_b\", \"vendor_b\"\]" /tmp/vabc-standin.log ||
        grep -q "detached; deleted \[\"vendor_b\", \"system_b\"\]" /tmp/vabc-standin.log || return 1
    # The nbd servers stopped; no -base or -cow device left; the partitions are linear on super.
    for i in 0 1; do
        eval "server=\$VABC_SERVER$i"
        wait "$server"
        cat "/tmp/vabc-nbd$i.log"
        grep -q "^disconnected: " "/tmp/vabc-nbd$i.log" && ! nbd_up "nbd$i" || return 1
    done
    names=$(cat /sys/block/dm-*/dm/name | sort | tr '\n' ' ')
    echo "device-mapper devices: $names"
    case " $names " in
        *-base*|*-cow*) return 1 ;;
    esac
    lpdump --slot=1 "$VAB_BY_NAME/super" > /tmp/vabc-lpdump1 || return 1
    if grep -E "Name: .*-cow|Group: cow" /tmp/vabc-lpdump1; then
        return 1
    fi
    vabc_linear_on_super system_b && vabc_linear_on_super vendor_b || return 1
    vm_images vab-state /metadata/ota "$VAB_BY_NAME/misc" > /tmp/vabc-state || return 1
    cat /tmp/vabc-state
    grep -qx "state: None" /tmp/vabc-state && ! grep -q "^snapshot " /tmp/vabc-state &&
        grep -qx "misc: merge_status=0 source_slot=1" /tmp/vabc-state || return 1
    # What reads them now reads super: build 2's bytes, through the reader opened before the
    # swap (dm-verity checking every block) and through the devices themselves.
    echo 3 > /proc/sys/vm/drop_caches
    sum=$(sha256sum <&7 | cut -d' ' -f1)
    echo "system_b through the dm-verity reader held across the swap: $sum"
    [ "$sum" = "$SYSTEM_DATA_SHA" ] || return 1
    for name in system vendor; do
        cmp "$VAB_LINKS/${name}_b" "$VAB/$name-v2.img" || return 1
        echo "${name}_b, linear on super, equals the new image"
    done
}

# The service first: started after the reader opened, it holds its descriptor too.
vabc_done() {
    kill "$DAEMON" 2>/dev/null
    wait "$DAEMON" 2>/dev/null
    DAEMON=
    exec 7<&-
    veritysetup close vsystem || echo "vabc: vsystem stays open"
    vm_images dm-cleanup "$VAB_LINKS" system_b vendor_b
    umount /metadata
}

run_vab_collapse_steps() {
    saved="$VAB $VAB_BY_NAME $VAB_LINKS"
    VAB=/tmp/vabc
    VAB_BY_NAME=/dev/block/vabc/by-name
    VAB_LINKS=/dev/block/vabc/mapper
    vab_step vabc-device vabc_device
    vab_step vabc-apply vab_apply
    vab_step vabc-init vabc_init
    vab_step vabc-reboot vab_reboot
    vab_step vabc-collapse vabc_merge
    vabc_done
    # shellcheck disable=SC2086 # three words
    set -- $saved
    VAB=$1 VAB_BY_NAME=$2 VAB_LINKS=$3
}
