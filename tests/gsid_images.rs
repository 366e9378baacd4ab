//! The COW images on `/data` through gsid (`src/device/image_service.rs`) over real Binder
//! (rsbinder RPC on a unix socket) against a stand-in gsid (`common/gsid.rs`: a host has none)
//! that keeps real images (allocated, written, FIEMAP extents recorded in `lp_metadata`).
//! The adapter asks for what libsnapshot asks (names, sizes, CREATE_IMAGE_DEFAULT, the "ota"
//! prefix), maps to a device that holds what is written, cleans up; gsid's no-room answer is
//! 37 with gsid's words, its other failures 31. (That the AIDL numbers the methods as AOSP's
//! is a unit test of the adapter: `gsid_transaction_codes_are_the_platforms`.)

#[path = "common/gsid.rs"]
mod gsid;

use std::io::{Read, Seek, SeekFrom, Write};

use abupdate::device::cow_image::image_name;
use abupdate::device::image_service::{GsidImages, MAP_TIMEOUT_MS, OTA_PREFIX};
use abupdate::error::ErrorCode;
use gsid::{Call, GsidStandIn};

const MIB: u64 = 1 << 20;

#[test]
fn images_are_made_mapped_and_removed_through_gsid() {
    let gsid = GsidStandIn::start();
    let images = GsidImages::open(&gsid.transport()).unwrap();
    let system = image_name("system_b");
    let vendor = image_name("vendor_b");
    assert!(!images.exists(&system).unwrap());
    images.create(&system, 3 * MIB).unwrap();
    images.create(&vendor, 512 * 1024 + 512).unwrap();
    assert!(images.exists(&system).unwrap());
    {
        let state = gsid.state();
        let creates: Vec<_> = state
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Create { .. }))
            .cloned()
            .collect();
        assert_eq!(state.calls[0], Call::Open(OTA_PREFIX.to_owned()));
        assert_eq!(
            creates,
            vec![
                Call::Create {
                    name: "system_b-cow-img".into(),
                    size: 3 * MIB as i64,
                    flags: 0,
                    progress: false,
                },
                Call::Create {
                    name: "vendor_b-cow-img".into(),
                    size: 512 * 1024 + 512,
                    flags: 0,
                    progress: false,
                },
            ]
        );
    }
    // Real images: recorded with their extents, as libfiemap's.
    let recorded = gsid.images.existing(&system, 3 * MIB).unwrap().unwrap();
    assert_eq!(recorded.iter().map(|e| e.length).sum::<u64>(), 3 * MIB);
    assert_eq!(gsid.image_files().len(), 2);
    let mut names = images.all().unwrap();
    names.sort();
    assert_eq!(names, vec![system.clone(), vendor.clone()]);

    // A second creation of the same image is gsid's error, a device error here.
    let e = images.create(&system, 3 * MIB).unwrap_err();
    assert_eq!(e.code, ErrorCode::DeviceError);
    assert!(e.message.contains("exists"), "{e}");

    // Mapped: the device holds what is written to it.
    let device = images.map(&system).unwrap();
    assert!(images.is_mapped(&system).unwrap());
    assert!(gsid
        .state()
        .calls
        .contains(&Call::Map(system.clone(), MAP_TIMEOUT_MS)));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&device)
        .unwrap();
    f.seek(SeekFrom::Start(2 * MIB)).unwrap();
    f.write_all(b"COW ops").unwrap();
    f.sync_all().unwrap();
    let mut back = [0u8; 7];
    let mut again = std::fs::File::open(gsid.images.image_path(&system)).unwrap();
    again.seek(SeekFrom::Start(2 * MIB)).unwrap();
    again.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"COW ops");

    // gsid deletes no mapped image; unmapped it does.
    let e = images.delete(&system).unwrap_err();
    assert_eq!(e.code, ErrorCode::DeviceError);
    assert!(e.message.contains("mapped"), "{e}");
    images.unmap(&system).unwrap();
    images.delete(&system).unwrap();
    assert!(!images.exists(&system).unwrap());
    assert!(images.exists(&vendor).unwrap());
    assert_eq!(gsid.image_files().len(), 1);

    // removeAllImages unmaps and deletes the rest, metadata included.
    images.map(&vendor).unwrap();
    images.remove_all().unwrap();
    assert!(images.all().unwrap().is_empty());
    assert!(gsid.image_files().is_empty());
    assert!(!gsid.images.metadata_path().exists());
}

#[test]
fn no_room_on_data_is_37_with_gsids_words() {
    let gsid = GsidStandIn::start();
    gsid.set_room(4 * MIB);
    let images = GsidImages::open(&gsid.transport()).unwrap();
    images.create(&image_name("system_b"), 3 * MIB).unwrap();
    let e = images
        .create(&image_name("product_b"), 2 * MIB)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SuperNoSpace);
    assert_eq!(e.code as i32, 37);
    assert!(e.message.contains("not enough free space"), "{e}");
    assert!(e.message.contains("product_b-cow-img"), "{e}");
    assert!(!images.exists(&image_name("product_b")).unwrap());
    assert_eq!(gsid.image_files().len(), 1);
}

#[test]
fn sizes_gsid_would_refuse_are_not_sent() {
    let gsid = GsidStandIn::start();
    let images = GsidImages::open(&gsid.transport()).unwrap();
    let e = images.create(&image_name("system_b"), MIB + 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::DeviceError);
    let e = images
        .create(&image_name("system_b"), u64::MAX - 511)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::DeviceError);
    assert!(!gsid
        .state()
        .calls
        .iter()
        .any(|c| matches!(c, Call::Create { .. })));
}

#[test]
fn a_missing_gsid_is_a_device_error() {
    let gsid = GsidStandIn::start();
    let transport = gsid.transport();
    drop(gsid);
    let e = GsidImages::open(&transport).err().unwrap();
    assert_eq!(e.code, ErrorCode::DeviceError);
    assert!(e.message.contains("gsiservice"), "{e}");
}
