#!/bin/bash
# Compiles aidl/android/os/*.aidl with Debian's aidl (Android 10's compiler, independent of
# rsbinder-aidl) and checks that every method has update_engine's transaction number
# (FIRST_CALL_TRANSACTION + n, as AOSP's IUpdateEngine, IUpdateEngineCallback and the frozen
# IUpdateEngineStable have them): a stock client's transaction n reaches the same method here.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v aidl >/dev/null || { echo "FAIL: 'aidl' not found (apt package aidl)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() {
    local iface=$1
    shift
    aidl --lang=java --structured -I "$root/aidl" -o "$work" "$root/aidl/android/os/$iface.aidl"
    local java=$work/android/os/$iface.java n=0
    for method in "$@"; do
        grep -q "static final int TRANSACTION_$method = (android.os.IBinder.FIRST_CALL_TRANSACTION + $n);" "$java" ||
            { echo "FAIL: $iface.$method is not transaction $((n + 1))" >&2; exit 1; }
        n=$((n + 1))
    done
    [ "$(grep -c 'static final int TRANSACTION_' "$java")" -eq "$n" ] ||
        { echo "FAIL: $iface has methods beyond the $n expected" >&2; exit 1; }
    echo "$iface: $n transactions as update_engine's"
}

check IUpdateEngine applyPayload applyPayloadFd bind unbind suspend resume cancel resetStatus \
    setShouldSwitchSlotOnReboot resetShouldSwitchSlotOnReboot verifyPayloadApplicable \
    allocateSpaceForPayload cleanupSuccessfulUpdate triggerPostinstall
check IUpdateEngineCallback onStatusUpdate onPayloadApplicationComplete
check IUpdateEngineStable applyPayloadFd bind unbind
check IUpdateEngineStableCallback onStatusUpdate onPayloadApplicationComplete
