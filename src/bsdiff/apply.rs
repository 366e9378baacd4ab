//! Applying a patch: the control loop of bspatch.
//!
//! Each control entry is `(diff_len, extra_len, seek)`: the next `diff_len` output bytes
//! are old bytes (from the old cursor) plus diff-stream bytes, wrapping; the next
//! `extra_len` output bytes are copied from the extra stream; then the old cursor moves by
//! `seek` (relative, may be negative). Entries are read only while the output is short of
//! the declared size, as AOSP does, so trailing entries are ignored; so is what follows in a
//! bzip2 or stored stream, while a brotli stream that was read must end with the output
//! (AOSP checks `BrotliDecoderIsFinished` when it closes the stream).

use super::header::{decode_offtin, PatchHeader};
use super::stream::Stream;
use crate::error::Result;

/// Output is produced, and memory committed, at most this much at a time, so a patch
/// that promises more data than its streams hold fails before allocating it.
const CHUNK: usize = 1 << 20;

/// The output buffer is reserved up front only up to this size; it grows as data arrives.
const RESERVE_LIMIT: usize = 16 << 20;

/// Entries that produce no output (both lengths 0) are legitimate (qbsdiff emits one per
/// 256 KiB+ chunk to reset the old cursor) but cost time without output; a compressed
/// control stream could repeat them billions of times. This many are always allowed, plus
/// one per [`IDLE_ENTRY_EVERY`] bytes of output.
const IDLE_ENTRIES_BASE: u64 = 1024;
const IDLE_ENTRY_EVERY: u64 = 4096;

/// Applies `patch` (BSDIFF40 or BSDF2) to `old`, producing exactly `new_len` bytes.
///
/// Fails with MalformedPayload when the patch declares a size other than `new_len`, when any
/// length is negative or overruns its stream or the output, when a stream does not decode,
/// or when the old cursor is outside `0..=old.len()` at the start of an entry. That last
/// rule is AOSP's in effect (its bspatch fails on such a cursor); diff bytes that run past
/// the end of `old` are added to zero, as in AOSP and bsdiff 4.x. A brotli stream that was
/// read from must end exactly where the output does (AOSP's finished-decoder check).
///
/// Stricter than AOSP: at most `1024 + new_len / 4096` entries may produce no output.
/// More lenient: a `BSDF2` stream may be stored uncompressed (compressor byte 0).
pub fn apply(old: &[u8], patch: &[u8], new_len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    apply_into(old, patch, new_len, &mut out)?;
    Ok(out)
}

/// Like [`apply`], writing into `out` (cleared first, its capacity reused). On error `out`
/// is left empty.
pub fn apply_into(old: &[u8], patch: &[u8], new_len: usize, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let result = run(old, patch, new_len, out);
    if result.is_err() {
        out.clear();
    }
    result
}

/// One control entry, its lengths known to be non-negative.
struct ControlEntry {
    diff_len: u64,
    extra_len: u64,
    seek: i64,
}

impl ControlEntry {
    fn read(ctrl: &mut Stream<'_>) -> Result<Self> {
        let mut raw = [0u8; 24];
        ctrl.read_exact(&mut raw)?;
        let [d, e, s] = [0, 8, 16].map(|at| {
            let mut field = [0u8; 8];
            field.copy_from_slice(&raw[at..at + 8]);
            decode_offtin(field)
        });
        match (u64::try_from(d), u64::try_from(e)) {
            (Ok(diff_len), Ok(extra_len)) => Ok(ControlEntry {
                diff_len,
                extra_len,
                seek: s,
            }),
            _ => Err(crate::err!(
                MalformedPayload,
                "bsdiff: negative length in control entry ({d}, {e})"
            )),
        }
    }
}

