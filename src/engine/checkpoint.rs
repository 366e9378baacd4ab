//! Resume state: what it holds, how it is encoded, and the [`CheckpointStore`] trait the
//! engine saves it through (the file-backed store is an adapter:
//! [`crate::checkpoint_store::FileCheckpointStore`]).
//!
//! The durability rule: the target partitions are synced *before* a checkpoint that claims their
//! content is saved, and a store replaces the previous checkpoint atomically, so after a crash
//! it holds either the old or the new state.

use protobuf::Message;

use crate::error::Result;
use crate::payload::proto::checkpoint as pb;

const FORMAT_VERSION: u32 = 1;

/// How far an update got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Applying operations; `next_operation` says where to continue.
    Writing,
    /// All operations written and the payload verified; checking partitions.
    Verifying,
    /// Every partition written and verified.
    Done,
}

/// One checkpoint (`proto/checkpoint.proto`): what is durable of which payload's apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// SHA-256 of the payload's metadata (header, manifest, metadata signature).
    pub payload_id: [u8; 32],
    /// The payload's size, when it was known.
    pub payload_size: Option<u64>,
    /// The slot being written (`a`, `b`).
    pub target_slot: String,
    /// How far the update got.
    pub phase: Phase,
    /// Global index (over all partitions, in order) of the first operation not yet durable.
    pub next_operation: u32,
    /// Offset in the data section where that operation's blob, or the next blob, starts.
    pub next_data_offset: u64,
    /// The serialized SHA-256 state over the signed bytes, up to `next_data_offset`.
    pub payload_hash_state: Vec<u8>,
    /// The serialized SHA-256 state over the whole file, up to `next_data_offset`.
    pub file_hash_state: Vec<u8>,
    /// Partitions whose post-write pass (verification, verity) has finished.
    pub verified_partitions: u32,
    /// Resumes of this payload that ended in an error; after [`super::MAX_RESUME_FAILURES`] the
    /// apply starts over.
    pub resume_failures: u32,
}

impl Checkpoint {
    /// The protobuf encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = pb::Checkpoint::new();
        m.set_version(FORMAT_VERSION);
        m.set_payload_id(self.payload_id.to_vec());
        if let Some(size) = self.payload_size {
            m.set_payload_size(size);
        }
        m.set_target_slot(self.target_slot.clone());
        m.set_phase(self.phase as u32);
        m.set_next_operation(self.next_operation);
        m.set_next_data_offset(self.next_data_offset);
        m.set_payload_hash_state(self.payload_hash_state.clone());
        m.set_file_hash_state(self.file_hash_state.clone());
        m.set_verified_partitions(self.verified_partitions);
        m.set_resume_failures(self.resume_failures);
        m.write_to_bytes().unwrap_or_default()
    }

    /// Decodes a saved checkpoint; `None` for anything not written by this version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let m = pb::Checkpoint::parse_from_bytes(bytes).ok()?;
        if m.version() != FORMAT_VERSION {
            return None;
        }
        let phase = match m.phase() {
            0 => Phase::Writing,
            1 => Phase::Verifying,
            2 => Phase::Done,
            _ => return None,
        };
        Some(Checkpoint {
            payload_id: m.payload_id().try_into().ok()?,
            payload_size: m.payload_size,
            target_slot: m.target_slot().to_owned(),
            phase,
            next_operation: m.next_operation(),
            next_data_offset: m.next_data_offset(),
            payload_hash_state: m.payload_hash_state().to_vec(),
            file_hash_state: m.file_hash_state().to_vec(),
            verified_partitions: m.verified_partitions(),
            resume_failures: m.resume_failures(),
        })
    }
}

/// Where checkpoints live. Implementations must make `save` atomic and durable.
pub trait CheckpointStore: Send + Sync {
    /// The saved checkpoint; `None` when there is none.
    fn load(&self) -> Result<Option<Checkpoint>>;
    /// Replaces the saved checkpoint, atomically and durably.
    fn save(&self, checkpoint: &Checkpoint) -> Result<()>;
    /// Removes the saved checkpoint.
    fn clear(&self) -> Result<()>;
    /// Free space where checkpoints are kept, when the store can tell.
    fn available_bytes(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Checkpoint {
        Checkpoint {
            payload_id: [7; 32],
            payload_size: Some(1234),
            target_slot: "b".into(),
            phase: Phase::Verifying,
            next_operation: 42,
            next_data_offset: 9000,
            payload_hash_state: vec![1, 2, 3],
            file_hash_state: vec![4, 5],
            verified_partitions: 1,
            resume_failures: 2,
        }
    }

    #[test]
    fn garbage_means_no_checkpoint() {
        assert_eq!(Checkpoint::decode(b"\xff\xff\xff"), None);
        let mut bytes = sample().encode();
        bytes.truncate(bytes.len() / 2);
        assert!(Checkpoint::decode(&bytes).map_or(true, |c| c != sample()));
    }
}
