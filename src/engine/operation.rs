//! Executing one install operation: blob (and source data) in, destination bytes out. Pure: the
//! caller reads the blob and the source extents and writes the result.

use super::buffers::BufferPool;
use super::hashing::sha256;
use crate::decompress::Codec;
use crate::error::Result;
use crate::payload::{OpKind, Operation};
use crate::{bail, err};

/// What an operation produces for its destination extents, in order.
pub enum Output {
    /// The bytes to write.
    Data(Vec<u8>),
    /// ZERO and DISCARD: the extents read back as zeros.
    Zeros,
}

/// An operation's blob that matched its `data_sha256_hash` (or whose operation has none).
pub struct CheckedBlob(Vec<u8>);

impl CheckedBlob {
    /// Hashes `blob` and checks it.
    pub fn hash(op: &Operation, blob: Vec<u8>) -> Result<Self> {
        match op.data_sha256 {
            Some(_) => {
                let digest = sha256(&blob);
                Self::with_digest(op, blob, &digest)
            }
            None => Ok(CheckedBlob(blob)),
        }
    }

    /// Checks `blob` by `digest`, its SHA-256 computed by the caller (the pipeline's reader
    /// computes it together with the payload hashes).
    pub fn with_digest(op: &Operation, blob: Vec<u8>, digest: &[u8; 32]) -> Result<Self> {
        if op.data_sha256.is_some_and(|expected| &expected != digest) {
            bail!(
                PayloadHash,
                "{} blob does not match its data_sha256_hash",
                op.kind.name()
            );
        }
        Ok(CheckedBlob(blob))
    }
}

/// Checks the blob hash, then decodes. `source` holds the operation's source extents, read and
/// concatenated, for operations that read the source slot.
pub fn execute(op: &Operation, blob: Vec<u8>, source: Option<&[u8]>) -> Result<Output> {
    execute_checked(
        op,
        CheckedBlob::hash(op, blob)?,
        source,
        &BufferPool::new(0),
    )
}

/// [`execute`] for a blob already checked, decoding into a buffer from `pool` and giving the
/// consumed blob back to it.
pub(crate) fn execute_checked(
    op: &Operation,
    blob: CheckedBlob,
    source: Option<&[u8]>,
    pool: &BufferPool,
) -> Result<Output> {
    let CheckedBlob(blob) = blob;
    if let (Some(expected), Some(src)) = (&op.src_sha256, source) {
        if &sha256(src) != expected {
            bail!(
                SourceHash,
                "source data of {} does not match src_sha256_hash: the running slot is not this delta's base",
                op.kind.name()
            );
        }
    }
    let dst_len = usize::try_from(op.dst_bytes())
        .map_err(|_| err!(MalformedPayload, "operation too large"))?;
    let data = match op.kind {
        OpKind::Replace => return check_len(op, blob, dst_len),
        OpKind::ReplaceBz => decode(Codec::Bzip2, &blob, dst_len, pool.take(dst_len))?,
        OpKind::ReplaceXz => decode(
            Codec::Xz,
            &blob,
            dst_len,
            pool.take(dst_len.saturating_add(1)),
        )?,
        OpKind::Zstd => decode(Codec::Zstd, &blob, dst_len, pool.take(dst_len))?,
        OpKind::Zero | OpKind::Discard => return Ok(Output::Zeros),
        OpKind::SourceCopy => source.map(<[u8]>::to_vec).unwrap_or_default(),
        OpKind::SourceBsdiff | OpKind::BrotliBsdiff => {
            crate::bsdiff::apply(source.unwrap_or_default(), &blob, dst_len)?
        }
        // Memory: the source and destination (at most 150 MiB), and the two puffed streams
        // as far as they are really produced (see `puffin::Limits`).
        OpKind::Puffdiff => crate::puffin::apply(
            source.unwrap_or_default(),
            &blob,
            dst_len,
            crate::puffin::Limits::DEFAULT,
        )?,
        // Memory: the source, the destination and the decompressed patch (capped by the
        // destination's size, see `zucchini::apply_op`).
        OpKind::Zucchini => crate::zucchini::apply_op(source.unwrap_or_default(), &blob, dst_len)?,
        // Memory: the source, both decompressed files (at most 512 MiB each, see
        // `lz4diff::Limits`) and the destination.
        OpKind::Lz4diffBsdiff | OpKind::Lz4diffPuffdiff => crate::lz4diff::apply(
            source.unwrap_or_default(),
            &blob,
            dst_len,
            crate::lz4diff::Limits::DEFAULT,
        )?,
        other => bail!(Unsupported, "unsupported operation {}", other.name()),
    };
    pool.give(blob);
    check_len(op, data, dst_len)
}

