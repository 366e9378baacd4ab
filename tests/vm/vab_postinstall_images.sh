#!/bin/bash
# Builds /data/vpi for tests/vm/vab_postinstall.sh (called by run.sh on the host): two ext4
# builds of `system` sharing 1 MiB of data, and with `vm_images vab-postinstall` a Virtual A/B
# device running build 1 and a snapshot payload to build 2 whose `system` has a postinstall
# program. Build 1's `postinst` only says it is the old one and fails; build 2's reads
# new-build.txt, a file only build 2 has, reports progress, fails while /tmp/vpi-fail
# exists and waits while /tmp/vpi-hold does.
# Usage: vab_postinstall_images.sh VM_IMAGES OUT_DIR. Needs mkfs.ext4 (e2fsprogs).
set -euo pipefail
vm_images=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/v1" "$work/v2"
head -c 1048576 /dev/urandom > "$work/v1/shared.bin"
cp "$work/v1/shared.bin" "$work/v2/shared.bin"
printf '#!/bin/sh\necho "old build ran: $0 $*" > /tmp/vpi.argv\nexit 9\n' > "$work/v1/postinst"
cat > "$work/v2/postinst" <<'PROGRAM'
#!/bin/sh
echo "$0 $*" > /tmp/vpi.argv
cat "${0%/*}/new-build.txt" > /tmp/vpi.read || exit 2
for f in 0.25 0.5 0.75; do echo "global_progress $f" >&"$2"; sleep 0.3; done
if [ -e /tmp/vpi-fail ]; then echo 'asked to fail' >&2; exit 7; fi
while [ -e /tmp/vpi-hold ]; do sleep 0.1; done
echo 'global_progress 1' >&"$2"
echo 'system postinstall done'
PROGRAM
echo "build 2 of system, read from its snapshot" > "$work/v2/new-build.txt"
chmod 755 "$work/v1/postinst" "$work/v2/postinst"
for v in v1 v2; do
    mkfs.ext4 -q -F -b 4096 -O ^has_journal -d "$work/$v" "$work/system-$v.img" 2M > /dev/null 2>&1
done
"$vm_images" vab-postinstall "$out" "$work/system-v1.img" "$work/system-v2.img"
