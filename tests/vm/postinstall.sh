# Postinstall steps of the VM test, sourced by init.sh (its step/within/expect_exit helpers).
# /data/pi (run.sh made it: ext4 `system`, erofs `vendor` and `odm` image files, misc.img on
# slot A, super-lp.img with the logical `product`), named as on a device, and four payloads
# whose partitions carry postinstall programs (busybox shell scripts): p1 reports progress
# from system (ext4) and vendor (erofs), vendor's then ticks until released (for suspend),
# and odm has a failing optional program; p2's required program fails; p3's hangs; p4's
# product is a logical partition of two extents. A second abupdated serves those partitions
# (a 4 s postinstall timeout, then 60 s), also as update_engine
# (android.os.UpdateEngineService). It mounts each partition read-only through a loop device.

PI=/data/pi

pi_modules() {
    for m in crc32c_generic libcrc32c crc16 mbcache jbd2 ext4 erofs; do
        insmod "/lib/modules/$m.ko" || return 1
    done
    grep -E "ext4|erofs" /proc/filesystems
}

pi_daemon_serving() {
    kill -0 "$PI_DAEMON" 2>/dev/null && grep -q "serving abupdate" /tmp/pi-abupdated.log
}

PI_BY_NAME=/tmp/pi-by-name
PI_LINKS=/tmp/pi-links

# The partitions as a device names them: links to the image files, misc, and super-lp.img on
# a loop device as super (device-mapper maps block devices only).
pi_by_name() {
    [ -e "$PI_BY_NAME/super" ] && return 0
    mkdir -p "$PI_BY_NAME" "$PI_LINKS" || return 1
    for f in "$PI"/*_[ab].img; do
        ln -sf "$f" "$PI_BY_NAME/$(basename "$f" .img)" || return 1
    done
    ln -sf "$PI/misc.img" "$PI_BY_NAME/misc" || return 1
    dev=$(losetup -f) && losetup "$dev" "$PI/super-lp.img" && ln -s "$dev" "$PI_BY_NAME/super"
}

# abupdated over those partitions, with a postinstall timeout of $1 seconds.
pi_start_daemon() {
    pi_by_name || return 1
    if [ -n "${PI_DAEMON:-}" ]; then
        kill "$PI_DAEMON" 2>/dev/null
        wait "$PI_DAEMON" 2>/dev/null
    fi
    : > /tmp/pi-abupdated.log
    abupdated --update-engine-compat --binder binder:/dev/binder --by-name "$PI_BY_NAME" \
        --build-prop /data/build.prop --state-dir "$PI/state" --device-mapper linux \
        --mapper-links "$PI_LINKS" --allow-unsigned --allowed-uids 0 \
        --postinstall-timeout "$1" --postinstall-dir /run/postinstall \
        >> /tmp/pi-abupdated.log 2>&1 &
    PI_DAEMON=$!
    within 200 pi_daemon_serving || { cat /tmp/pi-abupdated.log; return 1; }
}

# The main story's daemon goes; one over the host device directory takes the name.
pi_daemon() {
    if [ -n "${DAEMON:-}" ]; then
        kill "$DAEMON" 2>/dev/null
        wait "$DAEMON" 2>/dev/null
    fi
    pi_start_daemon 4
}

# The slot the bootloader boots next, from bootloader_control in misc.img (slot_info[0] and
# [1] at bytes 12 and 14 of the record at 2048, priority in their low four bits): read from
# the file, not through the service, which is slow to start under emulation.
pi_active() {
    a=$(od -An -tu1 -j 2060 -N 1 "$PI/misc.img" | tr -d ' ')
    b=$(od -An -tu1 -j 2062 -N 1 "$PI/misc.img" | tr -d ' ')
    if [ $((b & 15)) -gt $((a & 15)) ]; then echo b; else echo a; fi
}

# p2: the required program fails: 44, and slot A stays the active one.
pi_fails() {
    echo "active slot before: $(pi_active)"
    [ "$(pi_active)" = a ] || return 1
    expect_exit 44 timeout 120 abupdate apply --wait --properties "$PI/p2.txt" "$PI/p2.bin" \
        > /tmp/pi2.log 2>&1
    code=$?
    cat /tmp/pi2.log
    echo "active slot: $(pi_active)"
    [ "$code" -eq 0 ] && [ "$(pi_active)" = a ] && grep -q "error 44: postinstall of system" /tmp/pi2.log
}

# p3: the program hangs; the 4 s timeout kills it and its child: 45, slot not switched.
pi_timeout() {
    expect_exit 45 timeout 120 abupdate apply --wait --properties "$PI/p3.txt" "$PI/p3.bin" \
        > /tmp/pi3.log 2>&1
    code=$?
    cat /tmp/pi3.log
    left=$(for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline"; echo; done 2>/dev/null |
        grep -c "^sleep 1000")
    echo "active slot: $(pi_active); sleep 1000 processes left: $left"
    [ "$code" -eq 0 ] && [ "$(pi_active)" = a ] && [ "$left" -eq 0 ] &&
        grep -q "ran longer than 4 s" /tmp/pi3.log
}

pi_tick_state() {
    pid=$(cat /tmp/pi-tick.pid 2>/dev/null) || return 1
    sed 's/^[^)]*) \(.\).*/\1/' "/proc/$pid/stat"
}

