//! Executing one install operation: blob (and source data) in, destination bytes out. Pure: the
//! caller reads the blob and the source extents and writes the result.

use std::io::Read;

use super::buffers::BufferPool;
use super::hashing::sha256;
use crate::error::Result;
use crate::payload::{OpKind, Operation};
use crate::{bail, err};

/// What an operation produces for its destination extents, in order.
pub enum Output {
    Data(Vec<u8>),
    /// ZERO and DISCARD: the extents read back as zeros.
    Zeros,
}

/// Largest XZ dictionary we accept: AOSP uses 2 MiB, `xz -9` 64 MiB. This bounds the decoder's
/// memory whatever a hostile blob's header asks for.
const XZ_MEMLIMIT: u64 = 80 << 20;
/// Same bound for zstd: window log 27 = 128 MiB is zstd's own default maximum for decoding.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

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
        OpKind::ReplaceBz => decode(
            bzip2::read::BzDecoder::new(&blob[..]),
            dst_len,
            "bzip2",
            pool.take(dst_len),
        )?,
        OpKind::ReplaceXz => decode_xz(&blob, dst_len, pool.take(dst_len.saturating_add(1)))?,
        OpKind::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(&blob[..])
                .map_err(|e| err!(InstallFailed, "zstd decoder: {e}"))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| err!(InstallFailed, "zstd decoder: {e}"))?;
            decode(decoder, dst_len, "zstd", pool.take(dst_len))?
        }
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
        other => bail!(Unsupported, "unsupported operation {}", other.name()),
    };
    pool.give(blob);
    check_len(op, data, dst_len)
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

/// Decodes an XZ blob straight into the spare capacity of `out`: no zeroing pass and no copy
/// through an intermediate reader buffer. Room for one byte more than the destination is what
/// tells a stream that is too long (a bomb, or the wrong payload) from one that fits; decoding
/// stops when the room is full, so a bomb costs no more memory than an honest blob.
fn decode_xz(blob: &[u8], dst_len: usize, mut out: Vec<u8>) -> Result<Vec<u8>> {
    use liblzma::stream::{Action, Status, Stream};
    let corrupt = |e: &dyn std::fmt::Display| err!(MalformedPayload, "xz blob is corrupt: {e}");
    let mut stream = Stream::new_stream_decoder(XZ_MEMLIMIT, 0)
        .map_err(|e| err!(InstallFailed, "xz decoder: {e}"))?;
    out.clear();
    out.reserve_exact(dst_len.saturating_add(1));
    loop {
        let consumed = usize::try_from(stream.total_in()).unwrap_or(usize::MAX);
        let input = blob.get(consumed..).unwrap_or_default();
        let before = (stream.total_in(), out.len());
        let status = stream
            .process_vec(input, &mut out, Action::Finish)
            .map_err(|e| corrupt(&e))?;
        if out.len() > dst_len {
            bail!(
                MalformedPayload,
                "xz blob decompresses to more than its {dst_len}-byte destination"
            );
        }
        match status {
            Status::StreamEnd => break,
            _ if before == (stream.total_in(), out.len()) => return Err(corrupt(&"truncated")),
            _ => {}
        }
    }
    if out.len() != dst_len {
        bail!(
            MalformedPayload,
            "xz blob decompresses to {} bytes, destination is {dst_len}",
            out.len()
        );
    }
    Ok(out)
}

/// Decompresses exactly `dst_len` bytes into `out`. A stream that would produce more is a
/// decompression bomb (or a wrong payload) and is refused after reading one byte too many, not
/// after allocating whatever it claims.
fn decode(mut reader: impl Read, dst_len: usize, what: &str, mut out: Vec<u8>) -> Result<Vec<u8>> {
    // Every byte is overwritten below (or the blob refused): no need to zero what a reused
    // buffer already holds.
    out.resize(dst_len, 0);
    let mut filled = 0;
    while filled < dst_len {
        match reader.read(&mut out[filled..]) {
            Ok(0) => bail!(
                MalformedPayload,
                "{what} blob decompresses to {filled} bytes, destination is {dst_len}"
            ),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => bail!(MalformedPayload, "{what} blob is corrupt: {e}"),
        }
    }
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(out),
        Ok(_) => bail!(
            MalformedPayload,
            "{what} blob decompresses to more than its {dst_len}-byte destination"
        ),
        Err(e) => bail!(MalformedPayload, "{what} blob is corrupt: {e}"),
    }
}

#[cfg(test)]
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
