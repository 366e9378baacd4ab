//! A stand-in for Android's gsid, for the host tests of the COW images made through it
//! (`src/device/image_service.rs`). A host has no gsid: this serves the same AIDL
//! (`platform_aidl/`, `gsiservice`) over real RPC Binder (rsbinder on a unix socket) and keeps
//! REAL images: libfiemap's store (`ImageDir`: a fully allocated and written file, its FIEMAP
//! extents recorded in `lp_metadata`) in a temporary `data/gsi/ota` and `metadata/gsi/ota`.
//! What it holds to of gsid and libfiemap's `ImageManager`:
//!
//! - `openImageService` takes the prefix "ota" only (the one libsnapshot opens);
//! - `createBackingImage` refuses an image that exists, and a size beyond the room it is given
//!   ([`GsidStandIn::set_room`]) with libfiemap's NO_SPACE (`-ENOSPC`) and a message, as gsid's
//!   `BinderError` does;
//! - `mapImageDevice` answers the image's "block device": on a host the image file itself;
//! - `deleteBackingImage` refuses a mapped image; `removeAllImages` unmaps first.
//!
//! Every call is recorded ([`State::calls`]).

// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use abupdate::device::cow_image::ImageDir;
use abupdate::device::image_service::{NO_SPACE, OTA_PREFIX, SERVICE_NAME};
use abupdate::service::binder_adapter::gsi::gsi::{
    AvbPublicKey::AvbPublicKey,
    GsiProgress::GsiProgress,
    IGsiService::{BnGsiService, IGsiService},
    IGsiServiceCallback::IGsiServiceCallback,
    IImageService::{BnImageService, IImageService},
    IProgressCallback::IProgressCallback,
    MappedImage::MappedImage,
};
use abupdate::service::binder_adapter::{
    self as binder, service_specific_status, BinderResult, Interface, ParcelFileDescriptor, Served,
    Status, Strong, Transport,
};

/// libfiemap's `FiemapStatus::ErrorCode::ERROR`.
pub const ERROR: i32 = i32::MIN;

/// One call the stand-in received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Open(String),
    Create {
        name: String,
        size: i64,
        flags: i32,
        progress: bool,
    },
    Exists(String),
    Map(String, i32),
    Unmap(String),
    Delete(String),
    RemoveAll,
    Other(&'static str),
}

/// What the stand-in holds.
#[derive(Default)]
pub struct State {
    /// Every call, in order.
    pub calls: Vec<Call>,
    /// The images mapped now.
    pub mapped: BTreeSet<String>,
    /// Bytes of `/data` the images may take; `None`: what the file system has.
    pub room: Option<u64>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn refuse(code: i32, message: &str) -> Status {
    service_specific_status(code, message)
}

/// A running stand-in gsid.
pub struct GsidStandIn {
    /// Its state, for the tests to inspect.
    pub state: Shared,
    /// The store its images are in.
    pub images: ImageDir,
    /// Where it serves (`unix://...?profile=android13plus`).
    pub uri: String,
    served: Option<Served>,
    dir: tempfile::TempDir,
}

impl GsidStandIn {
    /// Serves a new gsid with no images, its `/data` and `/metadata` in a temporary directory.
    pub fn start() -> GsidStandIn {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let images = ImageDir::new(
            &root.join("metadata/gsi/ota"),
            &root.join("data/gsi/ota"),
            &root.join("data"),
        );
        let uri = format!(
            "unix://{}?profile=android13plus",
            root.join("gsid.sock").display()
        );
        let state = Shared::default();
        let service = BnGsiService::new_binder(Service {
            state: state.clone(),
            images: images.clone(),
        });
        let served = binder::serve_all(
            &Transport::parse(&uri).unwrap(),
            vec![(SERVICE_NAME.to_owned(), service.as_binder())],
            2,
        )
        .unwrap();
        GsidStandIn {
            state,
            images,
            uri,
            served: Some(served),
            dir,
        }
    }