fn run(old: &[u8], patch: &[u8], new_len: usize, out: &mut Vec<u8>) -> Result<()> {
    let header = PatchHeader::parse(patch)?;
    if header.new_size != new_len as u64 {
        crate::bail!(
            MalformedPayload,
            "bsdiff: patch makes {} bytes, the operation expects {new_len}",
            header.new_size
        );
    }
    let [ctrl, diff, extra] = header.streams(patch)?;
    let [c_ctrl, c_diff, c_extra] = header.compressors;
    let mut ctrl = Stream::new("control", c_ctrl, ctrl);
    let mut diff = Stream::new("diff", c_diff, diff);
    let mut extra = Stream::new("extra", c_extra, extra);

    out.reserve(new_len.min(RESERVE_LIMIT));
    let mut idle_left = IDLE_ENTRIES_BASE.saturating_add(new_len as u64 / IDLE_ENTRY_EVERY);
    // The old cursor is signed: a seek may move it anywhere, it is checked when used.
    let mut old_pos: i64 = 0;
    while out.len() < new_len {
        let entry = ControlEntry::read(&mut ctrl)?;
        if entry.diff_len == 0 && entry.extra_len == 0 {
            idle_left = idle_left.checked_sub(1).ok_or_else(|| {
                crate::err!(
                    MalformedPayload,
                    "bsdiff: too many control entries that produce no output"
                )
            })?;
        }

        let old_start = usize::try_from(old_pos)
            .ok()
            .filter(|&p| p <= old.len())
            .ok_or_else(|| {
                crate::err!(
                    MalformedPayload,
                    "bsdiff: old offset {old_pos} outside the {}-byte source",
                    old.len()
                )
            })?;
        let diff_len = take_output(out.len(), new_len, entry.diff_len, "diff")?;
        add_diff(
            &mut diff,
            old.get(old_start..).unwrap_or_default(),
            diff_len,
            out,
        )?;
        // diff_len <= new_len <= isize::MAX, so it fits in an i64.
        old_pos = old_pos
            .checked_add(diff_len as i64)
            .ok_or_else(|| crate::err!(MalformedPayload, "bsdiff: old offset overflows"))?;

        let extra_len = take_output(out.len(), new_len, entry.extra_len, "extra")?;
        copy_stream(&mut extra, extra_len, out)?;
        old_pos = old_pos
            .checked_add(entry.seek)
            .ok_or_else(|| crate::err!(MalformedPayload, "bsdiff: old offset overflows"))?;
    }
    ctrl.finish()?;
    diff.finish()?;
    extra.finish()
}

/// Checks that `len` more output bytes fit in `new_len`, given `done` already written.
fn take_output(done: usize, new_len: usize, len: u64, what: &str) -> Result<usize> {
    let room = new_len - done;
    match usize::try_from(len) {
        Ok(len) if len <= room => Ok(len),
        _ => Err(crate::err!(
            MalformedPayload,
            "bsdiff: {what} of {len} bytes at output offset {done} overruns the {new_len}-byte output"
        )),
    }
}

/// Appends `len` diff-stream bytes to `out`, adding `old` to them byte by byte (wrapping);
/// bytes past the end of `old` are taken as they are.
fn add_diff(
    diff: &mut Stream<'_>,
    mut old: &[u8],
    mut len: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    while len > 0 {
        let n = len.min(CHUNK);
        let start = out.len();
        out.resize(start + n, 0);
        let piece = &mut out[start..];
        diff.read_exact(piece)?;
        let (here, rest) = old.split_at(n.min(old.len()));
        for (byte, base) in piece.iter_mut().zip(here) {
            *byte = byte.wrapping_add(*base);
        }
        old = rest;
        len -= n;
    }
    Ok(())
}

