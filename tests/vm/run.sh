#!/bin/bash
# Boots Debian 12's kernel in QEMU and checks, on a real kernel, what the build machine's
# own kernel cannot show: Binder between abupdated and a client through the service
# manager rsb_hub on /dev/binder, loop devices, and dm-verity (a corrupted block is an
# I/O error without FEC and is corrected with it). Prints one line per step and exits 0
# only if every step passed.
#
# Needs (Debian 12): qemu-system-x86 busybox-static cryptsetup-bin cpio xz-utils
# binutils, apt-get access to the Debian archive (the kernel package), cargo (our
# binaries, and rsb_hub from the crate rsbinder-tools 0.12.0 unless RSB_HUB names one).
# Downloads and builds are cached in $ABUPDATE_VM_CACHE (default: the cargo target dir's
# vm-cache/); a cached run takes well under a minute.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
cache=${ABUPDATE_VM_CACHE:-$target_dir/vm-cache}
timeout_s=${ABUPDATE_VM_TIMEOUT:-300}

say() { echo "vm: $*" >&2; }
die() { echo "vm: FAIL: $*" >&2; exit 1; }

for tool in qemu-system-x86_64 cpio veritysetup xz strip apt-get apt-cache dpkg-deb ldd cargo; do
    command -v "$tool" >/dev/null || die "'$tool' not found (see the header of $0)"
done
busybox=/bin/busybox
[ -x "$busybox" ] && file_out=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
case "${file_out:-}" in
    *"not a dynamic executable"*) ;;
    *) die "$busybox must be the static busybox (apt package busybox-static)" ;;
esac
mkdir -p "$cache"

