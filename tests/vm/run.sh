#!/bin/bash
# Boots Debian 12's kernel in QEMU and runs the whole update story on a real kernel, as
# on a device: a service manager on the kernel's /dev/binder, abupdated over an A/B
# device whose super (system and vendor as logical partitions), vbmeta and misc are loop
# devices named in /dev/block/by-name, and the abupdate CLI as its client. First the
# device-mapper adapter alone: a linear+zero table written through and read back at the
# mapped sectors, and a left-behind mapping found and removed. A signed payload is applied
# through Binder, the target partitions written through dm-linear mappings; abupdated is
# killed half-way (its mappings stay) and restarted, and the update removes them, resumes
# from its checkpoint to the end and unmaps; misc shows the slot switch; a simulated
# reboot maps slot B from its own metadata slot, read-only, slot A's metadata unchanged;
# every written partition opens through dm-verity with the root digest from the new
# vbmeta's hashtree descriptors and reads back whole; a corrupted block is an I/O error
# without FEC and is corrected with it. Virtual A/B (vab.sh): a snapshot payload applied
# through Binder to a Virtual A/B super (COWs in its -cow partitions, read by AOSP's lpdump and
# inspect_cow), the new slot served as base plus COW by our code through the kernel's nbd
# driver and read whole through dm-verity, then merged by the service (killed mid-merge and
# resumed); before the reboot, a fallback to the old slot cancels the update, which is then
# applied again. Prints one line per step and exits 0 only if every step passed.
#
# Needs (Debian 12): qemu-system-x86 busybox-static cryptsetup-bin cpio xz-utils
# binutils, f2fs-tools (mkfs.f2fs, run in the VM), apt-get access to the Debian archive (the kernel package), cargo (our debug
# binaries; `cargo test` has built their dependencies), AOSP's static lpdump and inspect_cow
# in $ABUPDATE_SHARED/tools/aosp/bin (default ../shared beside the checkout). The kernel is cached in
# $ABUPDATE_VM_CACHE (default: the cargo target dir's vm-cache/).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
cache=${ABUPDATE_VM_CACHE:-$target_dir/vm-cache}
timeout_s=${ABUPDATE_VM_TIMEOUT:-600}
# ABUPDATE_VM_STEPS=modules,dm-adapter runs and checks only those steps (while developing one).
only=${ABUPDATE_VM_STEPS:-}

say() { echo "vm: $*" >&2; }
die() { echo "vm: FAIL: $*" >&2; exit 1; }

for tool in qemu-system-x86_64 cpio veritysetup xz strip apt-get apt-cache dpkg-deb ldd cargo \
    mkfs.ext4 mkfs.erofs mkfs.f2fs; do
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
modules=(drivers/android/binder_linux.ko drivers/block/loop.ko lib/reed_solomon/reed_solomon.ko
    drivers/md/dm-mod.ko drivers/md/dm-bufio.ko drivers/md/dm-verity.ko drivers/md/dm-zero.ko)
# The Virtual A/B steps serve a snapshot through nbd (tests/vm/vab.sh).
modules+=(drivers/block/nbd.ko)
# Postinstall mounts ext4 and erofs (tests/vm/postinstall.sh).
modules+=(crypto/crc32c_generic.ko lib/libcrc32c.ko lib/crc16.ko fs/mbcache.ko fs/jbd2/jbd2.ko
    fs/ext4/ext4.ko fs/erofs/erofs.ko)
# COW images on an f2fs /data (tests/vm/vab_data.sh).
modules+=(crypto/crc32_generic.ko lib/zstd/zstd_compress.ko lib/lz4/lz4_compress.ko lib/lz4/lz4hc_compress.ko
    fs/f2fs/f2fs.ko)
have_all=1
for m in "${modules[@]}"; do
    [ -f "$kdir/lib/modules/$kver/kernel/$m" ] || have_all=0
