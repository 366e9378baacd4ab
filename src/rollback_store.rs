//! abupdate's own record of AVB rollback floors, kept across updates in a small file.
//!
//! Why: the bootloader's stored rollback indexes cannot be read from Android, and the slot running
//! now only proves its own indexes. The record remembers the highest indexes of slots that booted
//! successfully, so an update cannot roll back past a version the device already ran, even after
//! the slot holding it has been overwritten.
//!
//! Threat model: the file lives in abupdate's private storage. Whoever can write there can also
//! delete it, so the record only ever *adds* to the floors; the current slot's vbmeta indexes
//! stay the baseline (see [`effective_floors`]). A file that fails its CRC (torn write, bit rot,
//! tampering) is reported as [`StoreState::Corrupt`] and contributes nothing, which falls back to
//! that baseline rather than refusing every update forever; the bootloader's own check stays the
//! final word.
//!
//! File format (little-endian, 268 bytes): `magic "ABRF"`, `version: u32 = 1`,
//! `floors: [u64; 32]`, `crc32: u32` (CRC-32/ISO-HDLC over the preceding 264 bytes).

use std::path::{Path, PathBuf};

use crate::avb::{RollbackFloors, MAX_ROLLBACK_LOCATIONS};
use crate::error::Result;

/// Size of the encoded record.
pub const RECORD_SIZE: usize = 8 + 8 * MAX_ROLLBACK_LOCATIONS + 4;
const MAGIC: [u8; 4] = *b"ABRF";
const VERSION: u32 = 1;

/// What loading the record found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// A well-formed record.
    Valid,
    /// No file yet (first boot of abupdate, or deleted).
    Missing,
    /// A file that is not a well-formed record; why, for the log.
    Corrupt(String),
}

/// The floors the record holds (all zero unless [`StoreState::Valid`]) and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedFloors {
    /// The floors read.
    pub floors: RollbackFloors,
    /// How the record was found.
    pub state: StoreState,
}

