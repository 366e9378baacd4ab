//! Helpers shared by the AVB integration tests: test data, keys, and an `openssl` CLI signer.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::avb::{Algorithm, AvbPublicKey, RingSigner, VbmetaSigner};
use abupdate::{Error, ErrorCode, Result};

pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/avb")
        .join(name)
}

pub fn data(name: &str) -> Vec<u8> {
    std::fs::read(data_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A ring signer for a checked-in test key (`testkey_rsa2048.pem`, `testkey_rsa4096.pem`).
pub fn ring_signer(name: &str) -> RingSigner {
    RingSigner::from_pem(&data(name)).unwrap()
}

/// Runs `openssl` with `args`, panicking with its stderr if it fails (the tests need openssl).
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running openssl (Debian package `openssl`) failed: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signs through `openssl dgst -sign` (PKCS#1 v1.5), an implementation independent of ring and
/// able to use 8192-bit keys.
pub struct OpensslSigner {
    key_path: PathBuf,
    public_key: AvbPublicKey,
}

impl OpensslSigner {
    pub fn new(key_path: PathBuf) -> Self {
        let public_pem = openssl(&["pkey", "-in", key_path.to_str().unwrap(), "-pubout"]);
        let public_key = AvbPublicKey::from_pem(&public_pem).unwrap();
        OpensslSigner {
            key_path,
            public_key,
        }
    }
}

impl VbmetaSigner for OpensslSigner {
    fn public_key(&self) -> &AvbPublicKey {
        &self.public_key
    }

    fn sign(&self, algorithm: Algorithm, message: &[u8]) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let input = dir.path().join("message");
        let output = dir.path().join("signature");
        std::fs::write(&input, message).map_err(|e| Error::io("writing message", e))?;
        let digest = match algorithm.hash_len() {
            32 => "-sha256",
            64 => "-sha512",
            _ => return Err(Error::new(ErrorCode::AvbSignature, "no hash")),
        };
        openssl(&[
            "dgst",
            digest,
            "-sign",
            self.key_path.to_str().unwrap(),
            "-out",
            output.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        std::fs::read(&output).map_err(|e| Error::io("reading signature", e))
    }
}