done
if [ ! -f "$kdir/vmlinux" ] || [ "$have_all" -eq 0 ]; then
    say "fetching $kpkg"
    rm -rf "$kdir" && mkdir -p "$kdir"
    (cd "$kdir" && apt-get download "$kpkg" >/dev/null 2>&1) || die "apt-get download $kpkg"
    dpkg-deb --fsys-tarfile "$kdir"/*.deb | tar -x -C "$kdir" \
        "./boot/vmlinuz-$kver" "${modules[@]/#/./lib/modules/$kver/kernel/}"
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

# --- Our binaries: the service, the CLI, a minimal service manager, the image maker. ---
say "building abupdated, abupdate, service_manager, vm_images"
(cd "$root" && cargo build --quiet --locked --bin abupdated --bin abupdate \
    --example service_manager --example vm_images) || die "cargo build"
bins=("$target_dir/debug/abupdated" "$target_dir/debug/abupdate"
    "$target_dir/debug/examples/service_manager" "$target_dir/debug/examples/vm_images")

# --- The initramfs. ---
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fs=$work/root
mkdir -p "$fs"/{bin,sbin,dev,proc,sys,tmp,run,lib/modules,data}
cp "$busybox" "$fs/bin/busybox"
find "$kdir/lib/modules" -name '*.ko' -exec cp {} "$fs/lib/modules/" \;
# AOSP's own readers of super's metadata and of COW images (static host builds, see
# ../shared/tools/aosp/README) check what the Virtual A/B steps wrote.
aosp_bin=${ABUPDATE_SHARED:-$root/../shared}/tools/aosp/bin
for tool in lpdump inspect_cow; do
    [ -x "$aosp_bin/$tool" ] || die "$aosp_bin/$tool not found (AOSP's $tool, see ../shared)"
    cp "$aosp_bin/$tool" "$fs/bin/$tool"
done
for bin in "${bins[@]}" "$(command -v veritysetup)" "$(command -v mkfs.f2fs)"; do
    strip -o "$fs/bin/$(basename "$bin")" "$bin"
    # The ldd closure, at the same paths.
    ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\/.*ld-linux/ {print $1}' | while read -r lib; do
        cp --parents -L -n "$lib" "$fs"
    done
done
[ -e "$fs/lib64/ld-linux-x86-64.so.2" ] || die "the dynamic loader is not in the initramfs"
cp "$here/init.sh" "$fs/init"
chmod +x "$fs/init"
cp "$here/postinstall.sh" "$fs/postinstall.sh"
cp "$here/vab.sh" "$fs/vab.sh"
cp "$here/vab_data.sh" "$fs/vab_data.sh"
cp "$here/vab_postinstall.sh" "$fs/vab_postinstall.sh"
# The collapse after snapuserd's merge (tests/vm/vab_collapse.sh): its stand-in snapuserd
# merges with AOSP's applycow.
cp "$here/vab_collapse.sh" "$fs/vab_collapse.sh"
[ -x "$aosp_bin/applycow" ] || die "$aosp_bin/applycow not found (AOSP's applycow, see ../shared)"
cp "$aosp_bin/applycow" "$fs/bin/applycow"

# Slot A, misc, keys and a signed payload for slot B (see examples/vm_images.rs).
"$target_dir/debug/examples/vm_images" build "$fs/data" || die "vm_images build"
# The postinstall device (ext4 and erofs partitions, payloads with postinstall programs).
"$here/postinstall_images.sh" "$target_dir/debug/abupdate" "$fs/data/misc.img" "$fs/data/pi" ||
    die "postinstall_images.sh"
"$target_dir/debug/examples/vm_images" lp-super "$fs/data/pi/super-lp.img" || die "vm_images lp-super"
# The Virtual A/B device with a postinstall program (tests/vm/vab_postinstall.sh).
"$here/vab_postinstall_images.sh" "$target_dir/debug/examples/vm_images" "$fs/data/vpi" ||
    die "vab_postinstall_images.sh"
# An empty ext4 userdata for the COW image step (tests/vm/vab_data.sh).
mkdir -p "$fs/data/vabdata"
truncate -s 8M "$fs/data/vabdata/userdata.img"
mkfs.ext4 -q -F -b 4096 -O ^has_journal "$fs/data/vabdata/userdata.img" || die "mkfs.ext4 userdata"

# The collapse steps' Virtual A/B device (tests/vm/vab_collapse.sh): its system an ext4 file
# system, build 1 and build 2 (a file changed in place, one rewritten, one added), and the
# SHA-256 of build 2's files, which the VM checks through the mounted file system.
vabc_fs=$work/vabc-fs
mkdir -p "$vabc_fs/1/etc" "$vabc_fs/1/bin" || die "mkdir $vabc_fs"
echo "build 1" > "$vabc_fs/1/etc/build.txt"
head -c 1572864 /dev/urandom > "$vabc_fs/1/bin/blob"
cp -a "$vabc_fs/1" "$vabc_fs/2" || die "cp $vabc_fs"
echo "build 2" > "$vabc_fs/2/etc/build.txt"
head -c 8192 /dev/urandom | dd of="$vabc_fs/2/bin/blob" bs=4096 seek=100 conv=notrunc 2>/dev/null
head -c 20000 /dev/urandom > "$vabc_fs/2/etc/new.bin"
for v in 1 2; do
    mkfs.ext4 -q -F -b 4096 -O ^has_journal -d "$vabc_fs/$v" "$vabc_fs/system-$v.img" 4M >/dev/null ||
        die "mkfs.ext4 system-$v"
done
"$target_dir/debug/examples/vm_images" build-vabc "$fs/data/vabc" "$vabc_fs/system-1.img" \
    "$vabc_fs/system-2.img" || die "vm_images build-vabc"
(cd "$vabc_fs/2" && find . -type f | sort | xargs sha256sum) > "$fs/data/vabc/files.sha256"

(cd "$fs" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"

# --- Boot. ---
say "booting $kpkg ($(du -m "$work/initramfs.cpio" | cut -f1) MiB initramfs)"
start=$(date +%s)
log=$work/console.log
timeout "$timeout_s" qemu-system-x86_64 -M pc -nic none -accel tcg -cpu max -smp 2 -m 1G \
    -nographic -no-reboot -kernel "$kdir/vmlinux" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3${only:+ ONLY=$only}" \
    > "$log" 2>&1 || say "qemu exited with $? (timeout ${timeout_s}s)"
elapsed=$(( $(date +%s) - start ))

# --- Verdict. ---
# Once, into a file: `tr | grep -q` would fail under pipefail when grep stops early.
tr -d '\r' < "$log" > "$work/console.txt"
log=$work/console.txt
grep -E '^(STEP|INFO) ' "$log" || true
expected=(modules dm-adapter binder-device service-manager partitions daemon-registered status-call
    permission-check verify apply-interrupted restarted-interrupted resume-to-the-end
    slot-switched reboot-maps-slot-b verity-system verity-vendor verity-corrupt-eio verity-fec-corrects)
# update_engine's face (android.os.UpdateEngineService, update_engine_client's command lines).
expected+=(ue-daemon ue-full-update ue-already-installed ue-suspend-cancel ue-bad-payload
    ue-stable-fd ue-merge)
expected+=(vab-device vab-apply vab-snapshots vab-nbd-verity vab-rollback vab-reapply vab-reboot
    vab-merge)
expected+=(vab-data-image-extents vab-data-image-f2fs)
expected+=(vabc-device vabc-apply vabc-init vabc-reboot vabc-collapse)
expected+=(pi-modules pi-daemon pi-fails pi-timeout pi-progress-suspend pi-trigger pi-logical-extents)
expected+=(vpi-device vpi-fails vpi-killed vpi-apply vpi-trigger)
if [ -n "$only" ]; then
    IFS=, read -r -a expected <<< "$only"
fi
failed=0
for step in "${expected[@]}"; do
    if ! grep -qx "STEP $step PASS" "$log"; then
        echo "vm: step $step did not pass" >&2
        failed=1
    fi
done
if ! grep -qx "ALL STEPS DONE" "$log"; then
    echo "vm: the test script did not finish; console log:" >&2
    tail -40 "$log" >&2
    failed=1
fi
[ -n "${ABUPDATE_VM_LOG:-}" ] && cp "$log" "$ABUPDATE_VM_LOG"
if [ "$failed" -ne 0 ]; then
    die "see above (boot and test took ${elapsed}s)"
fi
echo "vm: all ${#expected[@]} steps passed in ${elapsed}s"
