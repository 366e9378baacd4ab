#!/bin/bash
# End-to-end check of abupdate on Cuttlefish (see README.md): the service is registered,
# answers, refuses an unprivileged caller, applies an OTA from the other slot's build,
# the device boots the new slot, and update_verifier marks it successful.
#
# usage: run.sh OTA_ZIP     (a full or incremental OTA zip made by ota_from_target_files
#                            for this device; its payload.bin and payload_properties.txt
#                            are used)
# Needs: adb on PATH and one running userdebug Cuttlefish device with abupdate installed
# (ANDROID_SERIAL selects it when there are several), unzip.
set -euo pipefail

ota=${1:?usage: $0 OTA_ZIP}
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
sh() { adb shell "$@"; }

step "device"
adb wait-for-device
adb root >/dev/null
adb wait-for-device
[ "$(sh getprop ro.build.ab_update)" = "true" ] || fail "not an A/B device"
slot_before=$(sh getprop ro.boot.slot_suffix)
echo "running slot $slot_before"

step "service registered and answering"
sh service check abupdate | grep -q "found" || fail "abupdate is not registered"
sh dumpsys abupdate | tee /dev/stderr | grep -q "state: IDLE" || fail "dumpsys: not idle"
sh abupdate status
sh abupdate slots

step "SELinux: no denials for abupdated so far"
if sh "dmesg | grep 'avc: denied' | grep -e abupdated -e abupdate_service"; then
    fail "SELinux denials (see above)"
fi

step "an app uid is refused"
set +e
sh su 10000 /system/bin/abupdate cancel
code=$?
set -e
[ "$code" -eq 36 ] || fail "uid 10000 got exit $code, expected 36 (PERMISSION_DENIED)"

step "apply $ota"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unzip -q -o "$ota" payload.bin payload_properties.txt -d "$work"
sh mkdir -p /data/ota_package
adb push "$work/payload.bin" /data/ota_package/payload.bin >/dev/null
sh chcon u:object_r:ota_package_file:s0 /data/ota_package/payload.bin
headers=()
while IFS= read -r line; do
    [ -n "$line" ] && headers+=(--header "$line")
done < "$work/payload_properties.txt"
sh abupdate apply "${headers[@]}" file:///data/ota_package/payload.bin
# `watch` returns when the update completes, with its code.
sh abupdate watch || fail "the update failed"
sh abupdate status | grep -q "UPDATED_NEED_REBOOT" || fail "not waiting for a reboot"
sh dumpsys abupdate

step "reboot into the new slot"
adb reboot
adb wait-for-device
until [ "$(sh getprop sys.boot_completed | tr -d '\r')" = "1" ]; do sleep 2; done
slot_after=$(sh getprop ro.boot.slot_suffix)
[ "$slot_after" != "$slot_before" ] || fail "still on $slot_before"
echo "running slot $slot_after"

step "update_verifier marked the boot successful"
for _ in $(seq 30); do
    sh abupdate slots | grep -q "${slot_after}.*successful=true" && break
    sleep 2
done
sh abupdate slots | grep -q "${slot_after}.*successful=true" || fail "$slot_after not marked successful"
sh abupdate status | grep -q "IDLE" || fail "not idle after the reboot"

echo "cuttlefish: all steps passed"