    /// The transport the adapter connects over.
    pub fn transport(&self) -> Transport {
        Transport::parse(&self.uri).unwrap()
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Lets the images take `bytes` of `/data` at most, from now on.
    pub fn set_room(&self, bytes: u64) {
        self.state().room = Some(bytes);
    }

    /// The image files on its `/data`.
    pub fn image_files(&self) -> Vec<PathBuf> {
        let dir = self.dir.path().join("data/gsi/ota");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Its root directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for GsidStandIn {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop();
        }
    }
}

struct Service {
    state: Shared,
    images: ImageDir,
}

impl Interface for Service {}

/// What gsid answers for the DSU calls this stand-in does not do.
fn dsu<T>(state: &Shared, what: &'static str) -> BinderResult<T> {
    lock(state).calls.push(Call::Other(what));
    Err(refuse(ERROR, &format!("{what}: not in the stand-in")))
}

impl IGsiService for Service {
    fn commitGsiChunkFromStream(&self, _: &ParcelFileDescriptor, _: i64) -> BinderResult<bool> {
        dsu(&self.state, "commitGsiChunkFromStream")
    }
    fn getInstallProgress(&self) -> BinderResult<GsiProgress> {
        dsu(&self.state, "getInstallProgress")
    }
    fn setGsiAshmem(&self, _: &ParcelFileDescriptor, _: i64) -> BinderResult<bool> {
        dsu(&self.state, "setGsiAshmem")
    }
    fn commitGsiChunkFromAshmem(&self, _: i64) -> BinderResult<bool> {
        dsu(&self.state, "commitGsiChunkFromAshmem")
    }
    fn enableGsi(&self, _: bool, _: &str) -> BinderResult<i32> {
        dsu(&self.state, "enableGsi")
    }
    fn enableGsiAsync(
        &self,
        _: bool,
        _: &str,
        _: &Strong<dyn IGsiServiceCallback>,
    ) -> BinderResult<()> {
        dsu(&self.state, "enableGsiAsync")
    }
    fn isGsiEnabled(&self) -> BinderResult<bool> {
        dsu(&self.state, "isGsiEnabled")
    }
    fn cancelGsiInstall(&self) -> BinderResult<bool> {
        dsu(&self.state, "cancelGsiInstall")
    }
    fn isGsiInstallInProgress(&self) -> BinderResult<bool> {
        dsu(&self.state, "isGsiInstallInProgress")
    }
    fn removeGsi(&self) -> BinderResult<bool> {
        dsu(&self.state, "removeGsi")
    }
    fn removeGsiAsync(&self, _: &Strong<dyn IGsiServiceCallback>) -> BinderResult<()> {
        dsu(&self.state, "removeGsiAsync")
    }
    fn disableGsi(&self) -> BinderResult<bool> {
        dsu(&self.state, "disableGsi")
    }
    fn isGsiInstalled(&self) -> BinderResult<bool> {
        dsu(&self.state, "isGsiInstalled")
    }
    fn isGsiRunning(&self) -> BinderResult<bool> {
        dsu(&self.state, "isGsiRunning")
    }
    fn getActiveDsuSlot(&self) -> BinderResult<String> {
        dsu(&self.state, "getActiveDsuSlot")
    }
    fn getInstalledGsiImageDir(&self) -> BinderResult<String> {
        dsu(&self.state, "getInstalledGsiImageDir")
    }
    fn getInstalledDsuSlots(&self) -> BinderResult<Vec<String>> {
        dsu(&self.state, "getInstalledDsuSlots")
    }
    fn openInstall(&self, _: &str) -> BinderResult<i32> {
        dsu(&self.state, "openInstall")
    }
    fn closeInstall(&self) -> BinderResult<i32> {
        dsu(&self.state, "closeInstall")
    }
    fn createPartition(&self, _: &str, _: i64, _: bool) -> BinderResult<i32> {
        dsu(&self.state, "createPartition")
    }
    fn closePartition(&self) -> BinderResult<i32> {
        dsu(&self.state, "closePartition")
    }
    fn zeroPartition(&self, _: &str) -> BinderResult<i32> {
        dsu(&self.state, "zeroPartition")
    }
    fn openImageService(&self, prefix: &str) -> BinderResult<Strong<dyn IImageService>> {
        lock(&self.state).calls.push(Call::Open(prefix.to_owned()));
        if prefix != OTA_PREFIX {
            return Err(refuse(ERROR, &format!("prefix {prefix:?}: only ota here")));
        }
        Ok(BnImageService::new_binder(Images {
            state: self.state.clone(),
            images: self.images.clone(),
        }))
    }
    fn dumpDeviceMapperDevices(&self) -> BinderResult<String> {
        dsu(&self.state, "dumpDeviceMapperDevices")
    }
    fn getAvbPublicKey(&self, _: &mut AvbPublicKey) -> BinderResult<i32> {
        dsu(&self.state, "getAvbPublicKey")
    }
    fn suggestScratchSize(&self) -> BinderResult<i64> {
        dsu(&self.state, "suggestScratchSize")
    }
}

struct Images {
    state: Shared,
    images: ImageDir,
}

impl Interface for Images {}

impl Images {
    fn exists(&self, name: &str) -> bool {
        self.images.image_path(name).exists()
            && self
                .images
                .metadata()
                .unwrap()
                .is_some_and(|m| abupdate::lp::images::image_extents(&m, name).is_some())
    }

