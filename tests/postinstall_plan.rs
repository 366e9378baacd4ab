//! Postinstall fields through the whole format path: `payload build --postinstall` writes
//! them, the manifest parser reads them (refusing paths that would leave the partition, 21),
//! and the plan applies update_engine's rule for `RUN_POST_INSTALL=0` (optional steps skipped,
//! their partitions still mounted).

use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::engine::metadata::Metadata;
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::manifest::{Manifest, Postinstall};
use abupdate::payload::properties::PayloadProperties;
use abupdate::postinstall::plan::{self, Step};
use abupdate::ErrorCode;

fn manifest(steps: Vec<(String, Postinstall)>) -> abupdate::Result<Manifest> {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = Vec::new();
    for (name, blocks) in [("system", 2u8), ("vendor", 1)] {
        let image = dir.path().join(format!("{name}.img"));
        std::fs::write(&image, vec![blocks; usize::from(blocks) * 4096]).unwrap();
        specs.push(PartitionSpec::parse(&format!("{name}={}", image.display())).unwrap());
    }
    let out = dir.path().join("payload.bin");
    let options = BuildOptions {
        postinstall: steps,
        ..BuildOptions::default()
    };
    build::build(&specs, &options, &out)?;
    let bytes = std::fs::read(&out).unwrap();
    let size = bytes.len() as u64;
    Metadata::verify(
        bytes,
        Some(size),
        &PayloadProperties::new(),
        &TrustedKeys::accept_unsigned(),
    )
    .map(|m| m.manifest)
}

fn step(path: &str, fs: &str, optional: bool) -> Postinstall {
    Postinstall {
        path: path.into(),
        filesystem_type: fs.into(),
        optional,
    }
}

#[test]
fn build_writes_what_the_parser_and_plan_read() {
    let parsed = |arg: &str| build::parse_postinstall(arg).unwrap();
    let m = manifest(vec![
        parsed("system=postinst:ext4"),
        parsed("vendor=bin/otapreopt_script:erofs:optional"),
    ])
    .unwrap();
    let system = step("postinst", "ext4", false);
    let vendor = step("bin/otapreopt_script", "erofs", true);
    assert_eq!(m.partitions[0].postinstall, Some(system.clone()));
    assert_eq!(m.partitions[1].postinstall, Some(vendor.clone()));
    let run = |partition: &str, postinstall: &Postinstall, run: bool| Step {
        partition: partition.into(),
        postinstall: postinstall.clone(),
        run,
    };
    assert_eq!(
        plan::plan(&m, true),
        [run("system", &system, true), run("vendor", &vendor, true)]
    );
    // RUN_POST_INSTALL=0 skips the optional program only.
    assert_eq!(
        plan::plan(&m, false),
        [run("system", &system, true), run("vendor", &vendor, false)]
    );
    // No postinstall in the manifest: no steps.
    assert!(plan::plan(&manifest(vec![]).unwrap(), true).is_empty());
}

#[test]
fn an_empty_path_is_update_engines_default_and_no_type_is_probed() {
    let m = manifest(vec![("system".into(), step("", "", false))]).unwrap();
    assert_eq!(
        m.partitions[0].postinstall,
        Some(step("postinst", "", false))
    );
}

#[test]
fn paths_leaving_the_partition_and_odd_types_are_malformed() {
    for (path, fs) in [
        ("/system/bin/sh", "ext4"),
        ("../x", "ext4"),
        ("bin/../../x", "ext4"),
        ("bin//x", "ext4"),
        ("./postinst", "ext4"),
        ("post\ninst", "ext4"),
        ("postinst", "EXT4"),
        ("postinst", "ext4,rw"),
    ] {
        let e = manifest(vec![("system".into(), step(path, fs, false))]).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedPayload, "{path:?} {fs:?}: {e}");
    }
}

#[test]
fn bad_postinstall_options_are_refused() {
    for bad in [
        "system",
        "system=",
        "system=p:ext4:erofs",
        "system=p:ext4:maybe",
    ] {
        assert!(build::parse_postinstall(bad).is_err(), "{bad}");
    }
    let e = manifest(vec![("odm".into(), step("postinst", "", false))]).unwrap_err();
    assert!(e.message.contains("not a --partition"), "{e}");
}

#[test]
fn trigger_postinstall_needs_an_applied_update() {
    use abupdate::boot_control::MiscBootControl;
    use abupdate::slot::Slot;
    use abupdate::updater::{HostOptions, Updater};
    let dir = tempfile::tempdir().unwrap();
    MiscBootControl::create_image(&dir.path().join("misc.img"), Slot::A).unwrap();
    let updater = Updater::open_host(dir.path(), &HostOptions::default()).unwrap();
    let e = updater
        .trigger_postinstall("system", &abupdate::engine::Quiet)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PostinstallFailed, "{e}");
    assert!(e.message.contains("no applied update"), "{e}");
}