/// Decodes a whole blob with this build's decompressors ([`crate::decompress`]).
fn decode(codec: Codec, blob: &[u8], dst_len: usize, out: Vec<u8>) -> Result<Vec<u8>> {
    use crate::decompress::{Decompressors, Default as Backend};
    Backend::decode(codec, blob, dst_len, out).map_err(|e| err!(MalformedPayload, "{e}"))
}

fn check_len(op: &Operation, data: Vec<u8>, dst_len: usize) -> Result<Output> {
    if data.len() != dst_len {
        bail!(
            MalformedPayload,
            "{} produced {} bytes for a {dst_len}-byte destination",
            op.kind.name(),
            data.len()
        );
    }
    Ok(Output::Data(data))
}

// The tests compress with the host crates, which AOSP lacks.
#[cfg(all(test, not(soong)))]
mod tests {
    use super::*;
    use crate::payload::Extent;
    use crate::ErrorCode;
    use std::io::Write;

    fn op(kind: OpKind, blocks: u64, blob: &[u8]) -> Operation {
        Operation {
            kind,
            data_offset: 0,
            data_length: blob.len() as u64,
            data_sha256: Some(sha256(blob)),
            src_extents: vec![],
            src_sha256: None,
            dst_extents: vec![Extent {
                start_block: 0,
                num_blocks: blocks,
            }],
        }
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn data(result: Result<Output>) -> Vec<u8> {
        match result.unwrap() {
            Output::Data(d) => d,
            Output::Zeros => panic!("expected data"),
        }
    }

    #[test]
    fn decompresses_each_format() {
        let plain: Vec<u8> = (0..8192u32).map(|i| (i / 3) as u8).collect();
        let blob = xz(&plain);
        assert_eq!(
            data(execute(
                &op(OpKind::ReplaceXz, 2, &blob),
                blob.clone(),
                None
            )),
            plain
        );
        let blob = zstd::encode_all(&plain[..], 3).unwrap();
        assert_eq!(
            data(execute(&op(OpKind::Zstd, 2, &blob), blob.clone(), None)),
            plain
        );
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        enc.write_all(&plain).unwrap();
        let blob = enc.finish().unwrap();
        assert_eq!(
            data(execute(
                &op(OpKind::ReplaceBz, 2, &blob),
                blob.clone(),
                None
            )),
            plain
        );
    }

    #[test]
    fn refuses_bombs_and_short_output() {
        let big = vec![0u8; 1 << 20];
        let blob = xz(&big);
        let err = execute(&op(OpKind::ReplaceXz, 2, &blob), blob, None)
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::MalformedPayload);
        assert!(err.message.contains("more than"), "{}", err.message);
        let blob = xz(&big[..4096]);
        let err = execute(&op(OpKind::ReplaceXz, 2, &blob), blob, None)
            .err()
            .unwrap();
        assert!(
            err.message.contains("decompresses to 4096"),
            "{}",
            err.message
        );
    }

    #[test]
    fn checks_hashes() {
        let blob = vec![1u8; 4096];
        let mut o = op(OpKind::Replace, 1, &blob);
        o.data_sha256 = Some([0; 32]);
        assert_eq!(
            execute(&o, blob.clone(), None).err().unwrap().code,
            ErrorCode::PayloadHash
        );
        // The pipeline's reader hands in the digest it computed alongside the payload hashes.
        let digest = sha256(&blob);
        let err = CheckedBlob::with_digest(&o, blob.clone(), &digest)
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::PayloadHash);
        o.data_sha256 = Some(digest);
        assert!(CheckedBlob::with_digest(&o, blob, &digest).is_ok());

        let src = vec![2u8; 4096];
        let mut copy = op(OpKind::SourceCopy, 1, &[]);
        copy.data_sha256 = None;
        copy.src_sha256 = Some(sha256(&[3u8; 4096]));
        assert_eq!(
            execute(&copy, vec![], Some(&src)).err().unwrap().code,
            ErrorCode::SourceHash
        );
        copy.src_sha256 = Some(sha256(&src));
        assert_eq!(data(execute(&copy, vec![], Some(&src))), src);
    }
}
