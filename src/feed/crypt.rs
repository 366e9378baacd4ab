//! Encrypted payloads (`abupdate-aes256gcm-x25519-v1`), the format only: no I/O.
//!
//! The payload is cut into chunks of `chunk_size` plaintext bytes (the last one shorter, at least
//! one chunk). Chunk `i` is stored as its AES-256-GCM ciphertext followed by the 16-byte tag,
//! under a random 256-bit content key, with
//! - nonce = 4 zero bytes || `i` as u64 big-endian (the key is used for this one payload only),
//! - AAD = `abupdate-chunk-v1` || `i` as u64 big-endian || 1 byte, 1 for the last chunk else 0.
//!
//! A chunk moved to another place fails its tag (its index is in nonce and AAD), and a file cut
//! after any chunk fails too: the chunk that now comes last was not sealed as the last one, and
//! the plaintext size the signed feed names fixes the chunk count. Plaintext offset `p` lies in
//! chunk `p / chunk_size`, stored at `(p / chunk_size) * (chunk_size + 16)`: a download resumes
//! at any chunk with a Range request.
//!
//! The content key is wrapped for each device key (the key file, [`KeyFile`]): an ephemeral
//! X25519 key agreed with the device's public key, HKDF-SHA256 (salt `abupdate-wrap-v1`, info =
//! ephemeral public || device public) to a key-encryption key, and AES-256-GCM (zero nonce: each
//! key-encryption key wraps once) of the content key with AAD `abupdate-wrap-v1`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::device_key::DeviceKey;
use super::model::ENCRYPTION_SCHEME;
use crate::error::Result;
use crate::{bail, err};

/// Bytes of the AES-256-GCM tag after each encrypted chunk.
pub const TAG_LEN: u64 = 16;
const CHUNK_AAD: &[u8] = b"abupdate-chunk-v1";
const WRAP_LABEL: &[u8] = b"abupdate-wrap-v1";
/// A key file names at most this many devices, and a device fetches at most this much of it.
pub const MAX_RECIPIENTS: usize = 100_000;
/// The most bytes of a key file a device fetches.
pub const MAX_KEY_FILE_BYTES: u64 = 16 << 20;

/// Where chunks lie for a payload of `plain_size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext bytes per chunk (the last one may be shorter).
    pub chunk_size: u32,
    /// The payload's plaintext size in bytes.
    pub plain_size: u64,
}

impl Layout {
    /// Number of chunks (at least one, also for an empty payload).
    pub fn chunks(&self) -> u64 {
        self.plain_size.div_ceil(u64::from(self.chunk_size)).max(1)
    }

    /// The encrypted file's size; `None` if it does not fit a u64.
    pub fn encrypted_size(&self) -> Option<u64> {
        self.chunks()
            .checked_mul(TAG_LEN)?
            .checked_add(self.plain_size)
    }

    /// Plaintext bytes in chunk `index`.
    pub fn plain_len(&self, index: u64) -> u64 {
        let start = index.saturating_mul(u64::from(self.chunk_size));
        self.plain_size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }

    /// Where chunk `index` starts in the encrypted file.
    pub fn encrypted_offset(&self, index: u64) -> Option<u64> {
        index.checked_mul(u64::from(self.chunk_size).checked_add(TAG_LEN)?)
    }

    /// Whether chunk `index` is the last one.
    pub fn is_last(&self, index: u64) -> bool {
        index.saturating_add(1) == self.chunks()
    }
}

