# The collapse after snapuserd's merge (issue #14), sourced by init.sh after the Virtual A/B
# steps (its step/within helpers and verity_open; vab.sh's vab_start_daemon, vab_apply,
# vab_reboot, lp_block and nbd_up, run with this file's device). /data/vabc is a Virtual A/B
# device as vab.sh's (`vm_images build-vabc`), with `system` alone, an ext4 file system (made
# by run.sh: build 1, and build 2 with a file changed, one rewritten and one added). The update
# is applied through Binder; then slot B's system is presented as first-stage init presents a
# userspace snapshot: `system_b-base` and `system_b-cow` mapped from slot B's metadata, and
# `system_b`, the device the system reads, a read-only dm-linear over an nbd device serving
# base plus COW (`abupdate cow serve`: the stock kernel has no dm-user, and this stands in for
# it); it is opened through dm-verity (the new vbmeta's root digest) and its file system
# mounted, as Android mounts system. A stand-in snapuserd (`vm_images snapuserd`:
# tests/common/snapuserd.rs, its merge AOSP's applycow --mode merge over `system_b-base`)
# listens on /dev/socket/snapuserd. The service, restarted as slot B's and asked to merge,
# merges through that socket and collapses the snapshot: `system_b` reloaded with the base's
# dm-linear table on super, in place, `delete,system_b` (the stand-in answers only once the
# table no longer names its nbd device, then stops serving it), `system_b-base` and
# `system_b-cow` removed; then the cleanup in the same boot: state None, the COW partition
# gone; the file system, mounted throughout, reads build 2's files from super.

VABC_MNT=/tmp/vabc-system

# The device on loop devices in its own by-name directory, a new /metadata and state
# directory, the service over it (slot A).
vabc_device() {
    [ -e /sys/module/nbd ] || insmod /lib/modules/nbd.ko nbds_max=1 max_part=0 || return 1
    # ext4 for the mounted system; unloaded again by vabc_done (the postinstall steps load it).
    if ! grep -q ext4 /proc/filesystems; then
        for m in crc32c_generic libcrc32c crc16 mbcache jbd2 ext4; do
            insmod "/lib/modules/$m.ko" || return 1
        done
        VABC_EXT4=1
    fi
    ln -sf abupdate /bin/update_engine_client || return 1
    mkdir -p "$VAB_BY_NAME" "$VAB_LINKS" /metadata /data/vab-state /dev/socket || return 1
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

# What first-stage init maps for a userspace snapshot, the dm-user device stood in for by
# nbd; system_b opened through dm-verity and its file system mounted; the stand-in daemon.
vabc_init() {
    vm_images snapshot-devices "$VAB_BY_NAME" b "$VAB_LINKS" system_b || return 1
    abupdate cow serve --nbd /dev/nbd0 "$VAB_LINKS/system_b-base" "$VAB_LINKS/system_b-cow" \
        > /tmp/vabc-nbd.log 2>&1 &
    VABC_SERVER=$!
    within 100 nbd_up nbd0 || { cat /tmp/vabc-nbd.log; return 1; }
    . /data/vabc/expected.env
    echo "nbd0: $(cat /sys/block/nbd0/size) sectors"
    [ "$(cat /sys/block/nbd0/size)" -eq $((VABC_SYSTEM_SIZE / 512)) ] || return 1
    vm_images snapshot-device system_b "$VAB_LINKS" /dev/nbd0 || return 1
    vm_images dm-table system_b
    verity_open system "$VAB_LINKS/system_b" nofec "$VAB_BY_NAME/vbmeta_b" || return 1
    mkdir -p "$VABC_MNT" && mount -t ext4 -o ro /dev/mapper/vsystem "$VABC_MNT" || return 1
    (cd "$VABC_MNT" && sha256sum -c /data/vabc/files.sha256) || return 1
    echo "build 2's files read through the mounted system_b (dm-verity over nbd0)"
    rm -f /dev/socket/snapuserd
    vm_images snapuserd /dev/socket/snapuserd /tmp/vabc-standin "$VAB_LINKS" \
        system_b:/dev/nbd0 > /tmp/vabc-standin.log 2>&1 &
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
    sed -n '/asking snapuserd/,$p' /tmp/vab-abupdated.log
    within 100 vabc_standin_gone || { echo "the stand-in did not exit"; return 1; }
    cat /tmp/vabc-standin.log
    [ "$code" -eq 0 ] && grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/vabc-merge.log ||
        return 1
    grep -q "collapsed system_b to its base partition" /tmp/vab-abupdated.log &&
        grep -q "delete,system_b: /dev/nbd0 no longer in its table" /tmp/vabc-standin.log &&
        grep -q "detached; deleted \[\"system_b\"\]" /tmp/vabc-standin.log || return 1
    # The nbd server stopped; no -base or -cow device left; system_b is linear on super.
    wait "$VABC_SERVER"
    cat /tmp/vabc-nbd.log
    grep -q "^disconnected: " /tmp/vabc-nbd.log && ! nbd_up nbd0 || return 1
    names=$(cat /sys/block/dm-*/dm/name | sort | tr '\n' ' ')
    echo "device-mapper devices: $names"
    case " $names " in
        *-base*|*-cow*) return 1 ;;
    esac
    lpdump --slot=1 "$VAB_BY_NAME/super" > /tmp/vabc-lpdump1 || return 1
    if grep -E "Name: .*-cow|Group: cow" /tmp/vabc-lpdump1; then
        return 1
    fi
    vabc_linear_on_super system_b || return 1
    vm_images vab-state /metadata/ota "$VAB_BY_NAME/misc" > /tmp/vabc-state || return 1
    cat /tmp/vabc-state
    grep -qx "state: None" /tmp/vabc-state && ! grep -q "^snapshot " /tmp/vabc-state &&
        grep -qx "misc: merge_status=0 source_slot=1" /tmp/vabc-state || return 1
    # The file system stayed mounted and now reads super: build 2's files, with the caches
    # dropped (dm-verity checks every block read); the device equals build 2's image.
    grep " $VABC_MNT " /proc/mounts || return 1
    echo 3 > /proc/sys/vm/drop_caches
    (cd "$VABC_MNT" && sha256sum -c /data/vabc/files.sha256) || return 1
    echo "build 2's files read through the same mount, system_b now linear on super"
    cmp "$VAB_LINKS/system_b" "$VAB/system-v2.img" || return 1
    echo "system_b equals the new image"
}

# The service first (it could hold what the step opened), then the mount and the mappings.
vabc_done() {
    kill "$DAEMON" 2>/dev/null
    wait "$DAEMON" 2>/dev/null
    DAEMON=
    umount "$VABC_MNT"
    veritysetup close vsystem || echo "vabc: vsystem stays open"
    vm_images dm-cleanup "$VAB_LINKS" system_b
    umount /metadata
    if [ -n "${VABC_EXT4:-}" ]; then
        for m in ext4 jbd2 mbcache crc16 libcrc32c crc32c_generic; do
            rmmod "$m" || echo "vabc: $m stays loaded"
        done
    fi
}

run_vab_collapse_steps() {
    saved="$VAB $VAB_BY_NAME $VAB_LINKS"
    VAB=/data/vabc
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
