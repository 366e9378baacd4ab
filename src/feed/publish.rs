//! `abupdate publish`: adds an offer to a feed directory and signs the feed again (a host
//! tool). The directory is served as it is: `<model>/<channel>/feed.json`, `feed.json.sig`
//! (PKCS#1 v1.5 SHA-256 with the OTA key, over the exact bytes of feed.json) and the payloads
//! beside them, encrypted ones as `<id>.bin.enc` with their wrapped keys in `<id>.keys`.
//!
//! Files are written to a temporary name and renamed, payload and keys before the feed, so a
//! server never serves a feed that names a file not there yet.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::crypt::{ContentKey, KeyFile, Layout};
use super::model::{Encryption, Feed, Offer, PayloadRef, TargetBuild, ENCRYPTION_SCHEME, FORMAT};
use crate::engine::metadata::Metadata;
use crate::error::{Error, Result};
use crate::payload::keys::TrustedKeys;
use crate::payload::properties::PayloadProperties;
use crate::payload::signature::Signer;
use crate::payload::PayloadHeader;

/// The default plaintext chunk of encrypted payloads.
pub const DEFAULT_CHUNK: u32 = 64 * 1024;

/// One `publish`.
pub struct Publication<'a> {
    /// The feed directory (`FEED_DIR`); the feed goes to `FEED_DIR/<model>/<channel>/`.
    pub feed_dir: &'a Path,
    /// The device model.
    pub model: &'a str,
    /// The update channel.
    pub channel: &'a str,
    /// The payload file to publish.
    pub payload: &'a Path,
    /// `payload_properties.txt` lines; computed from the payload when `None`.
    pub properties: Option<Vec<String>>,
    /// The offer id; default: `<timestamp>-full` or `<timestamp>-delta`.
    pub id: Option<String>,
    /// The target build's fingerprint.
    pub fingerprint: String,
    /// Default: the payload's `max_timestamp`.
    pub timestamp: Option<i64>,
    /// For a delta: the fingerprint of the build it applies to.
    pub source_fingerprint: Option<String>,
    /// Rollout percentage, 0-100.
    pub rollout_percent: u8,
    /// Release notes.
    pub notes: String,
    /// AVB rollback index location -> index of the target build.
    pub rollback_indexes: BTreeMap<String, u64>,
    /// X25519 public keys of the devices to encrypt for; empty: not encrypted.
    pub encrypt_for: Vec<[u8; 32]>,
    /// Plaintext bytes per encrypted chunk.
    pub chunk_size: u32,
    /// The feed's report URL.
    pub report_url: Option<String>,
    /// The feed's check-in URL.
    pub checkin_url: Option<String>,
    /// Unix seconds: the feed's `generated_at` (never before the previous feed's).
    pub now: i64,
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    crate::err!(DeviceError, "{what}: {e}")
}