/// Encodes floors as a record.
pub fn encode(floors: &RollbackFloors) -> [u8; RECORD_SIZE] {
    let mut out = [0u8; RECORD_SIZE];
    out[..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&VERSION.to_le_bytes());
    for (slot, floor) in out[8..RECORD_SIZE - 4]
        .chunks_exact_mut(8)
        .zip(floors.as_array())
    {
        slot.copy_from_slice(&floor.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[..RECORD_SIZE - 4]);
    out[RECORD_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a record; `Err` says why it is not one (wrong size, magic, version or CRC).
pub fn decode(bytes: &[u8]) -> Result<RollbackFloors, String> {
    let Ok(record) = <&[u8; RECORD_SIZE]>::try_from(bytes) else {
        return Err(format!("{} bytes, a record has {RECORD_SIZE}", bytes.len()));
    };
    let (body, crc) = record.split_at(RECORD_SIZE - 4);
    let stored_crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored_crc {
        return Err("CRC mismatch".to_string());
    }
    if body[..4] != MAGIC {
        return Err("bad magic".to_string());
    }
    let version = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let mut floors = [0u64; MAX_ROLLBACK_LOCATIONS];
    for (floor, bytes) in floors.iter_mut().zip(body[8..].chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        *floor = u64::from_le_bytes(le);
    }
    Ok(RollbackFloors::from_array(floors))
}

/// The floors to check an update against: the current slot's vbmeta indexes, raised by the
/// record where it is valid. A missing or corrupt record leaves the current slot's floors,
/// still a sound lower bound.
pub fn effective_floors(current_slot: &RollbackFloors, stored: &LoadedFloors) -> RollbackFloors {
    match stored.state {
        StoreState::Valid => current_slot.max(&stored.floors),
        StoreState::Missing | StoreState::Corrupt(_) => *current_slot,
    }
}

/// The record's file. Writes replace it atomically ([`crate::state_file::replace`]).
#[derive(Clone, Debug)]
pub struct RollbackStore {
    path: PathBuf,
}

impl RollbackStore {
    /// The store in the file `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RollbackStore { path: path.into() }
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the record. A missing or malformed file is not an error (see [`StoreState`]); a
    /// failing read is (31, `DeviceError`).
    pub fn load(&self) -> Result<LoadedFloors> {
        let Some(bytes) = crate::state_file::read(&self.path)? else {
            return Ok(LoadedFloors {
                floors: RollbackFloors::new(),
                state: StoreState::Missing,
            });
        };
        Ok(match decode(&bytes) {
            Ok(floors) => LoadedFloors {
                floors,
                state: StoreState::Valid,
            },
            Err(why) => LoadedFloors {
                floors: RollbackFloors::new(),
                state: StoreState::Corrupt(why),
            },
        })
    }

    /// Raises the floor at `location` to `value` if higher and returns the record's floors.
    /// Never lowers. Over a missing or corrupt record this starts from zero; pass the whole
    /// current slot with [`advance_to`](Self::advance_to) to rebuild it fully.
    pub fn advance(&self, location: u32, value: u64) -> Result<RollbackFloors> {
        let mut wanted = RollbackFloors::new();
        wanted.raise(location, value)?;
        self.advance_to(&wanted)
    }

    /// Raises every floor to at least `floors` (e.g. the indexes of a slot that just booted
    /// successfully) and returns the record's floors. Writes only when something rises or the
    /// file was not a valid record.
    pub fn advance_to(&self, floors: &RollbackFloors) -> Result<RollbackFloors> {
        let loaded = self.load()?;
        let merged = loaded.floors.max(floors);
        if loaded.state != StoreState::Valid || merged != loaded.floors {
            self.write(&merged)?;
        }
        Ok(merged)
    }

    fn write(&self, floors: &RollbackFloors) -> Result<()> {
        crate::state_file::replace(&self.path, &encode(floors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use std::fs;

    fn sample() -> RollbackFloors {
        let mut floors = [0u64; MAX_ROLLBACK_LOCATIONS];
        for (i, f) in floors.iter_mut().enumerate() {
            *f = (i as u64) * 0x0101_0101_0101 + 1;
        }
        floors[31] = u64::MAX;
        RollbackFloors::from_array(floors)
    }

    #[test]
    fn record_round_trips_with_a_fixed_layout() {
        let bytes = encode(&sample());
        assert_eq!(bytes.len(), 268);
        assert_eq!(&bytes[..8], b"ABRF\x01\0\0\0");
        assert_eq!(&bytes[8..16], &1u64.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(sample()));
        assert_eq!(
            decode(&encode(&RollbackFloors::new())),
            Ok(RollbackFloors::new())
        );
    }

    #[test]
    fn every_single_byte_corruption_and_truncation_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = bytes;
                bad[i] ^= flip;
                assert!(decode(&bad).is_err(), "byte {i} ^ {flip:#x}");
            }
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn effective_floors_ignore_missing_and_corrupt_records() {
        let mut current = RollbackFloors::new();
        current.raise(0, 5).unwrap();
        current.raise(1, 100).unwrap();
        let stored = LoadedFloors {
            floors: sample(),
            state: StoreState::Valid,
        };
        let effective = effective_floors(&current, &stored);
        assert_eq!(
            (effective.get(0), effective.get(1), effective.get(2)),
            (Some(5), Some(0x0101_0101_0102), Some(0x0202_0202_0203))
        );
        for state in [StoreState::Missing, StoreState::Corrupt("x".into())] {
            let stored = LoadedFloors {
                floors: sample(),
                state,
            };
            assert_eq!(effective_floors(&current, &stored), current);
        }
    }

    #[test]
    fn store_starts_missing_advances_and_never_lowers() {
        let dir = tempfile::tempdir().unwrap();
        let store = RollbackStore::new(dir.path().join("rollback"));
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state, StoreState::Missing);
        assert_eq!(loaded.floors, RollbackFloors::new());

        let floors = store.advance(2, 7).unwrap();
        assert_eq!(floors.get(2), Some(7));
        assert_eq!(store.advance(2, 3).unwrap().get(2), Some(7));
        assert_eq!(store.advance(2, 7).unwrap().get(2), Some(7));
        assert_eq!(store.advance(5, 1).unwrap().get(2), Some(7));
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state, StoreState::Valid);
        assert_eq!(
            (loaded.floors.get(2), loaded.floors.get(5)),
            (Some(7), Some(1))
        );
        assert_eq!(
            store.advance(32, 1).unwrap_err().code,
            ErrorCode::AvbSignature
        );
        assert!(!dir.path().join(".rollback.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_reported_and_rebuilt_by_advance_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollback");
        let store = RollbackStore::new(&path);
        store.advance_to(&sample()).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 4;
        fs::write(&path, &bytes).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state, StoreState::Corrupt("CRC mismatch".into()));
        assert_eq!(loaded.floors, RollbackFloors::new());
        // Rebuilt from what the caller knows (the current slot), even when nothing rises.
        assert_eq!(
            store.advance_to(&RollbackFloors::new()).unwrap(),
            RollbackFloors::new()
        );
        assert_eq!(store.load().unwrap().state, StoreState::Valid);
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            store.load().unwrap().state,
            StoreState::Corrupt(_)
        ));
    }

    #[test]
    fn failed_write_leaves_the_old_record_and_rename_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollback");
        let store = RollbackStore::new(&path);
        store.advance(1, 10).unwrap();
        // A directory where the temp file goes: the write fails before the rename.
        fs::create_dir(dir.path().join(".rollback.tmp")).unwrap();
        let e = store.advance(1, 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::DeviceError);
        assert_eq!(store.load().unwrap().floors.get(1), Some(10));
        fs::remove_dir(dir.path().join(".rollback.tmp")).unwrap();
        // A stale temp file from a crash is neither read nor in the way.
        fs::write(dir.path().join(".rollback.tmp"), encode(&sample())).unwrap();
        assert_eq!(store.load().unwrap().floors.get(1), Some(10));
        assert_eq!(store.advance(1, 20).unwrap().get(1), Some(20));
        assert_eq!(store.load().unwrap().floors.get(1), Some(20));
        assert!(!dir.path().join(".rollback.tmp").exists());
    }

    #[test]
    fn read_errors_are_device_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Reading a directory fails with something other than NotFound.
        let e = RollbackStore::new(dir.path()).load().unwrap_err();
        assert_eq!(e.code, ErrorCode::DeviceError);
    }
}
