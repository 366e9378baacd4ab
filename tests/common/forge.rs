//! Taking payloads apart and putting them back together, to forge hostile ones: change the
//! manifest, the blobs or the signatures of a valid payload, then re-assemble it with a header
//! that matches (and, where a case needs it, signatures that verify over the hostile content).

use std::path::Path;

use abupdate::build::merge_ops::merge_operations;
use abupdate::payload::proto::update_metadata::cow_merge_operation::Type as MergeType;
use abupdate::payload::proto::update_metadata::{
    CowMergeOperation, DeltaArchiveManifest, InstallOperation,
};
use abupdate::payload::signature::{encode_signatures, Signer};
use abupdate::payload::PayloadHeader;
use base64::Engine as _;
use protobuf::Message;
use sha2::{Digest, Sha256};

/// A payload's five parts, as raw bytes.
#[derive(Clone, Debug)]
pub struct Forge {
    pub major_version: u64,
    pub manifest: Vec<u8>,
    pub metadata_signature: Vec<u8>,
    /// The data section before the payload signature: every operation's blob.
    pub blobs: Vec<u8>,
    pub payload_signature: Vec<u8>,
    /// Whatever follows the payload signature (nothing, in a valid payload).
    pub trailer: Vec<u8>,
}

impl Forge {
    /// Adds `merge_operations` to every partition the way delta_generator derives them for
    /// Virtual A/B ([`merge_operations`]); the number of COW_XOR ops. The payload needs signing again.
    pub fn add_merge_operations(&mut self) -> usize {
        let mut xor = 0;
        self.edit(|m| {
            for p in &mut m.partitions {
                let ops: Vec<CowMergeOperation> =
                    p.operations.iter().flat_map(merge_operations).collect();
                xor += ops
                    .iter()
                    .filter(|o| o.type_() == MergeType::COW_XOR)
                    .count();
                p.merge_operations = ops;
            }
        });
        xor
    }

    /// Splits a valid payload into its parts.
    pub fn parse(bytes: &[u8]) -> Forge {
        let header = PayloadHeader::parse(bytes, Some(bytes.len() as u64)).expect("valid header");
        let metadata_size = header.metadata_size() as usize;
        let data_offset = header.data_offset() as usize;
        let manifest = bytes[24..metadata_size].to_vec();
        let m = DeltaArchiveManifest::parse_from_bytes(&manifest).expect("valid manifest");
        let data = &bytes[data_offset..];
        let (sig_offset, sig_size) = if m.has_signatures_offset() {
            (m.signatures_offset() as usize, m.signatures_size() as usize)
        } else {
            (data.len(), 0)
        };
        Forge {
            major_version: header.major_version,
            manifest,
            metadata_signature: bytes[metadata_size..data_offset].to_vec(),
            blobs: data[..sig_offset].to_vec(),
            payload_signature: data[sig_offset..sig_offset + sig_size].to_vec(),
            trailer: data[sig_offset + sig_size..].to_vec(),
        }
    }

    pub fn read(path: &Path) -> Forge {
        Forge::parse(&std::fs::read(path).unwrap())
    }

    pub fn manifest(&self) -> DeltaArchiveManifest {
        DeltaArchiveManifest::parse_from_bytes(&self.manifest).expect("manifest decodes")
    }

    /// Encodes `m`, even when a required field is missing (`write_to_bytes` would refuse).
    pub fn set_manifest(&mut self, m: &DeltaArchiveManifest) {
        m.compute_size();
        let mut out = Vec::new();
        let mut os = protobuf::CodedOutputStream::vec(&mut out);
        m.write_to_with_cached_sizes(&mut os).unwrap();
        os.flush().unwrap();
        drop(os);
        self.manifest = out;
    }

    /// Decodes the manifest, lets `f` change it, and encodes it again.
    pub fn edit(&mut self, f: impl FnOnce(&mut DeltaArchiveManifest)) -> &mut Self {
        let mut m = self.manifest();
        f(&mut m);
        self.set_manifest(&m);
        self
    }

    /// The header these parts call for: sizes taken from the parts themselves.
    pub fn header(&self) -> [u8; 24] {
        PayloadHeader {
            major_version: self.major_version,
            manifest_size: self.manifest.len() as u64,
            metadata_signature_size: self.metadata_signature.len() as u32,
        }
        .encode()
    }