/// Publishes and returns the offer as it went into the feed.
pub fn publish(p: &Publication<'_>, signer: &Signer) -> Result<Offer> {
    let dir = p.feed_dir.join(p.model).join(p.channel);
    std::fs::create_dir_all(&dir).map_err(|e| io(dir.display(), e))?;
    let feed_path = dir.join("feed.json");
    let mut feed = match std::fs::read(&feed_path) {
        Ok(bytes) => Feed::parse(&bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Feed {
            format: FORMAT,
            model: p.model.to_owned(),
            channel: p.channel.to_owned(),
            generated_at: 0,
            report_url: None,
            checkin_url: None,
            offers: Vec::new(),
        },
        Err(e) => return Err(io(feed_path.display(), e)),
    };
    let (metadata, size) = read_metadata(p.payload)?;
    let manifest = &metadata.manifest;
    let timestamp = p.timestamp.unwrap_or(manifest.max_timestamp);
    let kind = if p.source_fingerprint.is_some() {
        "delta"
    } else {
        "full"
    };
    let id =
        p.id.clone()
            .unwrap_or_else(|| format!("{timestamp}-{kind}"));
    let properties = match &p.properties {
        Some(lines) => lines.clone(),
        None => compute_properties(p.payload, size)?,
    };
    let (url, encryption) = if p.encrypt_for.is_empty() {
        let name = format!("{id}.bin");
        copy_file(p.payload, &dir.join(&name))?;
        (name, None)
    } else {
        let name = format!("{id}.bin.enc");
        let key = ContentKey::generate()?;
        let layout = Layout {
            chunk_size: p.chunk_size,
            plain_size: size,
        };
        encrypt_file(p.payload, &dir.join(&name), &key, layout)?;
        let mut keys = KeyFile::new();
        for device in &p.encrypt_for {
            keys.add(&key, device)?;
        }
        let key_name = format!("{id}.keys");
        let json = serde_json::to_vec_pretty(&keys)
            .map_err(|e| crate::err!(DeviceError, "key file: {e}"))?;
        write_file(&dir.join(&key_name), &json)?;
        (
            name,
            Some(Encryption {
                scheme: ENCRYPTION_SCHEME.into(),
                chunk_size: p.chunk_size,
                key_url: key_name,
            }),
        )
    };
    let offer = Offer {
        id: id.clone(),
        build: TargetBuild {
            fingerprint: p.fingerprint.clone(),
            timestamp,
            security_patch: manifest.security_patch_level.clone(),
            rollback_indexes: p.rollback_indexes.clone(),
        },
        source_fingerprint: p.source_fingerprint.clone(),
        payload: PayloadRef {
            url,
            offset: 0,
            size,
            properties,
            encryption,
        },
        rollout_percent: p.rollout_percent,
        notes: p.notes.clone(),
    };
    feed.offers.retain(|o| o.id != id);
    feed.offers.push(offer.clone());
    feed.generated_at = p.now.max(feed.generated_at);
    if p.report_url.is_some() {
        feed.report_url = p.report_url.clone();
    }
    if p.checkin_url.is_some() {
        feed.checkin_url = p.checkin_url.clone();
    }
    let bytes = feed.to_json()?;
    let signature = signer.sign_digest(&sha256(&bytes))?;
    write_file(&dir.join("feed.json.sig"), &signature)?;
    write_file(&feed_path, &bytes)?;
    Ok(offer)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// The payload's metadata (for its timestamp and patch level; inspection, not trust: the device
/// verifies) and its size.
fn read_metadata(path: &Path) -> Result<(Metadata, u64)> {
    let mut file = File::open(path).map_err(|e| io(path.display(), e))?;
    let size = file.metadata().map_err(|e| io(path.display(), e))?.len();
    let mut head = vec![0u8; crate::payload::HEADER_SIZE];
    file.read_exact(&mut head)
        .map_err(|e| io(path.display(), e))?;
    let header = PayloadHeader::parse(&head, Some(size))?;
    let mut bytes = head;
    let rest = header.data_offset().saturating_sub(bytes.len() as u64);
    (&mut file)
        .take(rest)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path.display(), e))?;
    let metadata = Metadata::verify(
        bytes,
        Some(size),
        &PayloadProperties::new(),
        &TrustedKeys::accept_unsigned(),
    )?;
    Ok((metadata, size))
}

/// `FILE_HASH`, `FILE_SIZE`, `METADATA_HASH`, `METADATA_SIZE` as `payload_properties.txt` has them.
fn compute_properties(path: &Path, size: u64) -> Result<Vec<String>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut file = File::open(path).map_err(|e| io(path.display(), e))?;
    let mut head = [0u8; crate::payload::HEADER_SIZE];
    file.read_exact(&mut head)
        .map_err(|e| io(path.display(), e))?;
    let metadata_size = PayloadHeader::parse(&head, Some(size))?.metadata_size();
    let mut file = File::open(path).map_err(|e| io(path.display(), e))?;
    let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
    let mut meta = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io(path.display(), e))?;
        if n == 0 {
            break;
        }
        let take = usize::try_from(metadata_size.saturating_sub(seen))
            .unwrap_or(n)
            .min(n);
        meta.update(&buf[..take]);
        whole.update(&buf[..n]);
        seen += n as u64;
    }
    Ok(vec![
        format!("FILE_HASH={}", b64.encode(whole.finish())),
        format!("FILE_SIZE={size}"),
        format!("METADATA_HASH={}", b64.encode(meta.finish())),
        format!("METADATA_SIZE={metadata_size}"),
    ])
}

fn temp_for(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through a temporary file and a rename (readable by the server).
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_for(path);
    std::fs::write(&tmp, bytes).map_err(|e| io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path.display(), e))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let tmp = temp_for(to);
    std::fs::copy(from, &tmp).map_err(|e| io(tmp.display(), e))?;
    std::fs::rename(&tmp, to).map_err(|e| io(to.display(), e))
}

/// Encrypts `from` chunk by chunk into `to` (one chunk in memory).
fn encrypt_file(from: &Path, to: &Path, key: &ContentKey, layout: Layout) -> Result<()> {
    let mut input = File::open(from).map_err(|e| io(from.display(), e))?;
    let tmp = temp_for(to);
    let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(|e| io(tmp.display(), e))?);
    let mut chunk = Vec::new();
    for index in 0..layout.chunks() {
        chunk.clear();
        let want = layout.plain_len(index);
        (&mut input)
            .take(want)
            .read_to_end(&mut chunk)
            .map_err(|e| io(from.display(), e))?;
        if chunk.len() as u64 != want {
            crate::bail!(
                DeviceError,
                "{} changed while it was encrypted",
                from.display()
            );
        }
        key.seal_chunk(index, layout.is_last(index), &mut chunk)?;
        out.write_all(&chunk).map_err(|e| io(tmp.display(), e))?;
    }
    out.flush().map_err(|e| io(tmp.display(), e))?;
    drop(out);
    std::fs::rename(&tmp, to).map_err(|e| io(to.display(), e))
}