    fn used(&self) -> u64 {
        self.images
            .metadata()
            .unwrap()
            .map(|m| {
                m.partitions()
                    .iter()
                    .filter_map(|p| abupdate::lp::images::image_extents(&m, &p.name))
                    .flatten()
                    .map(|e| e.length)
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl IImageService for Images {
    fn createBackingImage(
        &self,
        name: &str,
        size: i64,
        flags: i32,
        on_progress: Option<&Strong<dyn IProgressCallback>>,
    ) -> BinderResult<()> {
        let room = {
            let mut state = lock(&self.state);
            state.calls.push(Call::Create {
                name: name.to_owned(),
                size,
                flags,
                progress: on_progress.is_some(),
            });
            state.room
        };
        if self.exists(name) {
            return Err(refuse(ERROR, &format!("Failed to create: {name} exists")));
        }
        let size = u64::try_from(size).map_err(|_| refuse(ERROR, "negative size"))?;
        if room.is_some_and(|room| self.used().saturating_add(size) > room) {
            return Err(refuse(
                NO_SPACE,
                &format!("Failed to create: not enough free space for {size} bytes"),
            ));
        }
        match self.images.create(name, size) {
            Ok(_) => Ok(()),
            Err(e) if e.code == abupdate::error::ErrorCode::SuperNoSpace => {
                Err(refuse(NO_SPACE, &format!("Failed to create: {e}")))
            }
            Err(e) => Err(refuse(ERROR, &format!("Failed to create: {e}"))),
        }
    }

    fn deleteBackingImage(&self, name: &str) -> BinderResult<()> {
        let mapped = {
            let mut state = lock(&self.state);
            state.calls.push(Call::Delete(name.to_owned()));
            state.mapped.contains(name)
        };
        if mapped {
            return Err(refuse(
                ERROR,
                &format!("Cannot delete {name}: it is mapped"),
            ));
        }
        self.images
            .delete(name)
            .map_err(|e| refuse(ERROR, &format!("Failed to delete: {e}")))
    }

    fn mapImageDevice(
        &self,
        name: &str,
        timeout_ms: i32,
        mapping: &mut MappedImage,
    ) -> BinderResult<()> {
        lock(&self.state)
            .calls
            .push(Call::Map(name.to_owned(), timeout_ms));
        if !self.exists(name) {
            return Err(refuse(ERROR, "Failed to map"));
        }
        lock(&self.state).mapped.insert(name.to_owned());
        mapping.path = self.images.image_path(name).display().to_string();
        Ok(())
    }

    fn unmapImageDevice(&self, name: &str) -> BinderResult<()> {
        let mut state = lock(&self.state);
        state.calls.push(Call::Unmap(name.to_owned()));
        if !state.mapped.remove(name) {
            return Err(refuse(ERROR, "Failed to unmap"));
        }
        Ok(())
    }

    fn backingImageExists(&self, name: &str) -> BinderResult<bool> {
        lock(&self.state).calls.push(Call::Exists(name.to_owned()));
        Ok(self.exists(name))
    }

    fn isImageMapped(&self, name: &str) -> BinderResult<bool> {
        let mut state = lock(&self.state);
        state.calls.push(Call::Other("isImageMapped"));
        Ok(state.mapped.contains(name))
    }

    fn getAvbPublicKey(&self, _: &str, _: &mut AvbPublicKey) -> BinderResult<i32> {
        dsu(&self.state, "getAvbPublicKey")
    }

    fn getAllBackingImages(&self) -> BinderResult<Vec<String>> {
        lock(&self.state)
            .calls
            .push(Call::Other("getAllBackingImages"));
        Ok(self
            .images
            .metadata()
            .unwrap()
            .map(|m| m.partitions().iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default())
    }

    fn zeroFillNewImage(&self, _: &str, _: i64) -> BinderResult<()> {
        dsu(&self.state, "zeroFillNewImage")
    }

    fn removeAllImages(&self) -> BinderResult<()> {
        {
            let mut state = lock(&self.state);
            state.calls.push(Call::RemoveAll);
            state.mapped.clear();
        }
        self.images
            .remove_all()
            .map_err(|e| refuse(ERROR, &format!("Failed to remove: {e}")))
    }

    fn disableImage(&self, _: &str) -> BinderResult<()> {
        dsu(&self.state, "disableImage")
    }

    fn removeDisabledImages(&self) -> BinderResult<()> {
        dsu(&self.state, "removeDisabledImages")
    }

    fn isImageDisabled(&self, _: &str) -> BinderResult<bool> {
        dsu(&self.state, "isImageDisabled")
    }

    fn getMappedImageDevice(&self, name: &str) -> BinderResult<String> {
        let state = lock(&self.state);
        Ok(if state.mapped.contains(name) {
            self.images.image_path(name).display().to_string()
        } else {
            String::new()
        })
    }
}
