#!/bin/bash
# Builds /data/pi for tests/vm/postinstall.sh (called by run.sh on the host): a host device
# directory with ext4 `system`, erofs `vendor` and `odm` partitions of both slots, misc.img
# (copied from the main story's, slot A running) and three unsigned payloads whose partitions
# carry postinstall programs, and a fourth for `product`, a logical partition in
# super-lp.img (run.sh makes it with vm_images lp-super). Usage: postinstall_images.sh
# ABUPDATE MISC.img OUT_DIR
# Needs mkfs.ext4 (e2fsprogs) and mkfs.erofs (erofs-utils).
set -euo pipefail
abupdate=$1
misc=$2
out=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cp "$misc" "$out/misc.img"

# Writes the program $2 as postinst in tree $1.
program() {
    mkdir -p "$1"
    printf '#!/bin/sh\n%s\n' "$2" > "$1/postinst"
    chmod 755 "$1/postinst"
}

# Reports progress in steps with pauses (so that the client sees them), argv to a file; $3
# runs before the last step.
progress() {
    program "$work/$1" "echo \"\$0 \$*\" > /tmp/pi-$2.argv
for f in 0.25 0.5 0.75; do echo \"global_progress \$f\" >&\$2; sleep 0.3; done
${3:-}
echo 'global_progress 1' >&\$2
echo '$2 postinstall done'"
}

# system's fails while /tmp/pi-system-fail exists (a triggerPostinstall that fails).
progress p1sys system "if [ -e /tmp/pi-system-fail ]; then echo 'asked to fail' >&2; exit 5; fi"
# Ticks every 0.1 s until /tmp/pi-release exists (at most a minute).
progress p1ven vendor "echo \$\$ > /tmp/pi-tick.pid
i=0
while [ ! -e /tmp/pi-release ] && [ \$i -lt 600 ]; do
    i=\$((i + 1)); echo \$i >> /tmp/pi-ticks; sleep 0.1
done"
progress p4prod product
program "$work/p1odm" "echo 'odm: nothing to do here' >&2; exit 3"
program "$work/p2sys" "echo 'out of space for dex files' >&2; exit 1"
program "$work/p3sys" "echo 'waiting forever'; sleep 1000"

ext4() { mkfs.ext4 -q -F -b 4096 -d "$work/$2" "$work/$1.img" "${3:-256K}" > /dev/null 2>&1; }
erofs() { mkfs.erofs --quiet -zlz4hc "$work/$1.img" "$work/$2"; }
ext4 sys1 p1sys
erofs ven1 p1ven
erofs odm1 p1odm
ext4 sys2 p2sys
ext4 sys3 p3sys
ext4 prod4 p4prod 2M

# Slot partitions: large enough for every payload's image.
for slot in a b; do
    truncate -s 256K "$out/system_$slot.img"
    truncate -s "$(stat -c %s "$work/ven1.img")" "$out/vendor_$slot.img"
    truncate -s "$(stat -c %s "$work/odm1.img")" "$out/odm_$slot.img"
done

build() {
    name=$1
    shift
    # Newer than the running build (/data/build.prop, the main story's build 1).
    "$abupdate" payload build --out "$out/$name.bin" --properties "$out/$name.txt" \
        --max-timestamp 1700000100 "$@" > /dev/null
}
build p1 --partition system="$work/sys1.img" --partition vendor="$work/ven1.img" \
    --partition odm="$work/odm1.img" --postinstall system=postinst:ext4 \
    --postinstall vendor=postinst:erofs --postinstall odm=postinst:erofs:optional
build p2 --partition system="$work/sys2.img" --postinstall system=postinst:ext4
build p3 --partition system="$work/sys3.img" --postinstall system=postinst:ext4
# p4: product, a logical partition of super-lp.img (vm_images lp-super), in group main
# (3 MiB: update_engine allows a slot at most half of super).
build p4 --partition product="$work/prod4.img" --postinstall product=postinst:ext4 \
    --group main=3145728:product
