//! Platform adapter: reading the trusted-key files a payload's signature is checked against
//! (PEM files named on the command line, the platform's `otacerts.zip`). What they hold is
//! parsed by the sans-I/O [`TrustedKeys::from_key_file`].

use std::path::Path;

use crate::err;
use crate::error::Result;
use crate::payload::keys::TrustedKeys;

/// Loads a key file: PEM (public keys and/or certificates, any number) or an `otacerts.zip`.
/// A file that cannot be read, or holds no usable public key, fails with 29.
pub fn load(path: &Path) -> Result<TrustedKeys> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| err!(NoTrustedKey, "reading key file {name}: {e}").caused_by(e))?;
    TrustedKeys::from_key_file(&name, &bytes)
}

/// Loads every file in `paths` into one set.
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<TrustedKeys> {
    let mut keys = TrustedKeys::none();
    for path in paths {
        keys.extend(load(path.as_ref())?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn a_key_file_that_cannot_be_used_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let private_only = dir.path().join("private.pem");
        std::fs::write(
            &private_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = load(&dir.path().join("missing.pem")).unwrap_err();
        assert_eq!(err.code, ErrorCode::NoTrustedKey, "{err}");
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound), "{err}");
        let err = load(&private_only).unwrap_err();
        assert_eq!(err.code, ErrorCode::NoTrustedKey, "{err}");
        assert_eq!(err.io_kind(), None, "{err}");
        assert!(err.message.contains("holds no public key"), "{err}");
    }
}
