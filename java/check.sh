#!/bin/bash
# Builds the Java client library (java/com/abupdate/client) against the Java that Debian's
# `aidl` (AOSP 10) generates from aidl/com/abupdate, and runs its test (a main(), no JUnit)
# on the JVM with the runnable in-process stand-ins of java/tests/stubs (the other android.os
# classes the generated code names come from tests/aidl/stubs, which only type-check).
# Fails when a tool is missing: CI installs the apt packages `aidl` and
# `openjdk-17-jdk-headless`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

for tool in aidl javac java; do
    if ! command -v "$tool" >/dev/null; then
        echo "FAIL: '$tool' not found (apt packages: aidl openjdk-17-jdk-headless)" >&2
        exit 1
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for src in "$root"/aidl/com/abupdate/*.aidl; do
    aidl --lang=java --structured -I "$root/aidl" -o "$work/gen" "$src"
done

stubs=()
for stub in "$here"/tests/stubs/android/os/*.java; do
    stubs+=("$stub")
done
for stub in "$root"/tests/aidl/stubs/android/os/*.java; do
    [ -e "$here/tests/stubs/android/os/$(basename "$stub")" ] || stubs+=("$stub")
done
mapfile -t generated < <(find "$work/gen" -name '*.java' | sort)
mapfile -t library < <(find "$here/com" -name '*.java' | sort)
mapfile -t tests < <(find "$here/tests/com" -name '*.java' | sort)
javac -Xlint:all -Werror -d "$work/classes" "${stubs[@]}" "${generated[@]}" "${library[@]}" \
    "${tests[@]}"
java -ea -cp "$work/classes" com.abupdate.client.UpdateManagerTest
