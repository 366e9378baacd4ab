#!/bin/bash
# Checks the AOSP build files without an AOSP tree: every Android.bp parses and is
# formatted as `bpfmt` (Debian package blueprint-tools) would write it. `bpfmt -d`
# exits 0 even when it prints a diff, so any output counts as a failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
command -v bpfmt >/dev/null || { echo "FAIL: bpfmt not found (apt package blueprint-tools)" >&2; exit 1; }

mapfile -t files < <(cd "$root" && find . -name Android.bp -not -path './target/*' | sort)
[ "${#files[@]}" -gt 0 ] || { echo "FAIL: no Android.bp under $root" >&2; exit 1; }

status=0
for bp in "${files[@]}"; do
    if ! diff=$(cd "$root" && bpfmt -d "$bp" 2>&1); then
        echo "FAIL: $bp does not parse:" >&2
        echo "$diff" >&2
        status=1
    elif [ -n "$diff" ]; then
        echo "FAIL: $bp is not bpfmt-formatted:" >&2
        echo "$diff" >&2
        status=1
    else
        echo "ok: $bp"
    fi
done
exit "$status"
