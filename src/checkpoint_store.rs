//! Platform adapter: the engine's [`CheckpointStore`] as a file in the daemon's state
//! directory (`/data/misc/abupdate` on a device).
//!
//! A save replaces the file atomically ([`crate::state_file::replace`]: temp file, fsync,
//! rename, fsync of the directory), so after a crash the file is either the old or the new
//! checkpoint.

use std::path::{Path, PathBuf};

use crate::engine::checkpoint::{Checkpoint, CheckpointStore};
use crate::error::Result;

/// A checkpoint file in a state directory (`/data/misc/abupdate` on a device).
#[derive(Clone, Debug)]
pub struct FileCheckpointStore {
    dir: PathBuf,
}

const FILE_NAME: &str = "checkpoint";

impl FileCheckpointStore {
    /// The store in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        crate::state_file::create_dir(&dir)?;
        Ok(FileCheckpointStore { dir })
    }

    /// The directory it keeps the checkpoint in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl CheckpointStore for FileCheckpointStore {
    // fsblkcnt_t and c_ulong are 32 bits wide on some Android targets.
    #[allow(clippy::useless_conversion)]
    fn available_bytes(&self) -> Option<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.dir).ok()?;
        Some(u64::from(stat.blocks_available()) * u64::from(stat.fragment_size()))
    }

    fn load(&self) -> Result<Option<Checkpoint>> {
        // An undecodable checkpoint means "start over", which is always safe.
        Ok(crate::state_file::read(&self.dir.join(FILE_NAME))?
            .and_then(|bytes| Checkpoint::decode(&bytes)))
    }

    fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        crate::state_file::replace(&self.dir.join(FILE_NAME), &checkpoint.encode())
    }

    fn clear(&self) -> Result<()> {
        crate::state_file::remove(&self.dir.join(FILE_NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::checkpoint::tests::sample;

    #[test]
    fn round_trips_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCheckpointStore::new(dir.path().join("state")).unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        let mode = std::os::unix::fs::MetadataExt::mode(
            &std::fs::metadata(store.dir().join(FILE_NAME)).unwrap(),
        );
        assert_eq!(mode & 0o777, 0o600, "a checkpoint is the daemon's alone");
        store.clear().unwrap();
        assert_eq!(store.load().unwrap(), None);
    }
}
