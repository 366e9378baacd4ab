//! Not enough room for the update state: refused with 13 before a byte is written. The state
//! directory is a real 512 KiB tmpfs (mounting needs root, as CI runs the tests).

mod common;

use std::process::Command;

use abupdate::boot_control::MiscBootControl;
use abupdate::engine::Quiet;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::ErrorCode;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_state_directory_gives_13_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dev, state) = (tmp.path().join("dev"), tmp.path().join("state"));
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&state)
        .status()
        .expect("running mount");
    assert!(status.success(), "mounting a tmpfs needs root");
    let _mount = Mount(state.clone());

    common::put_image(&dev, "system", 'a', b"old", 65536);
    common::put_image(&dev, "system", 'b', &[], 65536);
    MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
    std::fs::write(
        tmp.path().join("new.img"),
        common::mixed_image(&mut common::Rng(5), 16),
    )
    .unwrap();
    common::build_payload(
        &tmp.path().join("p.bin"),
        &[("system", tmp.path().join("new.img"), None)],
    );

    let host = HostOptions {
        state_dir: Some(state.clone()),
        ..Default::default()
    };
    let updater = Updater::open_host(&dev, &host).unwrap();
    let err = updater
        .apply(
            &mut Source::file(&tmp.path().join("p.bin")).unwrap(),
            &common::unsigned_options(),
            &Quiet,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotEnoughStorage, "{err}");
    let target = std::fs::read(dev.join("system_b.img")).unwrap();
    assert!(target.iter().all(|&b| b == 0), "the target was written");
    let boot = MiscBootControl::open_device_dir(&dev, Some(Slot::A)).unwrap();
    assert!(
        abupdate::slot::BootControl::is_bootable(&boot, Slot::B).unwrap(),
        "slot B was touched"
    );
}
