//! Who makes the Virtual A/B COW images on `/data`: we ourselves ([`ImageDir`], hosts and the
//! VM), or an [`ImageService`] the device was given ([`Device::set_image_service`]): on
//! Android gsid, the only process sepolicy lets create files in `/data/gsi`
//! ([`super::image_service::GsidImages`]), as libsnapshot's images are libfiemap's
//! `ImageManagerBinder`. [`CowImages`] is the one seam `virtual_ab` and [`Device::open_cow`]
//! use.
//!
//! [`Device::set_image_service`]: super::Device::set_image_service
//! [`Device::open_cow`]: super::Device::open_cow

use std::path::PathBuf;
use std::sync::Arc;

use super::cow_image::ImageDir;
use super::Device;
use crate::error::Result;

/// The images of libfiemap's `IImageManager` that libsnapshot uses, kept by someone else.
pub trait ImageService: Send + Sync {
    /// Whether image `image` exists.
    fn exists(&self, image: &str) -> Result<bool>;
    /// Makes image `image` of `size` bytes (a multiple of 512): no room is 37.
    fn create(&self, image: &str, size: u64) -> Result<()>;
    /// The block device of image `image`, mapped if it is not yet.
    fn map(&self, image: &str) -> Result<PathBuf>;
    /// Unmaps image `image` if it is mapped (libfiemap's `UnmapImageIfExists`).
    fn unmap(&self, image: &str) -> Result<()>;
    /// The names of all the images.
    fn all(&self) -> Result<Vec<String>>;
    /// Unmaps and deletes every image.
    fn remove_all(&self) -> Result<()>;
}

/// The COW images of one device.
#[derive(Clone)]
pub enum CowImages {
    /// Made by us, in `/data/gsi/ota` (a host device directory's `data/gsi/ota`).
    Local(ImageDir),
    /// Made by a service (gsid).
    Service(Arc<dyn ImageService>),
}

impl CowImages {
    /// The images of `device`: its service's if it has one, else its [`ImageDir`].
    pub fn for_device(device: &Device) -> CowImages {
        match device.image_service() {
            Some(service) => CowImages::Service(service.clone()),
            None => CowImages::Local(ImageDir::for_device(device)),
        }
    }

    /// Whether image `image` is there for a COW of `size` bytes. A service is not asked the
    /// size (gsid has no call for it): a smaller image fails when its COW is opened.
    pub fn existing(&self, image: &str, size: u64) -> Result<bool> {
        match self {
            CowImages::Local(dir) => Ok(dir.existing(image, size)?.is_some()),
            CowImages::Service(service) => service.exists(image),
        }
    }

    /// The names of the images there are.
    pub fn names(&self) -> Result<Vec<String>> {
        match self {
            CowImages::Local(dir) => Ok(dir
                .metadata()?
                .map(|m| m.partitions().iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default()),
            CowImages::Service(service) => service.all(),
        }
    }

    /// Makes image `image` of `size` bytes.
    pub fn create(&self, image: &str, size: u64) -> Result<()> {
        match self {
            CowImages::Local(dir) => dir.create(image, size).map(|_| ()),
            CowImages::Service(service) => service.create(image, size),
        }
    }

    /// Unmaps every image that is mapped, as libsnapshot's `UnmapAllSnapshots` does at the end
    /// of an apply (`UnmapCowDevices`: `UnmapImageIfExists`): the next boot's first-stage init
    /// maps them from their metadata, and a mapped image cannot be deleted. Images made
    /// locally have no mapping of their own (a COW's dm-linear table over their extents goes
    /// with the target slot's mappings).
    pub fn unmap_all(&self) -> Result<()> {
        match self {
            CowImages::Local(_) => Ok(()),
            CowImages::Service(service) => service
                .all()?
                .iter()
                .try_for_each(|image| service.unmap(image)),
        }
    }

    /// Removes every image (and, made locally, the metadata).
    pub fn remove_all(&self) -> Result<()> {
        match self {
            CowImages::Local(dir) => dir.remove_all(),
            CowImages::Service(service) => service.remove_all(),
        }
    }
}