/// The key that encrypts one payload's chunks.
pub struct ContentKey {
    key: LessSafeKey,
    raw: [u8; 32],
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    /// A new random content key.
    pub fn generate() -> Result<Self> {
        let mut raw = [0u8; 32];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| err!(VerificationFailed, "no randomness for a content key"))?;
        Self::from_bytes(raw)
    }

    /// The same key again (tests decrypt twice with one key).
    #[cfg(test)]
    pub(crate) fn duplicate(&self) -> Self {
        Self::from_bytes(self.raw).unwrap()
    }

    fn from_bytes(raw: [u8; 32]) -> Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, &raw)
            .map_err(|_| err!(VerificationFailed, "bad content key"))?;
        Ok(ContentKey {
            key: LessSafeKey::new(key),
            raw,
        })
    }

    /// Encrypts chunk `index` in place and appends its tag.
    pub fn seal_chunk(&self, index: u64, last: bool, chunk: &mut Vec<u8>) -> Result<()> {
        self.key
            .seal_in_place_append_tag(nonce(index), Aad::from(aad(index, last)), chunk)
            .map_err(|_| err!(VerificationFailed, "sealing chunk {index} failed"))
    }

    /// Checks and decrypts chunk `index` (ciphertext and tag) in place; the plaintext is the
    /// returned slice. Nothing of a chunk that fails is returned.
    pub fn open_chunk<'a>(&self, index: u64, last: bool, chunk: &'a mut [u8]) -> Result<&'a [u8]> {
        match self
            .key
            .open_in_place(nonce(index), Aad::from(aad(index, last)), chunk)
        {
            Ok(plain) => Ok(plain),
            Err(_) => bail!(
                VerificationFailed,
                "encrypted chunk {index} does not authenticate: tampered, moved from elsewhere, \
                 cut short, or not encrypted with this content key"
            ),
        }
    }
}

fn nonce(index: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn aad(index: u64, last: bool) -> [u8; 26] {
    let mut out = [0u8; 26];
    out[..17].copy_from_slice(CHUNK_AAD);
    out[17..25].copy_from_slice(&index.to_be_bytes());
    out[25] = u8::from(last);
    out
}

/// The wrapped content keys of one payload (`key_url`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Must be `ENCRYPTION_SCHEME`.
    pub scheme: String,
    /// One wrapped key per device.
    pub recipients: Vec<Recipient>,
}

/// One device's wrapped copy of the content key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// The device's X25519 public key, base64.
    pub device: String,
    /// The ephemeral X25519 public key, base64.
    pub ephemeral: String,
    /// The wrapped content key (32 bytes and a 16-byte tag), base64.
    pub wrapped: String,
}

impl KeyFile {
    /// An empty key file of this scheme.
    pub fn new() -> Self {
        KeyFile {
            scheme: ENCRYPTION_SCHEME.into(),
            recipients: Vec::new(),
        }
    }

    /// Parses a key file (`VerificationFailed` when it is not one of this scheme, or too large).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let file: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| err!(VerificationFailed, "the key file is not valid: {e}"))?;
        if file.scheme != ENCRYPTION_SCHEME || file.recipients.len() > MAX_RECIPIENTS {
            bail!(
                VerificationFailed,
                "the key file is of another scheme or too large"
            );
        }
        Ok(file)
    }

    /// Wraps `key` for the device whose X25519 public key is `device`.
    pub fn add(&mut self, key: &ContentKey, device: &[u8; 32]) -> Result<()> {
        let rng = SystemRandom::new();
        let ephemeral = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| err!(VerificationFailed, "no ephemeral key"))?;
        let ephemeral_public: [u8; 32] = ephemeral
            .compute_public_key()
            .ok()
            .and_then(|k| k.as_ref().try_into().ok())
            .ok_or_else(|| err!(VerificationFailed, "no ephemeral public key"))?;
        let shared = agreement::agree_ephemeral(
            ephemeral,
            &UnparsedPublicKey::new(&X25519, device),
            |shared| <[u8; 32]>::try_from(shared).ok(),
        )
        .ok()
        .flatten()
        .ok_or_else(|| err!(VerificationFailed, "X25519 with a bad device key"))?;
        let kek = key_encryption_key(&shared, &ephemeral_public, device)?;
        let mut wrapped = key.raw.to_vec();
        kek.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(WRAP_LABEL),
            &mut wrapped,
        )
        .map_err(|_| err!(VerificationFailed, "wrapping failed"))?;
        self.recipients.retain(|r| r.device != B64.encode(device));
        self.recipients.push(Recipient {
            device: B64.encode(device),
            ephemeral: B64.encode(ephemeral_public),
            wrapped: B64.encode(wrapped),
        });
        Ok(())
    }

    /// The content key, unwrapped with `device`'s key (20 when the file has none for it or it
    /// does not unwrap).
    pub fn unwrap_for(&self, device: &dyn DeviceKey) -> Result<ContentKey> {
        let public = device.public_key();
        let me = B64.encode(public);
        let Some(entry) = self.recipients.iter().find(|r| r.device == me) else {
            bail!(
                VerificationFailed,
                "the payload is not encrypted for this device's key ({me})"
            );
        };
        let decode32 = |text: &str| -> Option<[u8; 32]> {
            B64.decode(text).ok().and_then(|v| v.try_into().ok())
        };
        let ephemeral = decode32(&entry.ephemeral)
            .ok_or_else(|| err!(VerificationFailed, "bad ephemeral key in the key file"))?;
        let shared = device.agree(&ephemeral)?;
        let kek = key_encryption_key(&shared, &ephemeral, &public)?;
        let mut wrapped = B64
            .decode(&entry.wrapped)
            .map_err(|_| err!(VerificationFailed, "bad wrapped key in the key file"))?;
        let raw: [u8; 32] = kek
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(WRAP_LABEL),
                &mut wrapped,
            )
            .ok()
            .and_then(|plain| <[u8; 32]>::try_from(&*plain).ok())
            .ok_or_else(|| {
                err!(
                    VerificationFailed,
                    "the content key does not unwrap with this device's key (wrong key, or a \
                     forged key file)"
                )
            })?;
        ContentKey::from_bytes(raw)
    }
}