pi_ticking() {
    [ -s /tmp/pi-ticks ]
}

# p1: system's (ext4) and vendor's (erofs) programs run with argv "<slot> 3" (slot B = 1)
# from the mounted partitions and report progress, which reaches the client as FINALIZING
# percentages. Vendor's then ticks every 0.1 s until /tmp/pi-release exists: suspended, it is
# stopped (state T in /proc, no ticks for 2 s); released while stopped and resumed, it ends.
# odm's optional program fails without failing the update; the slot switches; nothing stays
# mounted. The daemon gets a 60 s timeout here: a client starts slowly under emulation, and
# that time suspended is not counted is proven in tests/postinstall_runner.rs.
pi_progress() {
    pi_start_daemon 60 || return 1
    rm -f /tmp/pi-ticks /tmp/pi-tick.pid /tmp/pi-release
    timeout 120 abupdate apply --properties "$PI/p1.txt" "$PI/p1.bin" || return 1
    timeout 120 abupdate watch > /tmp/pi1.log 2>&1 &
    watch=$!
    within 300 pi_ticking || { tail -5 /tmp/pi-abupdated.log; return 1; }
    timeout 20 abupdate suspend || { tail -8 /tmp/pi-abupdated.log; return 1; }
    sleep 0.5
    state=$(pi_tick_state)
    before=$(wc -l < /tmp/pi-ticks)
    sleep 2
    after=$(wc -l < /tmp/pi-ticks)
    echo "suspended: state $state, ticks $before then $after"
    touch /tmp/pi-release
    timeout 20 abupdate resume || return 1
    wait "$watch"
    code=$?
    cat /tmp/pi1.log
    echo "watch exit $code"
    cat /tmp/pi-system.argv /tmp/pi-vendor.argv
    grep "postinst" /tmp/pi-abupdated.log | sed 's/^/daemon: /'
    finalizing=$(grep -c "^FINALIZING [1-9][0-9]*\.[0-9]% " /tmp/pi1.log)
    echo "FINALIZING progress lines: $finalizing; active slot $(pi_active)"
    echo "mounted: $(grep -c /run/postinstall /proc/mounts)"
    [ "$state" = T ] && [ "$before" -eq "$after" ] && [ "$code" -eq 0 ] &&
        [ "$finalizing" -ge 3 ] && [ "$(pi_active)" = b ] &&
        grep -q "^/run/postinstall/postinst 1 3$" /tmp/pi-system.argv &&
        grep -q "^/run/postinstall/postinst 1 3$" /tmp/pi-vendor.argv &&
        grep -q "optional postinstall failed" /tmp/pi-abupdated.log &&
        [ "$(grep -c /run/postinstall /proc/mounts)" -eq 0 ]
}