# --- The kernel: Debian 12's, uncompressed so that QEMU boots it fast (PVH entry). ---
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || die "no kernel package found (run apt-get update)"
kver=${kpkg#linux-image-}
kdir=$cache/$kpkg
if [ ! -f "$kdir/vmlinux" ]; then
    say "fetching $kpkg"
    rm -rf "$kdir" && mkdir -p "$kdir"
    (cd "$kdir" && apt-get download "$kpkg" >/dev/null 2>&1) || die "apt-get download $kpkg"
    dpkg-deb --fsys-tarfile "$kdir"/*.deb | tar -x -C "$kdir" \
        "./boot/vmlinuz-$kver" \
        "./lib/modules/$kver/kernel/drivers/android/binder_linux.ko" \
        "./lib/modules/$kver/kernel/drivers/block/loop.ko" \
        "./lib/modules/$kver/kernel/lib/reed_solomon/reed_solomon.ko" \
        "./lib/modules/$kver/kernel/drivers/md/dm-mod.ko" \
        "./lib/modules/$kver/kernel/drivers/md/dm-bufio.ko" \
        "./lib/modules/$kver/kernel/drivers/md/dm-verity.ko"
    # The bzImage carries the kernel as an XZ stream: decompressing it here once saves
    # seconds of emulated decompression at every boot.
    offset=$(LC_ALL=C grep -m1 -obUaP '\xFD7zXZ\x00' "$kdir/boot/vmlinuz-$kver" | awk -F: 'NR == 1 {print $1}')
    [ -n "$offset" ] || die "no XZ stream in vmlinuz-$kver"
    tail -c +$((offset + 1)) "$kdir/boot/vmlinuz-$kver" > "$kdir/vmlinux.xz"
    xz -dc --single-stream "$kdir/vmlinux.xz" > "$kdir/vmlinux.tmp"
    rm "$kdir/vmlinux.xz"
    mv "$kdir/vmlinux.tmp" "$kdir/vmlinux"
    rm -f "$kdir"/*.deb
fi

# --- rsb_hub, the service manager for Linux. ---
rsb_hub=${RSB_HUB:-$cache/rsbinder-tools/bin/rsb_hub}
if [ ! -x "$rsb_hub" ]; then
    say "building rsb_hub (cargo install rsbinder-tools 0.12.0)"
    CARGO_TARGET_DIR=$cache/rsbinder-tools-build \
        cargo install --quiet rsbinder-tools --version 0.12.0 --locked --root "$cache/rsbinder-tools" \
        || die "cargo install rsbinder-tools"
fi

# --- Our binaries. ---
say "building abupdated and the example client"
(cd "$root" && cargo build --quiet --bin abupdated --example service_client) || die "cargo build"
abupdated=$target_dir/debug/abupdated
client=$target_dir/debug/examples/service_client

# --- The initramfs. ---
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fs=$work/root
mkdir -p "$fs"/{bin,sbin,dev,proc,sys,tmp,run,lib/modules,data}
cp "$busybox" "$fs/bin/busybox"
find "$kdir/lib/modules" -name '*.ko' -exec cp {} "$fs/lib/modules/" \;
for bin in "$abupdated" "$client" "$rsb_hub" "$(command -v veritysetup)"; do
    strip -o "$fs/bin/$(basename "$bin")" "$bin"
    # The ldd closure, at the same paths.
    ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\/.*ld-linux/ {print $1}' | while read -r lib; do
        cp --parents -L -n "$lib" "$fs"
    done
done
[ -e "$fs/lib64/ld-linux-x86-64.so.2" ] || die "the dynamic loader is not in the initramfs"
cp "$here/init.sh" "$fs/init"
chmod +x "$fs/init"

# dm-verity images: 4 MiB of data, its hash tree and FEC (2 roots), and a copy of the
# data with one corrupted 4 KiB block.
head -c $((4 << 20)) /dev/urandom > "$fs/data/data.img"
truncate -s 0 "$fs/data/hash.img" "$fs/data/fec.img"
root_hash=$(veritysetup format "$fs/data/data.img" "$fs/data/hash.img" \
    --fec-device="$fs/data/fec.img" --fec-roots=2 | awk '/Root hash:/ {print $3}')
[ -n "$root_hash" ] || die "veritysetup format gave no root hash"
cp "$fs/data/data.img" "$fs/data/bad.img"
printf 'corrupted block!' | dd of="$fs/data/bad.img" bs=1 seek=$((3 * 4096 + 100)) conv=notrunc status=none
data_sha=$(sha256sum "$fs/data/data.img" | cut -d' ' -f1)

(cd "$fs" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"

# --- Boot. ---
say "booting $kpkg ($(du -m "$work/initramfs.cpio" | cut -f1) MiB initramfs)"
start=$(date +%s)
log=$work/console.log
timeout "$timeout_s" qemu-system-x86_64 -M pc -nic none -accel tcg -cpu max -smp 2 -m 1G \
    -nographic -no-reboot -kernel "$kdir/vmlinux" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 ROOT_HASH=$root_hash DATA_SHA=$data_sha" \
    > "$log" 2>&1 || say "qemu exited with $? (timeout ${timeout_s}s)"
elapsed=$(( $(date +%s) - start ))

# --- Verdict. ---
tr -d '\r' < "$log" | grep -E '^(STEP|INFO) ' || true
expected=(modules binder-device service-manager daemon-registered status-call callback
    permission-check loop-devices verity-good verity-corrupt-eio verity-fec-corrects)
failed=0
for step in "${expected[@]}"; do
    if ! tr -d '\r' < "$log" | grep -qx "STEP $step PASS"; then
        echo "vm: step $step did not pass" >&2
        failed=1
    fi
done
if ! tr -d '\r' < "$log" | grep -qx "ALL STEPS DONE"; then
    echo "vm: the test script did not finish; console log:" >&2
    tail -40 "$log" >&2
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    [ -n "${ABUPDATE_VM_LOG:-}" ] && cp "$log" "$ABUPDATE_VM_LOG"
    die "see above (boot and test took ${elapsed}s)"
fi
echo "vm: all ${#expected[@]} steps passed in ${elapsed}s"
