//! The real AOSP sample payloads (made by AOSP's own `delta_generator`) reproduce their new
//! images byte for byte, full and delta, through the public engine API.

mod common;

use std::path::Path;

use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::device::Device;
use abupdate::engine::{self, Quiet};
use abupdate::slot::Slot;
use abupdate::source::Source;

fn apply(dir: &Path, payload: &Path) -> abupdate::Result<engine::ApplyReport> {
    let device = Device::host(dir.join("dev"), Slot::A);
    let store = FileCheckpointStore::new(dir.join("state")).unwrap();
    let mut source = Source::file(payload)?;
    engine::apply(
        &device,
        &mut source,
        &store,
        &(),
        &common::unsigned_options(),
        &Quiet,
    )
}

fn setup(delta_base: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    common::unpack_aosp_samples(tmp.path());
    let dev = tmp.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    let read = |name: &str| std::fs::read(tmp.path().join(name)).unwrap();
    let (kernel_old, root_old) = if delta_base {
        (read("disk_ext2_4k_empty.img"), read("disk_sqfs_empty.img"))
    } else {
        (vec![0x5a; 4096], vec![0x5a; 4096])
    };
    common::put_image(&dev, "kernel", 'a', &kernel_old, kernel_old.len() as u64);
    common::put_image(&dev, "root", 'a', &root_old, root_old.len() as u64);
    common::put_image(&dev, "kernel", 'b', &[], 4 << 20);
    common::put_image(&dev, "root", 'b', &[], 12288);
    tmp
}

fn check_new_images(tmp: &Path) {
    let dev = tmp.join("dev");
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert!(
        read(&dev.join("kernel_b.img")) == read(&tmp.join("disk_ext2_4k.img")),
        "kernel differs"
    );
    assert!(
        read(&dev.join("root_b.img")) == read(&tmp.join("disk_sqfs_default.img")),
        "root differs"
    );
}

#[test]
fn full_payload_reproduces_new_images() {
    let tmp = setup(false);
    let source_before = std::fs::read(tmp.path().join("dev/kernel_a.img")).unwrap();
    let report = apply(tmp.path(), &tmp.path().join("full_payload.bin")).unwrap();
    assert_eq!(report.metadata.manifest.minor_version, 0);
    assert_eq!(report.resumed_at, None);
    check_new_images(tmp.path());
    assert_eq!(
        std::fs::read(tmp.path().join("dev/kernel_a.img")).unwrap(),
        source_before
    );
}

#[test]
fn delta_payload_reproduces_new_images() {
    let tmp = setup(true);
    let report = apply(tmp.path(), &tmp.path().join("delta_payload.bin")).unwrap();
    assert_eq!(report.metadata.manifest.minor_version, 6);
    check_new_images(tmp.path());
}

#[test]
fn delta_on_the_wrong_base_is_refused_before_writing() {
    let tmp = setup(false);
    let target_before = std::fs::read(tmp.path().join("dev/kernel_b.img")).unwrap();
    let err = apply(tmp.path(), &tmp.path().join("delta_payload.bin")).unwrap_err();
    assert_eq!(err.code, abupdate::ErrorCode::SourceHash, "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("dev/kernel_b.img")).unwrap(),
        target_before
    );
}
