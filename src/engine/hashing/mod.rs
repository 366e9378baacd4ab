//! SHA-256 whose state can be saved in a checkpoint and restored, so a resumed update still
//! verifies the hash and signature of the *whole* payload without re-reading what it applied.
//!
//! Every blob of a payload is hashed three times: into the payload hash (signed), into the
//! file hash (`FILE_HASH`), and on its own (`data_sha256_hash`). [`ResumableSha256::update_all`]
//! does the three in one pass; with the x86 SHA extensions, whose round instruction is mostly
//! idle waiting on its own latency, three interleaved computations cost little more than one.

#[cfg(target_arch = "x86_64")]
mod sha_ni;

use crate::err;
use crate::error::Result;

const BLOCK: usize = 64;
/// Saved state: chaining value (8 little-endian words), block count (little-endian), buffered
/// byte count, buffered bytes padded to 63 with zeros. This is the layout of the `sha2` crate's
/// serialized state, so checkpoints written with it still restore.
const SAVED_LEN: usize = 32 + 8 + 1 + (BLOCK - 1);

const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 whose state can be saved ([`ResumableSha256::save`]) and restored.
#[derive(Clone)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Whole blocks compressed into `state`.
    blocks: u64,
    buffer: [u8; BLOCK],
    /// Bytes in `buffer`, always less than a block: full blocks are compressed at once.
    buffered: usize,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        ResumableSha256 {
            state: INITIAL_STATE,
            blocks: 0,
            buffer: [0; BLOCK],
            buffered: 0,
        }
    }
}

impl ResumableSha256 {
    /// A hash of no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `data` after what came before.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.buffered > 0 {
            let take = (BLOCK - self.buffered).min(data.len());
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
            self.buffered += take;
            data = &data[take..];
            if self.buffered < BLOCK {
                return;
            }
            crate::crypto::sha256::compress256(&mut self.state, std::slice::from_ref(&self.buffer));
            self.blocks += 1;
            self.buffered = 0;
        }
        let (blocks, rest) = as_blocks(data);
        crate::crypto::sha256::compress256(&mut self.state, blocks);
        self.blocks += blocks.len() as u64;
        self.buffer[..rest.len()].copy_from_slice(rest);
        self.buffered = rest.len();
    }

    /// Feeds the same `data` to three hashes in one pass: the blocks all three can take whole
    /// are compressed together, the few bytes around them (each hash has its own offset within
    /// a block) one by one.
    pub fn update_all(hashes: [&mut Self; 3], data: &[u8]) {
        let [a, b, c] = hashes;
        let mut at = [0usize; 3];
        for (hash, at) in [&mut *a, &mut *b, &mut *c].into_iter().zip(&mut at) {
            if hash.buffered > 0 {
                *at = (BLOCK - hash.buffered).min(data.len());
                hash.update(&data[..*at]);
            }
        }
        let common = at
            .iter()
            .map(|&at| (data.len() - at) / BLOCK)
            .min()
            .unwrap_or(0);
        if common > 0 {
            let span = |at: usize| as_blocks(&data[at..at + common * BLOCK]).0;
            let blocks = [span(at[0]), span(at[1]), span(at[2])];
            compress_three([&mut a.state, &mut b.state, &mut c.state], blocks);
            for (hash, at) in [&mut *a, &mut *b, &mut *c].into_iter().zip(&mut at) {
                hash.blocks += common as u64;
                *at += common * BLOCK;
            }
        }
        for (hash, at) in [a, b, c].into_iter().zip(at) {
            hash.update(&data[at..]);
        }
    }

    /// The digest of everything hashed.
    pub fn finish(mut self) -> [u8; 32] {
        let bits = (self.blocks * BLOCK as u64 + self.buffered as u64).wrapping_mul(8);
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.buffered].copy_from_slice(&self.buffer[..self.buffered]);
        tail[self.buffered] = 0x80;
        let len = if self.buffered < BLOCK - 8 {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[len - 8..len].copy_from_slice(&bits.to_be_bytes());
        crate::crypto::sha256::compress256(&mut self.state, as_blocks(&tail[..len]).0);
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The exact internal state: chaining value, length and buffered partial block.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SAVED_LEN);
        for word in self.state {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.blocks.to_le_bytes());
        out.push(self.buffered as u8);
        out.extend_from_slice(&self.buffer[..self.buffered]);
        out.resize(SAVED_LEN, 0);
        out
    }

    /// The hash whose state `saved` holds (a `DeviceError` when it is not a saved state).
    pub fn restore(saved: &[u8]) -> Result<Self> {
        if saved.len() != SAVED_LEN {
            return Err(err!(
                DeviceError,
                "saved hash state has {} bytes",
                saved.len()
            ));
        }
        let (words, rest) = saved.split_at(32);
        let (blocks, rest) = rest.split_at(8);
        let buffered = usize::from(rest[0]);
        let bytes = &rest[1..];
        if buffered >= BLOCK || bytes[buffered..].iter().any(|&b| b != 0) {
            return Err(err!(DeviceError, "saved hash state is corrupt"));
        }
        let mut hash = ResumableSha256 {
            blocks: u64::from_le_bytes(blocks.try_into().unwrap_or_default()),
            buffered,
            ..Self::default()
        };
        for (word, bytes) in hash.state.iter_mut().zip(words.chunks_exact(4)) {
            *word = u32::from_le_bytes(bytes.try_into().unwrap_or_default());
        }
        hash.buffer[..buffered].copy_from_slice(&bytes[..buffered]);
        Ok(hash)
    }
}

