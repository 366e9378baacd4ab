#!/bin/bash
# Proves that aidl/ is Android 10 AIDL: Debian's `aidl` (AOSP 10) compiles every file with
# --lang=java --structured, and the generated Java, plus an example caller, compiles with
# javac against our minimal android.os stubs. Fails when a tool is missing: CI installs
# the apt packages `aidl` and `openjdk-17-jdk-headless`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

for tool in aidl javac; do
    if ! command -v "$tool" >/dev/null; then
        echo "FAIL: '$tool' not found (apt packages: aidl openjdk-17-jdk-headless)" >&2
        exit 1
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mapfile -t sources < <(find "$root/aidl" -name '*.aidl' | sort)
if [ "${#sources[@]}" -eq 0 ]; then
    echo "FAIL: no .aidl files under $root/aidl" >&2
    exit 1
fi

# One aidl run per file, as the build system does: a file that only compiles next to
# another would pass a single multi-file run.
for src in "${sources[@]}"; do
    aidl --lang=java --structured -I "$root/aidl" -o "$work/gen" "$src"
done

mapfile -t generated < <(find "$work/gen" -name '*.java' | sort)
if [ "${#generated[@]}" -ne "${#sources[@]}" ]; then
    echo "FAIL: ${#sources[@]} .aidl files gave ${#generated[@]} .java files" >&2
    exit 1
fi

mapfile -t stubs < <(find "$here/stubs" -name '*.java' | sort)
mapfile -t callers < <(find "$here/java" -name '*.java' | sort)
javac -Xlint:all -Werror -d "$work/classes" "${stubs[@]}" "${generated[@]}" "${callers[@]}"

echo "aidl check: ${#sources[@]} AIDL files -> Java, javac OK"
