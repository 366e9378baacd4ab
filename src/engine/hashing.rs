//! SHA-256 whose state can be saved in a checkpoint and restored, so a resumed update still
//! verifies the hash and signature of the *whole* payload without re-reading what it applied.

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};

use crate::err;
use crate::error::Result;

#[derive(Clone, Default)]
pub struct ResumableSha256(Sha256);

impl ResumableSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }

    /// The exact internal state: chaining value, length and buffered partial block.
    pub fn save(&self) -> Vec<u8> {
        self.0.serialize().to_vec()
    }

    pub fn restore(state: &[u8]) -> Result<Self> {
        let array = state
            .try_into()
            .map_err(|_| err!(DeviceError, "saved hash state has {} bytes", state.len()))?;
        Sha256::deserialize(array)
            .map(ResumableSha256)
            .map_err(|_| err!(DeviceError, "saved hash state is corrupt"))
    }
}

/// SHA-256 of a byte string, in one call.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_restore_continues_the_same_hash() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0, 1, 63, 64, 65, 4097, 9999] {
            let mut h = ResumableSha256::new();
            h.update(&data[..split]);
            let mut resumed = ResumableSha256::restore(&h.save()).unwrap();
            resumed.update(&data[split..]);
            assert_eq!(resumed.finish(), sha256(&data), "split at {split}");
        }
        assert!(ResumableSha256::restore(&[1, 2, 3]).is_err());
    }
}