/// Appends `len` bytes of `stream` to `out`.
fn copy_stream(stream: &mut Stream<'_>, mut len: usize, out: &mut Vec<u8>) -> Result<()> {
    while len > 0 {
        let n = len.min(CHUNK);
        let start = out.len();
        out.resize(start + n, 0);
        stream.read_exact(&mut out[start..])?;
        len -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bsdiff::header::encode_offtin;
    use crate::ErrorCode;

    /// A BSDF2 patch with stored (uncompressed) streams, so each test states its bytes.
    fn stored_patch(
        entries: &[(i64, i64, i64)],
        diff: &[u8],
        extra: &[u8],
        new_size: i64,
    ) -> Vec<u8> {
        let ctrl: Vec<u8> = entries
            .iter()
            .flat_map(|&(d, e, s)| [d, e, s])
            .flat_map(encode_offtin)
            .collect();
        let mut p = b"BSDF2\0\0\0".to_vec();
        for v in [ctrl.len() as i64, diff.len() as i64, new_size] {
            p.extend_from_slice(&encode_offtin(v));
        }
        p.extend_from_slice(&ctrl);
        p.extend_from_slice(diff);
        p.extend_from_slice(extra);
        p
    }

    fn malformed(old: &[u8], patch: &[u8], new_len: usize) -> String {
        let err = apply(old, patch, new_len).unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedPayload, "{err}");
        err.message
    }

    #[test]
    fn applies_diff_extra_and_seeks() {
        let old = b"abcdefghij";
        // "abc"+1 each -> "bcd"; extra "XY"; seek +2 lands on 'f' (3+2=5); "fg"+0; extra "!";
        // seek -7 lands on 'a' (7-7=0); "a"+0.
        let patch = stored_patch(
            &[(3, 2, 2), (2, 1, -7), (1, 0, 0)],
            &[1, 1, 1, 0, 0, 0],
            b"XY!",
            9,
        );
        assert_eq!(apply(old, &patch, 9).unwrap(), b"bcdXYfg!a");
    }

    #[test]
    fn diff_past_old_end_adds_to_zero() {
        // Cursor at 2 of 3 bytes, 3 diff bytes: one from old, two raw.
        let patch = stored_patch(&[(0, 0, 2), (3, 0, 0)], &[1, 7, 8], b"", 3);
        assert_eq!(apply(b"xyz", &patch, 3).unwrap(), [b'z' + 1, 7, 8]);
        // Cursor exactly at the end is allowed.
        let patch = stored_patch(&[(0, 0, 3), (2, 0, 0)], &[5, 6], b"", 2);
        assert_eq!(apply(b"xyz", &patch, 2).unwrap(), [5, 6]);
    }

    #[test]
    fn wraps_on_add() {
        let patch = stored_patch(&[(2, 0, 0)], &[0x01, 0xff], b"", 2);
        assert_eq!(apply(&[0xff, 0x02], &patch, 2).unwrap(), [0x00, 0x01]);
    }

    #[test]
    fn ignores_what_follows_the_output() {
        // A trailing entry with an impossible seek, extra bytes never read.
        let patch = stored_patch(&[(0, 2, 0), (0, 0, -100)], b"", b"hi and more", 2);
        assert_eq!(apply(b"", &patch, 2).unwrap(), b"hi");
        // Empty output reads no entry at all.
        let patch = stored_patch(&[(-1, -1, -1)], b"", b"", 0);
        assert_eq!(apply(b"old", &patch, 0).unwrap(), b"");
    }

    #[test]
    fn rejects_hostile_control() {
        type Case = (
            &'static [(i64, i64, i64)],
            &'static [u8],
            &'static [u8],
            usize,
            &'static str,
        );
        let old = b"0123456789";
        // (entries, diff, extra, new_len, message part); the patch declares new_len.
        #[rustfmt::skip]
        let cases: [Case; 11] = [
            (&[(-1, 1, 0)], b"", b"a", 1, "negative length in control entry"),
            (&[(0, -1, 0)], b"", b"a", 1, "negative length in control entry"),
            (&[(2, 0, 0)], b"ab", b"", 1, "diff of 2 bytes at output offset 0 overruns"),
            (&[(0, 1, 0), (0, 2, 0)], b"", b"abc", 2, "extra of 2 bytes at output offset 1"),
            (&[(i64::MAX, 0, 0)], b"", b"", 1, "overruns the 1-byte output"),
            (&[(3, 0, 0)], b"ab", b"", 3, "diff stream ends early"),
            (&[(0, 3, 0)], b"", b"ab", 3, "extra stream ends early"),
            (&[(0, 1, 0)], b"", b"ab", 2, "control stream ends early"),
            (&[(0, 0, -1), (1, 0, 0)], b"a", b"", 1, "old offset -1 outside"),
            (&[(0, 0, 11), (1, 0, 0)], b"a", b"", 1, "old offset 11 outside"),
            (&[(1, 0, i64::MAX), (1, 0, 0)], b"ab", b"", 2, "old offset overflows"),
        ];
        for (entries, diff, extra, new_len, want) in cases {
            let patch = stored_patch(entries, diff, extra, new_len as i64);
            let msg = malformed(old, &patch, new_len);
            assert!(msg.contains(want), "{entries:?}: {msg}");
        }
        let patch = stored_patch(&[(0, 1, 0)], b"", b"a", 1);
        assert!(malformed(old, &patch, 2).contains("patch makes 1 bytes, the operation expects 2"));
    }

    #[test]
    fn idle_entries_are_bounded() {
        let idle = vec![(0, 0, 0); 1024];
        let mut entries = idle.clone();
        entries.push((0, 1, 0));
        assert_eq!(
            apply(b"", &stored_patch(&entries, b"", b"z", 1), 1).unwrap(),
            b"z"
        );
        let mut entries = idle;
        entries.push((0, 0, 0));
        entries.push((0, 1, 0));
        let msg = malformed(b"", &stored_patch(&entries, b"", b"z", 1), 1);
        assert!(msg.contains("no output"), "{msg}");
    }

    #[test]
    fn error_leaves_buffer_empty_and_success_reuses_it() {
        let mut out = b"stale".to_vec();
        let good = stored_patch(&[(0, 3, 0)], b"", b"new", 3);
        apply_into(b"", &good, 3, &mut out).unwrap();
        assert_eq!(out, b"new");
        let bad = stored_patch(&[(0, 2, 0), (0, 2, 0)], b"", b"ne", 4);
        assert!(apply_into(b"", &bad, 4, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn large_output_crosses_chunks() {
        let len = CHUNK * 2 + 123;
        let old: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let diff = vec![1u8; len];
        let patch = stored_patch(&[(len as i64, 0, 0)], &diff, b"", len as i64);
        let new = apply(&old, &patch, len).unwrap();
        assert!(new.iter().zip(&old).all(|(n, o)| *n == o.wrapping_add(1)));
    }
}
