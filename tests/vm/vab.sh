# Virtual A/B steps of the VM test, sourced by init.sh (its step/within helpers, BY_NAME,
# verity_open and expected.env). The base is slot A's `system` in super (build 1, a dm-linear
# mapping of its extents, writable as a merge needs it); /data/vab/system-v2.img is build 2's
# whole partition (data, hash tree, FEC, AVB footer). The update is written as a COW with
# `abupdate cow write --source` (the CLI: the service's snapshot path is another change);
# `abupdate cow serve` serves base plus COW as /dev/nbd0 through the kernel's nbd driver (as
# snapuserd serves a snapshot through dm-user, which this kernel lacks); dm-verity opens it
# with the root digest of the new vbmeta (vbmeta_b, written by the update steps before) and
# reads every block; then `abupdate cow merge` merges the COW into the base in place.

VAB=/data/vab
VAB_LINKS=/dev/block/vab

vab_step() {
    vab_t=$(date +%s)
    step "$@"
    printf 'INFO %s took %ss\n' "$1" "$(($(date +%s) - vab_t))"
}

vab_cow_write() {
    insmod /lib/modules/nbd.ko nbds_max=2 max_part=0 || return 1
    vm_images map-slot "$BY_NAME" a "$VAB_LINKS" rw || return 1
    VAB_BASE=$(readlink -f "$VAB_LINKS/system_a") || return 1
    VAB_BASE_SHA=$(sha256sum "$VAB_BASE" | cut -d' ' -f1)
    abupdate cow write --source "$VAB_BASE" "$VAB/system-v2.img" "$VAB/system.cow" || return 1
    abupdate cow info "$VAB/system.cow" > /tmp/cow.info || return 1
    grep -E "^(ops|sequence|merge order)" /tmp/cow.info
    # The moved run's unedited blocks are copies, in a merge sequence.
    grep -q "^ops: *copy=[1-9]" /tmp/cow.info && grep -q "^sequence: *[1-9]" /tmp/cow.info
}

nbd_up() {
    [ "$(cat /sys/block/nbd0/size 2>/dev/null)" -gt 0 ] 2>/dev/null
}

# Served read-only: the device's size, its ro flag; dm-verity reads every data block (and the
# tree) from the server and checks each against the new vbmeta's digest; the whole device
# equals the new image. The base is untouched; serve-stop ends the server cleanly.
vab_nbd_verity() {
    abupdate cow serve --nbd /dev/nbd0 "$VAB_BASE" "$VAB/system.cow" > /tmp/nbd.log 2>&1 &
    VAB_SERVER=$!
    within 100 nbd_up || { cat /tmp/nbd.log; return 1; }
    echo "nbd0: $(cat /sys/block/nbd0/size) sectors, ro=$(cat /sys/block/nbd0/ro)"
    [ "$(cat /sys/block/nbd0/ro)" = 1 ] &&
        [ "$(cat /sys/block/nbd0/size)" -eq $((SYSTEM_SIZE / 512)) ] || return 1
    verity_open system /dev/nbd0 || return 1
    sum=$(sha256sum /dev/mapper/vsystem | cut -d' ' -f1)
    veritysetup close vsystem
    echo "read through dm-verity: $sum"
    [ "$sum" = "$SYSTEM_DATA_SHA" ] || return 1
    cmp /dev/nbd0 "$VAB/system-v2.img" || return 1
    echo "/dev/nbd0 equals the new image"
    abupdate cow serve-stop --nbd /dev/nbd0 || return 1
    wait "$VAB_SERVER"
    code=$?
    cat /tmp/nbd.log
    [ "$code" -eq 0 ] && grep -q "^disconnected: " /tmp/nbd.log &&
        [ "$(sha256sum "$VAB_BASE" | cut -d' ' -f1)" = "$VAB_BASE_SHA" ]
}

# The merge in place over slot A's extents in super; then that partition is the new image.
vab_merge() {
    abupdate cow merge --state "$VAB/system.merge" "$VAB_BASE" "$VAB/system.cow" \
        > /tmp/merge.log || { cat /tmp/merge.log; return 1; }
    tail -2 /tmp/merge.log
    echo 3 > /proc/sys/vm/drop_caches
    cmp "$VAB_BASE" "$VAB/system-v2.img" || return 1
    echo "merged system_a equals the new image"
    vm_images dm-remove "$VAB_LINKS" system_a && vm_images dm-remove "$VAB_LINKS" vendor_a
}

run_vab_steps() {
    vab_step vab-cow-write vab_cow_write
    vab_step vab-nbd-verity vab_nbd_verity
    vab_step vab-merge vab_merge
}
