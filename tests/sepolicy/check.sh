#!/bin/bash
# Builds sepolicy/ inside AOSP's platform policy as Soong does, with every neverallow, for
# user and userdebug builds of Android 14 and 15 (../shared/tools/aosp-sepolicy/check, the
# oracle), with sepolicy/aosp-platform.patch applied to the platform first: the one way
# sepolicy/README.md gives a platform owner. Then builds the patched platform policy alone,
# so that the patch cannot break a product that does not carry abupdate.
# Needs: apt-get install -y checkpolicy secilc m4 policycoreutils. The oracle takes about 2 minutes
# on 2 idle cores; this runs it one and a half times (29 minutes measured at load 20).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${ABUPDATE_SHARED:-$root/../shared}
check=$shared/tools/aosp-sepolicy/check
[ -x "$check" ] || { echo "FAIL: $check not found (set ABUPDATE_SHARED)" >&2; exit 1; }
patch=$root/sepolicy/aosp-platform.patch
# The oracle skips its file_contexts step without setfiles: fail instead.
export PATH="$PATH:/usr/sbin:/sbin"
for t in m4 checkpolicy secilc setfiles; do
  command -v $t >/dev/null || { echo "FAIL: $t not found (apt-get install -y checkpolicy secilc m4 policycoreutils)" >&2; exit 1; }
done

echo "== sepolicy/ with aosp-platform.patch"
"$check" "$root/sepolicy" "$patch"

echo "== aosp-platform.patch alone (a product without abupdate; user builds, where the rule applies)"
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
VARIANTS=user "$check" "$empty" "$patch"
