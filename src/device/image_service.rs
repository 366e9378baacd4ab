//! Platform adapter: the Virtual A/B COW images on `/data` through gsid's Binder service, as
//! libsnapshot reaches them on Android (libfiemap `binder.cpp`, `ImageManagerBinder`): only
//! gsid may create files in `/data/gsi` (sepolicy's gsid.te neverallows everyone else), so
//! an updater asks `gsiservice` (`IGsiService.openImageService("ota")`) for an
//! `IImageService` and has gsid make, map, unmap and delete the images. [`ImageDir`] is the
//! same store made locally (hosts, the VM).
//!
//! What libsnapshot asks of it, and so this adapter: `createBackingImage(name, size,
//! CREATE_IMAGE_DEFAULT, null)` with the snapshot's `cow_file_size` (a multiple of 512;
//! `SnapshotManager::CreateCowImage`), `mapImageDevice(name, timeout)` whose answer is the
//! block device of the image, `unmapImageDevice`, `deleteBackingImage`, `removeAllImages`,
//! `backingImageExists`. gsid reports a failed creation as a service-specific error carrying
//! libfiemap's `FiemapStatus` code, `-ENOSPC` when `/data` has no room
//! (`gsi_service.cpp` `BinderError`), with a message.
//!
//! Binder and the AIDL types come from [`binder_adapter`](crate::service::binder_adapter): on
//! Android the platform's crate (`gsid` feature), on a host rsbinder with the subset in
//! `platform_aidl/`, which the host tests serve with a stand-in gsid.
//!
//! [`ImageDir`]: super::cow_image::ImageDir

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::image_store::ImageService;
use crate::err;
use crate::error::{Error, Result};
use crate::service::binder_adapter::gsi::gsi::{
    IGsiService::IGsiService,
    IImageService::{self as image_service, IImageService},
    MappedImage::MappedImage,
};
use crate::service::binder_adapter::{self as binder, Failure, Session, Status, Strong, Transport};

/// gsid's service (`kGsiServiceName`; gsid.rc `interface aidl gsiservice`: servicemanager
/// starts gsid when it is asked for).
pub const SERVICE_NAME: &str = "gsiservice";
/// The image directory of Virtual A/B's COW images: libsnapshot's `OpenImageManager("ota")`,
/// which libfiemap's binder client passes on as it is; gsid makes it `/metadata/gsi/ota` and
/// `/data/gsi/ota`.
pub const OTA_PREFIX: &str = "ota";
/// How long gsid may wait for a mapped image's device node (the interface's documentation
/// recommends 10 seconds).
pub const MAP_TIMEOUT_MS: i32 = 10_000;
/// libfiemap's `FiemapStatus::ErrorCode::NO_SPACE`.
pub const NO_SPACE: i32 = -(nix::libc::ENOSPC);

/// The "ota" images, kept by gsid.
pub struct GsidImages {
    images: Strong<dyn IImageService>,
    /// The connection to gsid (on a host, the RPC session the proxies travel over).
    _session: Session<dyn IGsiService>,
}

/// gsid's answer to a failed call, as words.
fn why(status: &Status) -> String {
    match binder::failure(status) {
        Failure::ServiceSpecific(code, message) => format!("{message} (status {code})"),
        Failure::Security(message) => format!("refused: {message}"),
        Failure::DeadObject => "gsid is gone".to_owned(),
        Failure::Other(message) => message,
    }
}

/// A failed gsid call as a device error.
fn failed(what: &str, image: &str, status: &Status) -> Error {
    err!(DeviceError, "gsid {what} {image} failed: {}", why(status))
}

impl GsidImages {
    /// gsid's "ota" images, through [`SERVICE_NAME`] at `transport` (on Android always the
    /// platform's servicemanager).
    pub fn open(transport: &Transport) -> Result<GsidImages> {
        let session =
            binder::connect_to::<dyn IGsiService>(transport, SERVICE_NAME).map_err(|e| {
                err!(
                    DeviceError,
                    "connecting to gsid ({SERVICE_NAME} at {transport}): {}",
                    e.message
                )
            })?;
        let images = session
            .service
            .openImageService(OTA_PREFIX)
            .map_err(|s| failed("openImageService", OTA_PREFIX, &s))?;
        Ok(GsidImages {
            images,
            _session: session,
        })
    }

    /// Has gsid make image `image` of `size` bytes (a multiple of 512). No room on `/data` is
    /// [`SuperNoSpace`](crate::error::ErrorCode::SuperNoSpace) with gsid's words: the update
    /// does not fit; anything else a device error.
    pub fn create(&self, image: &str, size: u64) -> Result<()> {
        if size % 512 != 0 {
            return Err(err!(
                DeviceError,
                "COW image {image}: {size} bytes is not a multiple of 512"
            ));
        }
        let wire_size = i64::try_from(size)
            .map_err(|_| err!(DeviceError, "COW image {image}: {size} bytes is too large"))?;
        self.images
            .createBackingImage(image, wire_size, image_service::CREATE_IMAGE_DEFAULT, None)
            .map_err(|s| {
                if s.service_specific_error() == NO_SPACE {
                    err!(
                        SuperNoSpace,
                        "no room on /data for the {size}-byte COW image {image}: gsid: {}",
                        why(&s)
                    )
                } else {
                    failed("createBackingImage", image, &s)
                }
            })
    }