    /// Header plus manifest: what the metadata signature and `METADATA_HASH` cover.
    pub fn metadata(&self) -> Vec<u8> {
        let mut out = self.header().to_vec();
        out.extend_from_slice(&self.manifest);
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.metadata();
        out.extend_from_slice(&self.metadata_signature);
        out.extend_from_slice(&self.blobs);
        out.extend_from_slice(&self.payload_signature);
        out.extend_from_slice(&self.trailer);
        out
    }

    /// Lets `f` change every operation and its blob, in payload order (`f` gets the partition
    /// name, the operation's index in it, the operation and its blob), then lays the blobs out
    /// again contiguously with matching `data_offset`, `data_length` and `data_sha256_hash`.
    pub fn edit_ops(
        &mut self,
        mut f: impl FnMut(&str, usize, &mut InstallOperation, &mut Vec<u8>),
    ) -> &mut Self {
        let mut m = self.manifest();
        let mut blobs = Vec::new();
        for p in &mut m.partitions {
            let name = p.partition_name().to_owned();
            for (i, op) in p.operations.iter_mut().enumerate() {
                let (at, len) = (op.data_offset() as usize, op.data_length() as usize);
                let mut blob = if len > 0 {
                    self.blobs[at..at + len].to_vec()
                } else {
                    Vec::new()
                };
                f(&name, i, op, &mut blob);
                if blob.is_empty() {
                    op.clear_data_offset();
                    op.clear_data_length();
                    op.clear_data_sha256_hash();
                } else {
                    op.set_data_offset(blobs.len() as u64);
                    op.set_data_length(blob.len() as u64);
                    op.set_data_sha256_hash(sha256(&blob).to_vec());
                    blobs.extend_from_slice(&blob);
                }
            }
        }
        self.blobs = blobs;
        self.set_manifest(&m);
        self
    }

    /// Signs metadata and payload with `signer`: when the manifest decodes, its signature fields
    /// are first pointed right after the last blob the manifest names.
    pub fn sign(&mut self, signer: &Signer) -> &mut Self {
        let sig_len = encode_signatures(&[vec![0; signer.signature_len()]]).len();
        if let Ok(mut m) = DeltaArchiveManifest::parse_from_bytes(&self.manifest) {
            let end = m
                .partitions
                .iter()
                .flat_map(|p| &p.operations)
                .map(|op| op.data_offset() + op.data_length())
                .max()
                .unwrap_or(0);
            m.set_signatures_offset(end);
            m.set_signatures_size(sig_len as u64);
            self.set_manifest(&m);
        }
        self.sign_as_is(signer)
    }

    /// Signs metadata and payload with `signer`, the manifest left as it is.
    pub fn sign_as_is(&mut self, signer: &Signer) -> &mut Self {
        let sig_len = encode_signatures(&[vec![0; signer.signature_len()]]).len();
        self.metadata_signature = vec![0; sig_len];
        let metadata = self.metadata();
        self.metadata_signature = signature(signer, &metadata);
        let mut payload = metadata;
        payload.extend_from_slice(&self.blobs);
        self.payload_signature = signature(signer, &payload);
        self
    }

    /// Drops both signatures (and the manifest's signature fields).
    pub fn unsign(&mut self) -> &mut Self {
        self.edit(|m| {
            m.clear_signatures_offset();
            m.clear_signatures_size();
        });
        self.metadata_signature.clear();
        self.payload_signature.clear();
        self
    }
}

/// The `payload_properties.txt` pairs for these payload bytes.
pub fn properties(bytes: &[u8]) -> Vec<String> {
    let header = PayloadHeader::parse(bytes, None).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let metadata = &bytes[..header.metadata_size() as usize];
    vec![
        format!("FILE_HASH={}", b64.encode(sha256(bytes))),
        format!("FILE_SIZE={}", bytes.len()),
        format!("METADATA_HASH={}", b64.encode(sha256(metadata))),
        format!("METADATA_SIZE={}", metadata.len()),
    ]
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A `Signatures` message holding `signer`'s signature of `data`.
pub fn signature(signer: &Signer, data: &[u8]) -> Vec<u8> {
    encode_signatures(&[signer.sign_digest(&sha256(data)).unwrap()])
}

/// The test signing keys checked into `tests/data/payload/` (made with `openssl genpkey`).
pub fn test_key(which: char) -> (Signer, std::path::PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/payload");
    let pem = std::fs::read_to_string(dir.join(format!("testkey_{which}.pem"))).unwrap();
    (
        Signer::from_pem(&pem).unwrap(),
        dir.join(format!("testkey_{which}.pub.pem")),
    )
}
