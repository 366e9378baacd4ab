//! The payload's metadata (header, manifest, metadata signature), verified before anything else.

use super::hashing::sha256;
use crate::error::Result;
use crate::payload::keys::TrustedKeys;
use crate::payload::properties::PayloadProperties;
use crate::payload::signature::{self, SignatureSet};
use crate::payload::{Manifest, PayloadHeader, HEADER_SIZE};
use crate::{bail, ErrorCode};

/// Verified metadata of one payload.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// The payload's fixed header.
    pub header: PayloadHeader,
    /// The parsed, validated manifest.
    pub manifest: Manifest,
    /// SHA-256 of header, manifest and metadata signature: identifies the payload for resuming.
    pub id: [u8; 32],
    /// The raw metadata bytes, needed to start the payload and file hashes.
    pub bytes: Vec<u8>,
}

impl Metadata {
    /// How many leading bytes [`Metadata::verify`] needs, from the header alone.
    pub fn needed(header_bytes: &[u8], payload_size: Option<u64>) -> Result<u64> {
        Ok(PayloadHeader::parse(header_bytes, payload_size)?.data_offset())
    }

    /// Parses and verifies the metadata: sizes and hashes asserted by the header pairs, the
    /// metadata signature, then the manifest's own consistency and, since the payload is
    /// signed, a hash for every blob and source read. With no key this fails (29) unless
    /// unsigned payloads were explicitly accepted, the one case where signatures and
    /// operation hashes are not required.
    pub fn verify(
        bytes: Vec<u8>,
        payload_size: Option<u64>,
        props: &PayloadProperties,
        keys: &TrustedKeys,
    ) -> Result<Self> {
        keys.require()?;
        let header = PayloadHeader::parse(&bytes, payload_size)?;
        if (bytes.len() as u64) < header.data_offset() {
            bail!(MalformedPayload, "payload ends inside its metadata");
        }
        let metadata_size = header.metadata_size() as usize;
        let signed = &bytes[..metadata_size];
        let sig_blob = &bytes[metadata_size..header.data_offset() as usize];

        if let Some(expected) = props.metadata_size {
            if expected != header.metadata_size() {
                bail!(
                    MetadataSignature,
                    "METADATA_SIZE={expected} but the payload's metadata is {} bytes",
                    header.metadata_size()
                );
            }
        }
        if let Some(expected) = props.metadata_hash {
            if sha256(signed) != expected {
                bail!(MetadataSignature, "metadata does not match METADATA_HASH");
            }
        }
        signature::check(
            keys,
            Some(sig_blob),
            "metadata",
            ErrorCode::MetadataSignature,
            |set: &SignatureSet| set.verifies_message(keys, signed),
        )?;

        let data_size = payload_size.map(|s| s - header.data_offset());
        let manifest = Manifest::parse(&signed[HEADER_SIZE..], data_size)?;
        if !keys.accepts_unsigned() {
            if manifest.signatures.is_none() {
                bail!(
                    PayloadSignature,
                    "payload has no signature blob, but a trusted key is configured"
                );
            }
            manifest.check_hashes()?;
        }
        let metadata = Metadata {
            header,
            manifest,
            id: sha256(&bytes),
            bytes,
        };
        // Signed or not, a payload of known size must end where its manifest says, so that
        // trailing data is refused before anything is written rather than after.
        if let Some(expected) = payload_size {
            let end = metadata.implied_size();
            if end != expected {
                let last = if metadata.manifest.signatures.is_some() {
                    "signature"
                } else {
                    "last blob"
                };
                bail!(
                    SizeMismatch,
                    "payload is {expected} bytes but its {last} ends at {end}"
                );
            }
        }
        Ok(metadata)
    }

    /// Payload size implied by the manifest: everything up to the end of the signature blob.
    pub fn implied_size(&self) -> u64 {
        let data_end = match self.manifest.signatures {
            Some((offset, len)) => offset + len,
            None => self.manifest.blobs_size,
        };
        self.header.data_offset() + data_end
    }
}