# triggerPostinstall("system") through android.os.UpdateEngineService (update_engine_client's
# --trigger_postinstall, followed) on p1, applied above: system's program runs again from the
# mounted partition (its argv file rewritten), its progress reaches the callback as FINALIZING
# (5) and the completion is 0; the status is UPDATED_NEED_REBOOT (6) again. Then made to fail:
# kPostinstallRunnerError (5), and the update stays applied (slot B still the next).
pi_trigger() {
    ln -sf abupdate /bin/update_engine_client || return 1
    rm -f /tmp/pi-system.argv /tmp/pi-system-fail
    timeout 60 update_engine_client --trigger_postinstall=system --follow > /tmp/pi4.log 2>&1
    code=$?
    cat /tmp/pi4.log
    echo "exit $code; argv: $(cat /tmp/pi-system.argv 2>/dev/null)"
    [ "$code" -eq 0 ] && grep -q "^/run/postinstall/postinst 1 3$" /tmp/pi-system.argv &&
        grep -q "onStatusUpdate(FINALIZING (5), 0\.[0-9]*[1-9]" /tmp/pi4.log &&
        grep -q "onStatusUpdate(UPDATED_NEED_REBOOT (6)" /tmp/pi4.log &&
        grep -q "onPayloadApplicationComplete(kSuccess (0))" /tmp/pi4.log || return 1
    touch /tmp/pi-system-fail
    timeout 60 update_engine_client --trigger_postinstall=system --follow > /tmp/pi5.log 2>&1
    code=$?
    rm -f /tmp/pi-system-fail
    cat /tmp/pi5.log
    echo "exit $code; active slot $(pi_active)"
    [ "$code" -eq 1 ] && [ "$(pi_active)" = b ] &&
        grep -q "onPayloadApplicationComplete(kPostinstallRunnerError (5))" /tmp/pi5.log &&
        grep -q "asked to fail" /tmp/pi-abupdated.log
}

# p4: product, a logical partition spread over two extents of super (the free space between
# and after slot A's partitions, as update_engine allocates it), is mapped with dm-linear for
# its postinstall, mounted from that mapping and unmapped after.
# p1 is forgotten first (resetStatus: slot A the next again).
pi_logical() {
    timeout 20 update_engine_client --reset_status || return 1
    rm -f /tmp/pi-product.argv
    timeout 120 abupdate apply --wait --properties "$PI/p4.txt" "$PI/p4.bin" > /tmp/pi6.log 2>&1
    code=$?
    cat /tmp/pi6.log
    grep "product" /tmp/pi-abupdated.log | sed 's/^/daemon: /'
    left=$(vm_images dm-ours | grep -c product_b)
    echo "exit $code; argv: $(cat /tmp/pi-product.argv 2>/dev/null); mappings left: $left"
    [ "$code" -eq 0 ] && [ "$left" -eq 0 ] && [ "$(pi_active)" = b ] &&
        grep -q "^/run/postinstall/postinst 1 3$" /tmp/pi-product.argv &&
        grep -qE "product_b: [2-9] extents in super, mapped as" /tmp/pi-abupdated.log
}

# A step, then how long it took.
pi_step() {
    pi_t=$(date +%s)
    step "$@"
    printf 'INFO %s took %ss\n' "$1" "$(($(date +%s) - pi_t))"
}

run_postinstall_steps() {
    pi_step pi-modules pi_modules
    pi_step pi-daemon pi_daemon
    pi_step pi-fails pi_fails
    pi_step pi-timeout pi_timeout
    pi_step pi-progress-suspend pi_progress
    pi_step pi-trigger pi_trigger
    pi_step pi-logical-extents pi_logical
}
