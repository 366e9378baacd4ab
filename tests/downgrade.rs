//! Downgrade protection as update_engine does it: a payload older than the running build (by
//! max_timestamp, partition version or security patch level) is refused with 26 before a byte
//! of the target slot is written.

mod common;

use std::path::Path;

use abupdate::boot_control::MiscBootControl;
use abupdate::build::{ops::Compressors, BuildOptions};
use abupdate::engine::Quiet;
use abupdate::slot::BootControl;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::ErrorCode;

const BUILD_PROP: &str =
    "ro.build.date.utc=1700000000\nro.build.version.security_patch=2024-03-05\n\
                          ro.system.build.date.utc=1700000000\n";

fn try_update(dir: &Path, options: BuildOptions) -> abupdate::Result<()> {
    let dev = dir.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("build.prop"), BUILD_PROP).unwrap();
    common::put_image(&dev, "system", 'a', b"old", 65536);
    common::put_image(&dev, "system", 'b', &[], 65536);
    if !dev.join("misc.img").exists() {
        MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
    }
    let new = common::mixed_image(&mut common::Rng(7), 16);
    std::fs::write(dir.join("system.img"), &new).unwrap();
    let options = BuildOptions {
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        ..options
    };
    common::build_payload_with(
        &dir.join("p.bin"),
        &[("system", dir.join("system.img"), None)],
        options,
    );
    let updater = Updater::open_host(&dev, &HostOptions::default())?;
    updater.apply(
        &mut Source::file(&dir.join("p.bin"))?,
        &common::unsigned_options(),
        &Quiet,
    )?;
    Ok(())
}

fn assert_refused(options: BuildOptions, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let err = try_update(tmp.path(), options).unwrap_err();
    assert_eq!(err.code, ErrorCode::Downgrade, "{what}: {err}");
    assert!(err.message.contains(what), "{err}");
    let target = std::fs::read(tmp.path().join("dev/system_b.img")).unwrap();
    assert!(
        target.iter().all(|&b| b == 0),
        "target written despite the downgrade"
    );
}

#[test]
fn older_builds_are_refused() {
    assert_refused(
        BuildOptions {
            max_timestamp: Some(1_600_000_000),
            ..Default::default()
        },
        "max_timestamp",
    );
    assert_refused(
        BuildOptions {
            max_timestamp: Some(1_700_000_000),
            partition_version: Some("1699999999".into()),
            ..Default::default()
        },
        "partition system version",
    );
    assert_refused(
        BuildOptions {
            max_timestamp: Some(1_700_000_000),
            security_patch_level: Some("2023-12-01".into()),
            ..Default::default()
        },
        "security patch level",
    );
}

/// A full payload without `max_timestamp` (0) is older than any build, as update_engine's
/// `CheckTimestampError` compares it; main skipped the check for 0.
#[test]
fn a_full_payload_without_max_timestamp_is_refused() {
    assert_refused(BuildOptions::default(), "max_timestamp 0");
}

/// A `build.prop` that does not say when the running build was made cannot be checked
/// against: opening the device fails, instead of every check being skipped (as on main).
#[test]
fn a_build_prop_without_a_date_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    common::put_image(&dev, "system", 'a', b"old", 65536);
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
    std::fs::write(
        dev.join("build.prop"),
        "ro.build.version.security_patch=2024-03-05\n",
    )
    .unwrap();
    let err = Updater::open_host(&dev, &HostOptions::default())
        .err()
        .expect("opened a device whose build has no date");
    assert_eq!(err.code, ErrorCode::DeviceError, "{err}");
    assert!(
        err.message.contains("ro.build.date.utc is not set"),
        "{err}"
    );
}

#[test]
fn same_or_newer_builds_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let options = BuildOptions {
        max_timestamp: Some(1_700_000_000),
        partition_version: Some("1700000001".into()),
        security_patch_level: Some("2024-03-05".into()),
        ..Default::default()
    };
    try_update(tmp.path(), options).unwrap();
    let dev = tmp.path().join("dev");
    let new = std::fs::read(tmp.path().join("system.img")).unwrap();
    let target = std::fs::read(dev.join("system_b.img")).unwrap();
    assert!(
        target.starts_with(&new),
        "slot B does not hold the new system"
    );
    let running = std::fs::read(dev.join("system_a.img")).unwrap();
    assert!(running.starts_with(b"old"), "the running slot was touched");
    let boot = MiscBootControl::open_device_dir(&dev, None).unwrap();
    assert_eq!(boot.active_slot().unwrap(), Slot::B, "B is to boot next");
    assert!(boot.is_bootable(Slot::B).unwrap());
}