/// SHA-256 of a byte string, in one call.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut hash = ResumableSha256::new();
    hash.update(data);
    hash.finish()
}

/// `data` as whole blocks and the bytes after them (`<[u8]>::as_chunks`, stable only since Rust
/// 1.88).
fn as_blocks(data: &[u8]) -> (&[[u8; BLOCK]], &[u8]) {
    let (whole, rest) = data.split_at(data.len() / BLOCK * BLOCK);
    // SAFETY: `[u8; BLOCK]` has alignment 1 and size BLOCK, and `whole` is exactly
    // `whole.len() / BLOCK` of them, borrowed for the same lifetime.
    let blocks = unsafe { std::slice::from_raw_parts(whole.as_ptr().cast(), whole.len() / BLOCK) };
    (blocks, rest)
}

/// Compresses `blocks[i]` (all of one length) into `states[i]`. Unoptimised builds (the tests)
/// leave it to `sha2`, which they build optimised: intrinsics that are not inlined are dozens of
/// times slower than the plain single-message code.
fn compress_three(states: [&mut [u32; 8]; 3], blocks: [&[[u8; BLOCK]]; 3]) {
    #[cfg(target_arch = "x86_64")]
    if !cfg!(debug_assertions) && sha_ni::available() {
        let [a, b, c] = states;
        let mut together = [*a, *b, *c];
        // SAFETY: `available` found the CPU features `compress` is compiled for.
        unsafe { sha_ni::compress(&mut together, blocks) };
        [*a, *b, *c] = together;
        return;
    }
    for (state, blocks) in states.into_iter().zip(blocks) {
        crate::crypto::sha256::compress256(state, blocks);
    }
}

#[cfg(all(test, not(soong)))]
mod tests {
    use super::*;
    use sha2::digest::common::hazmat::SerializableState;
    use sha2::Digest;

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect()
    }

    #[test]
    fn matches_sha2_and_its_saved_states() {
        let data = data(10_000);
        for split in [0, 1, 55, 56, 63, 64, 65, 119, 4097, 9999, 10_000] {
            let mut ours = ResumableSha256::new();
            ours.update(&data[..split]);
            let mut theirs = sha2::Sha256::new();
            theirs.update(&data[..split]);
            assert_eq!(ours.save(), theirs.serialize().to_vec(), "split at {split}");
            let mut resumed = ResumableSha256::restore(&theirs.serialize()).unwrap();
            resumed.update(&data[split..]);
            assert_eq!(
                resumed.finish(),
                <[u8; 32]>::from(sha2::Sha256::digest(&data))
            );
        }
        assert!(ResumableSha256::restore(&[1, 2, 3]).is_err());
        let mut corrupt = ResumableSha256::new().save();
        corrupt[40] = 64;
        assert!(ResumableSha256::restore(&corrupt).is_err());
    }

    #[test]
    fn three_at_once_equals_one_by_one() {
        let data = data(72_000);
        // Hashes at different offsets within a block, fed slices of every kind of length.
        for (offsets, len) in [
            ([0, 0, 0], 70_000),
            ([3, 64, 130], 65_536),
            ([63, 1, 0], 200),
            ([5, 9, 0], 60),
        ] {
            let mut together = offsets.map(|o| {
                let mut h = ResumableSha256::new();
                h.update(&data[..o]);
                h
            });
            let mut apart = together.clone();
            let [a, b, c] = &mut together;
            ResumableSha256::update_all([a, b, c], &data[1000..1000 + len]);
            for h in &mut apart {
                h.update(&data[1000..1000 + len]);
            }
            for (t, a) in together.into_iter().zip(apart) {
                assert_eq!(t.save(), a.save(), "offsets {offsets:?}, {len} bytes");
                assert_eq!(t.finish(), a.finish());
            }
        }
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    /// The interleaved compression itself, whatever the build (`update_all` uses it only when
    /// optimised).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn interleaved_compression_matches_sha2() {
        if !sha_ni::available() {
            eprintln!("no SHA extensions on this CPU: nothing to compare");
            return;
        }
        let data = data(64 * 40);
        let (blocks, _) = as_blocks(&data);
        let mut ours = [INITIAL_STATE, [7; 8], INITIAL_STATE];
        let spans = [&blocks[..20], &blocks[3..23], &blocks[20..40]];
        // SAFETY: `available` said the CPU has the features `compress` needs.
        unsafe { sha_ni::compress(&mut ours, spans) };
        for (state, (start, span)) in ours.iter().zip([
            (INITIAL_STATE, spans[0]),
            ([7; 8], spans[1]),
            (INITIAL_STATE, spans[2]),
        ]) {
            let mut expected = start;
            crate::crypto::sha256::compress256(&mut expected, span);
            assert_eq!(*state, expected);
        }
    }
}
