//! Making patches for the payload builder.
//!
//! `qbsdiff` (suffix-array bsdiff 4.x, parallel) finds the matches and writes a BSDIFF40
//! patch; its public API offers no raw control entries, so [`make_bsdf2`] unpacks its three
//! bzip2 streams and compresses each with brotli instead. That is what AOSP's
//! `delta_generator` writes for BROTLI_BSDIFF: `CreateBSDF2PatchWriter(kBrotli, quality 11)`,
//! brotli for all three streams with a 2^20-byte window (`brotli_compressor.cc`); the sample
//! delta payload in testdata has compressor bytes `02 02 02`.

use std::io::Read;

use bzip2::read::BzDecoder;

use super::header::{decode_offtin, Compressor, Format, PatchHeader};
use crate::error::{Error, ErrorCode, Result};

/// Brotli quality AOSP uses for BSDF2 streams (`kBrotliCompressionQuality`).
pub const BROTLI_QUALITY: u32 = 11;
/// Brotli window AOSP uses for BSDF2 streams (`kBrotliLgwin`).
pub const BROTLI_LGWIN: u32 = 20;

/// bzip2 level of the intermediate qbsdiff patch that is unpacked again right away.
const INTERMEDIATE_BZ2_LEVEL: u32 = 1;

/// A BSDIFF40 patch (three bzip2 streams, level 9 as bsdiff 4.x writes them).
pub fn make_bsdiff40(old: &[u8], new: &[u8]) -> Result<Vec<u8>> {
    search(old, new, 9)
}

/// A BSDF2 patch with three brotli streams, as AOSP writes for BROTLI_BSDIFF.
pub fn make_bsdf2(old: &[u8], new: &[u8]) -> Result<Vec<u8>> {
    make_bsdf2_with_quality(old, new, BROTLI_QUALITY)
}

/// Like [`make_bsdf2`] with brotli quality `quality` (0-11; quality 11 costs about 1 s per
/// MB of patch streams, lower values trade patch size for time).
pub fn make_bsdf2_with_quality(old: &[u8], new: &[u8], quality: u32) -> Result<Vec<u8>> {
    let classic = search(old, new, INTERMEDIATE_BZ2_LEVEL)?;
    let header = PatchHeader::parse(&classic)?;
    let [ctrl, diff, extra] = header.streams(&classic)?;
    // qbsdiff's diff and extra streams together hold exactly `new.len()` bytes.
    let ctrl = unpack_bz2(ctrl, u64::MAX)?;
    let diff = unpack_bz2(diff, new.len() as u64)?;
    let extra = unpack_bz2(extra, new.len() as u64)?;

    let ctrl = trim_control(&ctrl, new.len() as u64)?.to_vec();

    let packed = [ctrl, diff, extra].map(|stream| pack_brotli(&stream, quality));
    let [ctrl, diff, extra] = packed;
    let (ctrl, diff, extra) = (ctrl?, diff?, extra?);
    let out_header = PatchHeader {
        format: Format::Bsdf2,
        compressors: [Compressor::Brotli; 3],
        ctrl_len: ctrl.len(),
        diff_len: diff.len(),
        new_size: new.len() as u64,
    };
    let mut out = Vec::with_capacity(super::HEADER_LEN + ctrl.len() + diff.len() + extra.len());
    out.extend_from_slice(&out_header.to_bytes());
    out.extend_from_slice(&ctrl);
    out.extend_from_slice(&diff);
    out.extend_from_slice(&extra);
    Ok(out)
}

fn search(old: &[u8], new: &[u8], bz2_level: u32) -> Result<Vec<u8>> {
    // qbsdiff panics on a source it cannot index.
    if old.len() > qbsdiff::bsdiff::MAX_LENGTH {
        crate::bail!(
            Unsupported,
            "bsdiff: source of {} bytes is too large to diff",
            old.len()
        );
    }
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(old, new)
        .compression_level(bz2_level)
        .compare(std::io::Cursor::new(&mut patch))
        .map_err(|e| {
            Error::new(
                ErrorCode::InstallFailed,
                format!("bsdiff: qbsdiff failed: {e}"),
            )
        })?;
    Ok(patch)
}

/// The control entries up to the one that completes the output. AOSP's bspatch reads no
/// further and then requires a brotli stream to be finished, so the entries qbsdiff appends
/// to reset the old cursor after its last parallel chunk would fail the patch there.
fn trim_control(ctrl: &[u8], new_len: u64) -> Result<&[u8]> {
    let mut produced = 0u64;
    let mut end = 0;
    while produced < new_len {
        let entry = ctrl.get(end..end + 24).ok_or_else(|| {
            crate::err!(
                MalformedPayload,
                "bsdiff: qbsdiff's control entries end before the output"
            )
        })?;
        for at in [0, 8] {
            let mut field = [0u8; 8];
            field.copy_from_slice(&entry[at..at + 8]);
            produced = produced.saturating_add(decode_offtin(field).unsigned_abs());
        }
        end += 24;
    }
    Ok(&ctrl[..end])
}

fn unpack_bz2(stream: &[u8], limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    BzDecoder::new(stream)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| {
            crate::err!(
                MalformedPayload,
                "bsdiff: qbsdiff wrote an unreadable stream: {e}"
            )
        })?;
    if out.len() as u64 > limit {
        crate::bail!(
            MalformedPayload,
            "bsdiff: qbsdiff wrote a stream longer than the new data"
        );
    }
    Ok(out)
}

fn pack_brotli(data: &[u8], quality: u32) -> Result<Vec<u8>> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: quality.min(11) as i32,
        lgwin: BROTLI_LGWIN as i32,
        size_hint: data.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).map_err(|e| {
        Error::new(
            ErrorCode::InstallFailed,
            format!("bsdiff: brotli failed: {e}"),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bsdiff::apply;

    #[test]
    fn bsdf2_uses_brotli_everywhere_and_round_trips() {
        let old: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let mut new = old.clone();
        new[1000..1100].fill(7);
        new.splice(20_000..20_000, b"inserted bytes".iter().copied());
        let patch = make_bsdf2(&old, &new).unwrap();
        assert_eq!(&patch[..8], b"BSDF2\x02\x02\x02");
        assert!(patch.len() < 2000, "patch of {} bytes", patch.len());
        assert_eq!(apply(&old, &patch, new.len()).unwrap(), new);
    }

    #[test]
    fn bsdf2_control_stream_ends_with_the_output() {
        // Past 512 KiB qbsdiff searches in parallel chunks and appends a cursor reset to each;
        // the last one must go, or AOSP's finished-stream check (and ours) fails the patch.
        let old: Vec<u8> = (0..700_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut new = old.clone();
        new[650_000..650_100].fill(1);
        let patch = make_bsdf2_with_quality(&old, &new, 5).unwrap();
        assert_eq!(apply(&old, &patch, new.len()).unwrap(), new);
        let empty = make_bsdf2(&old, b"").unwrap();
        assert_eq!(PatchHeader::parse(&empty).unwrap().new_size, 0);
        assert_eq!(apply(&old, &empty, 0).unwrap(), b"");
    }

    #[test]
    fn bsdiff40_round_trips() {
        let old = b"the quick brown fox jumps over the lazy dog".repeat(50);
        let new = b"the quick brown cat jumps over the lazy dog!".repeat(50);
        let patch = make_bsdiff40(&old, &new).unwrap();
        assert_eq!(&patch[..8], b"BSDIFF40");
        assert_eq!(apply(&old, &patch, new.len()).unwrap(), new);
    }
}