    /// Whether gsid has image `image`.
    pub fn exists(&self, image: &str) -> Result<bool> {
        self.images
            .backingImageExists(image)
            .map_err(|s| failed("backingImageExists", image, &s))
    }

    /// Whether image `image` is mapped.
    pub fn is_mapped(&self, image: &str) -> Result<bool> {
        self.images
            .isImageMapped(image)
            .map_err(|s| failed("isImageMapped", image, &s))
    }

    /// The block device of image `image`: mapped now, or the mapping there is (libfiemap
    /// refuses to map an image twice; a resumed update or the merge after the reboot finds it
    /// mapped or not).
    pub fn map(&self, image: &str) -> Result<PathBuf> {
        if self.is_mapped(image)? {
            let path = self
                .images
                .getMappedImageDevice(image)
                .map_err(|s| failed("getMappedImageDevice", image, &s))?;
            if !path.is_empty() {
                return Ok(PathBuf::from(path));
            }
        }
        let mut mapped = MappedImage::default();
        self.images
            .mapImageDevice(image, MAP_TIMEOUT_MS, &mut mapped)
            .map_err(|s| failed("mapImageDevice", image, &s))?;
        if mapped.path.is_empty() {
            return Err(err!(DeviceError, "gsid mapped {image} to no device"));
        }
        Ok(PathBuf::from(mapped.path))
    }

    /// Unmaps image `image` (before it can be deleted).
    pub fn unmap(&self, image: &str) -> Result<()> {
        self.images
            .unmapImageDevice(image)
            .map_err(|s| failed("unmapImageDevice", image, &s))
    }

    /// Unmaps image `image` if it is mapped (gsid refuses to unmap an image that is not).
    pub fn unmap_if_mapped(&self, image: &str) -> Result<()> {
        if self.is_mapped(image)? {
            self.unmap(image)?;
        }
        Ok(())
    }

    /// Deletes image `image`.
    pub fn delete(&self, image: &str) -> Result<()> {
        self.images
            .deleteBackingImage(image)
            .map_err(|s| failed("deleteBackingImage", image, &s))
    }

    /// The names of all the images.
    pub fn all(&self) -> Result<Vec<String>> {
        self.images
            .getAllBackingImages()
            .map_err(|s| failed("getAllBackingImages", OTA_PREFIX, &s))
    }

    /// Unmaps and deletes every image (`removeAllImages`, after the merge or a cancel).
    pub fn remove_all(&self) -> Result<()> {
        self.images
            .removeAllImages()
            .map_err(|s| failed("removeAllImages", OTA_PREFIX, &s))
    }
}

impl ImageService for GsidImages {
    fn exists(&self, image: &str) -> Result<bool> {
        GsidImages::exists(self, image)
    }
    fn create(&self, image: &str, size: u64) -> Result<()> {
        GsidImages::create(self, image, size)
    }
    fn map(&self, image: &str) -> Result<PathBuf> {
        GsidImages::map(self, image)
    }
    fn unmap(&self, image: &str) -> Result<()> {
        GsidImages::unmap_if_mapped(self, image)
    }
    fn all(&self) -> Result<Vec<String>> {
        GsidImages::all(self)
    }
    fn remove_all(&self) -> Result<()> {
        GsidImages::remove_all(self)
    }
}

/// gsid's images, connected at their first use (gsid is started on demand, as libsnapshot's
/// `EnsureImageManager` starts it only for an update that needs images); a failed connection
/// is tried again at the next use.
pub struct GsidOnDemand {
    transport: Transport,
    images: Mutex<Option<Arc<GsidImages>>>,
}

impl GsidOnDemand {
    /// gsid at `transport`, not connected yet.
    pub fn new(transport: Transport) -> GsidOnDemand {
        GsidOnDemand {
            transport,
            images: Mutex::new(None),
        }
    }

    fn get(&self) -> Result<Arc<GsidImages>> {
        let mut images = self.images.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(images) = images.as_ref() {
            return Ok(images.clone());
        }
        let opened = Arc::new(GsidImages::open(&self.transport)?);
        *images = Some(opened.clone());
        Ok(opened)
    }
}

impl ImageService for GsidOnDemand {
    fn exists(&self, image: &str) -> Result<bool> {
        self.get()?.exists(image)
    }
    fn create(&self, image: &str, size: u64) -> Result<()> {
        self.get()?.create(image, size)
    }
    fn map(&self, image: &str) -> Result<PathBuf> {
        self.get()?.map(image)
    }
    fn unmap(&self, image: &str) -> Result<()> {
        self.get()?.unmap_if_mapped(image)
    }
    fn all(&self) -> Result<Vec<String>> {
        self.get()?.all()
    }
    fn remove_all(&self) -> Result<()> {
        self.get()?.remove_all()
    }
}
