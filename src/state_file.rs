//! Small state files the root daemon keeps in its state directory (the service's status,
//! the engine's checkpoint, the rollback store): the one place that writes and reads them.
//!
//! A write replaces the file atomically: a temporary file in the same directory, synced, renamed
//! over the old one, then the directory synced, so a crash leaves either the old or the new
//! content. The temporary file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600:
//! a link planted at its name (by anyone who could write the directory) makes the write fail
//! instead of sending the bytes (possibly credentials) through it, and the file is never readable
//! by others, whatever the umask. Reads refuse a symbolic link at the final component too.
//! The state directory itself is made here too, 0700 ([`create_dir`]): the daemon's alone, so
//! others cannot even list what it keeps.
//!
//! Why 0600 and not 0644: the service's state file can hold a URL request's headers and the
//! checkpoint says how far an update got; nothing outside the daemon needs either (clients ask
//! the service), and init creates `/data/misc/abupdate` 0700 for the same reason.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content; the
/// new file has mode 0600.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| crate::err!(DeviceError, "{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let io = |what: &str, e| Error::io(format_args!("{what} {}", tmp.display()), e);
    // A temporary file left by a crash is ours to drop; unlinking a planted link removes the
    // link, never what it points to.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("removing the stale", e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| {
        Error::io(
            format_args!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    sync_dir(dir)
}

/// The content of `path`; `None` if it does not exist. A symbolic link there is an error.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format_args!("opening {}", path.display()), e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
    Ok(Some(bytes))
}

/// Removes `path` durably; a missing file is no error.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
            _ => sync_dir(Path::new(".")),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format_args!("removing {}", path.display()), e)),
    }
}

/// Makes the state directory `dir` (and its parents) if missing, mode 0700 whatever the umask
/// for the directories it creates; an existing directory is left as it is.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format_args!("creating {}", dir.display()), e))
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format_args!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    #[test]
    fn state_directory_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        create_dir(&state).unwrap();
        create_dir(&state).unwrap();
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn replaces_with_mode_0600_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        symlink(&victim, dir.path().join(".state.tmp")).unwrap();
        let path = dir.path().join("state");
        replace(&path, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(read(&path).unwrap().unwrap(), b"secret");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn reads_refuse_links_and_report_absence() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        assert!(read(&link).is_err());
        assert_eq!(read(&dir.path().join("none")).unwrap(), None);
        remove(&link).unwrap();
        remove(&link).unwrap();
        assert!(target.exists());
    }
}
