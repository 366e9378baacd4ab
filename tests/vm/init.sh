#!/bin/busybox sh
# /init of the test VM (see run.sh): loads the modules, runs each step, prints
# "STEP <name> PASS|FAIL" on the console, and powers off.
# ROOT_HASH and DATA_SHA come from the kernel command line.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/cryptsetup /data/state /etc
echo 'root:x:0:0::/:/bin/sh' > /etc/passwd
echo 'shell:x:2000:2000::/:/bin/sh' >> /etc/passwd
echo 'root:x:0:' > /etc/group
echo 'shell:x:2000:' >> /etc/group
export DM_DISABLE_UDEV=1
BINDER=binder:/dev/binder

step() {
    name=$1
    shift
    # The leading newline keeps a kernel message from sharing the line.
    if "$@" > "/tmp/$name.out" 2>&1; then
        printf '\nSTEP %s PASS\n' "$name"
    else
        printf '\nSTEP %s FAIL\n' "$name"
        sed "s/^/INFO $name: /" "/tmp/$name.out"
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

load_modules() {
    insmod /lib/modules/binder_linux.ko devices=binder,hwbinder,vndbinder &&
        insmod /lib/modules/loop.ko &&
        insmod /lib/modules/reed_solomon.ko &&
        insmod /lib/modules/dm-mod.ko &&
        insmod /lib/modules/dm-bufio.ko &&
        insmod /lib/modules/dm-verity.ko
}

binder_device() {
    [ -c /dev/binder ] || return 1
    # rsb_hub looks for binderfs; this kernel has the legacy device nodes only.
    mkdir -p /dev/binderfs && ln -s /dev/binder /dev/binderfs/binder &&
        chmod 0666 /dev/binder
}

hub_running() {
    # Logged once the hub holds handle 0, as its readiness notification is sent.
    kill -0 "$HUB" 2>/dev/null && grep -q "rsb_hub: serving on" /tmp/hub.log
}

service_manager() {
    RUST_LOG=info rsb_hub --insecure-allow-all > /tmp/hub.log 2>&1 &
    HUB=$!
    within 100 hub_running || { cat /tmp/hub.log; return 1; }
}

daemon_serving() {
    kill -0 "$DAEMON" 2>/dev/null && grep -q "serving abupdate" /tmp/abupdated.log
}

daemon_registered() {
    abupdated --binder "$BINDER" --state-dir /data/state --allowed-uids 0 \
        > /tmp/abupdated.log 2>&1 &
    DAEMON=$!
    within 100 daemon_serving || { cat /tmp/abupdated.log; return 1; }
}

status_call() {
    out=$(timeout 20 service_client "$BINDER" status) || return 1
    echo "$out"
    [ "$out" = "status: IDLE" ]
}

callback() {
    # A registered client hears the current status at once, from the service's thread.
    out=$(timeout 20 service_client "$BINDER" watch 1) || return 1
    echo "$out"
    echo "$out" | grep -qx "event: IDLE"
}

expect_exit() {
    want=$1
    shift
    "$@"
    got=$?
    echo "exit $got, expected $want"
    [ "$got" -eq "$want" ]
}

permission_check() {
    # Root may cancel but nothing runs: Busy (35). Uid 2000 is not allowed: 36.
    expect_exit 35 timeout 20 service_client "$BINDER" cancel &&
        expect_exit 36 timeout 20 su -s /bin/sh -c "service_client $BINDER cancel" shell
}

loop_devices() {
    losetup /dev/loop0 /data/data.img && losetup /dev/loop1 /data/hash.img &&
        losetup /dev/loop2 /data/fec.img && losetup /dev/loop3 /data/bad.img &&
        [ "$(sha256sum /dev/loop0 | cut -d' ' -f1)" = "$DATA_SHA" ]
}

verity_good() {
    veritysetup open /dev/loop0 vgood /dev/loop1 "$ROOT_HASH" || return 1
    sum=$(sha256sum /dev/mapper/vgood | cut -d' ' -f1)
    veritysetup close vgood
    [ "$sum" = "$DATA_SHA" ]
}

verity_corrupt_eio() {
    veritysetup open /dev/loop3 vbad /dev/loop1 "$ROOT_HASH" || return 1
    if dd if=/dev/mapper/vbad of=/dev/null bs=4096 2>/tmp/dd.err; then
        echo "read the corrupted device without error"
        veritysetup close vbad
        return 1
    fi
    cat /tmp/dd.err
    veritysetup close vbad
    dmesg | grep -i "verity" | tail -5
    grep -q "Input/output error" /tmp/dd.err && dmesg | grep -q "data block 3 is corrupted"
}

verity_fec_corrects() {
    veritysetup open /dev/loop3 vfec /dev/loop1 "$ROOT_HASH" \
        --fec-device=/dev/loop2 --fec-roots=2 || return 1
    sum=$(sha256sum /dev/mapper/vfec | cut -d' ' -f1)
    veritysetup close vfec
    dmesg | grep -i "fec" | tail -3
    [ "$sum" = "$DATA_SHA" ] && dmesg | grep -q "FEC.*corrected"
}

step modules load_modules
step binder-device binder_device
step service-manager service_manager
step daemon-registered daemon_registered
step status-call status_call
step callback callback
step permission-check permission_check
step loop-devices loop_devices
step verity-good verity_good
step verity-corrupt-eio verity_corrupt_eio
step verity-fec-corrects verity_fec_corrects
printf '\nALL STEPS DONE\n'
poweroff -f