fn key_encryption_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    device: &[u8; 32],
) -> Result<LessSafeKey> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, WRAP_LABEL);
    let info: [&[u8]; 2] = [ephemeral, device];
    let mut kek = [0u8; 32];
    salt.extract(shared)
        .expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut kek))
        .map_err(|_| err!(VerificationFailed, "HKDF failed"))?;
    UnboundKey::new(&AES_256_GCM, &kek)
        .map(LessSafeKey::new)
        .map_err(|_| err!(VerificationFailed, "bad key-encryption key"))
}

/// Encrypts a whole payload held in memory (tests, small payloads); `publish` streams.
pub fn encrypt_all(key: &ContentKey, layout: Layout, plain: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for index in 0..layout.chunks() {
        let start = usize::try_from(index * u64::from(layout.chunk_size))
            .map_err(|_| err!(VerificationFailed, "payload too large"))?;
        let len = usize::try_from(layout.plain_len(index))
            .map_err(|_| err!(VerificationFailed, "payload too large"))?;
        let mut chunk = plain
            .get(start..start + len)
            .ok_or_else(|| err!(VerificationFailed, "payload shorter than its layout"))?
            .to_vec();
        key.seal_chunk(index, layout.is_last(index), &mut chunk)?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn layout_maps_offsets_to_chunks() {
        let l = Layout {
            chunk_size: 4096,
            plain_size: 10_000,
        };
        assert_eq!(l.chunks(), 3);
        assert_eq!(l.encrypted_size(), Some(10_048));
        assert_eq!(l.plain_len(2), 10_000 - 8192);
        assert_eq!(l.encrypted_offset(2), Some(2 * 4112));
        assert!(l.is_last(2) && !l.is_last(1));
        let empty = Layout {
            chunk_size: 4096,
            plain_size: 0,
        };
        assert_eq!((empty.chunks(), empty.encrypted_size()), (1, Some(16)));
    }

    #[test]
    fn chunks_bind_index_and_end() {
        let key = ContentKey::generate().unwrap();
        let mut sealed = b"hello".to_vec();
        key.seal_chunk(3, false, &mut sealed).unwrap();
        assert_eq!(
            key.open_chunk(3, false, &mut sealed.clone()).unwrap(),
            b"hello"
        );
        for (index, last) in [(4, false), (3, true)] {
            let e = key
                .open_chunk(index, last, &mut sealed.clone())
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::VerificationFailed);
        }
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(key.open_chunk(3, false, &mut flipped).is_err());
        let other = ContentKey::generate().unwrap();
        assert!(other.open_chunk(3, false, &mut sealed.clone()).is_err());
    }
}
