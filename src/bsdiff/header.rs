//! The 32-byte patch header and bsdiff's sign-magnitude integers.
//!
//! Layout (AOSP `external/bsdiff/patch_reader.cc`):
//! `magic[8]` · `ctrl_len` · `diff_len` · `new_size`, each integer 8 bytes; then `ctrl_len`
//! bytes of control stream, `diff_len` bytes of diff stream, and the extra stream up to the end.
//! The magic is `BSDIFF40` (all streams bzip2) or `BSDF2` followed by one compressor byte per
//! stream.

use crate::error::Result;

/// Size of the fixed header that starts every patch.
pub const HEADER_LEN: usize = 32;

const MAGIC_BSDIFF40: &[u8; 8] = b"BSDIFF40";
const MAGIC_BSDF2: &[u8; 5] = b"BSDF2";

/// Which container a patch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// bsdiff 4.x: `BSDIFF40`, three bzip2 streams.
    Bsdiff40,
    /// AOSP's `BSDF2`: a compressor per stream.
    Bsdf2,
}

/// How one of the three streams is compressed (the byte values of the `BSDF2` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compressor {
    /// Stored as is. AOSP defines this value (`kNoCompression`) but its patch reader refuses
    /// it; abupdate accepts it, which costs nothing and keeps fuzzing seeds readable.
    None = 0,
    /// bzip2 (`kBZ2`).
    Bz2 = 1,
    /// brotli (`kBrotli`).
    Brotli = 2,
}

impl Compressor {
    fn from_byte(byte: u8) -> Result<Self> {
        match byte {
            0 => Ok(Self::None),
            1 => Ok(Self::Bz2),
            2 => Ok(Self::Brotli),
            other => Err(crate::err!(
                MalformedPayload,
                "bsdiff: unknown stream compressor {other}"
            )),
        }
    }
}

/// A parsed patch header; every length in it is known to fit inside the patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchHeader {
    /// Which container the patch uses.
    pub format: Format,
    /// Compressors of the control, diff and extra streams, in that order.
    pub compressors: [Compressor; 3],
    /// Compressed length of the control stream.
    pub ctrl_len: usize,
    /// Compressed length of the diff stream.
    pub diff_len: usize,
    /// Size of the output the patch declares.
    pub new_size: u64,
}

impl PatchHeader {
    /// Parses the header at the start of `patch`, checking the stream lengths against the
    /// patch size (the extra stream takes whatever follows the diff stream).
    pub fn parse(patch: &[u8]) -> Result<Self> {
        let Some(header) = patch.first_chunk::<HEADER_LEN>() else {
            crate::bail!(
                MalformedPayload,
                "bsdiff: patch of {} bytes is shorter than its header",
                patch.len()
            );
        };
        let (format, compressors) = if header.starts_with(MAGIC_BSDIFF40) {
            (Format::Bsdiff40, [Compressor::Bz2; 3])
        } else if header.starts_with(MAGIC_BSDF2) {
            let types = [header[5], header[6], header[7]];
            (
                Format::Bsdf2,
                [
                    Compressor::from_byte(types[0])?,
                    Compressor::from_byte(types[1])?,
                    Compressor::from_byte(types[2])?,
                ],
            )
        } else {
            crate::bail!(
                MalformedPayload,
                "bsdiff: unknown patch magic {:02x?}",
                &header[..8]
            );
        };

        let ctrl_len = decode_offtin(field(header, 8));
        let diff_len = decode_offtin(field(header, 16));
        let new_size = decode_offtin(field(header, 24));
        let body = (patch.len() - HEADER_LEN) as u64;
        let (Ok(ctrl), Ok(diff), Ok(new_size)) = (
            u64::try_from(ctrl_len),
            u64::try_from(diff_len),
            u64::try_from(new_size),
        ) else {
            crate::bail!(
                MalformedPayload,
                "bsdiff: negative length in header ({ctrl_len}, {diff_len}, {new_size})"
            );
        };
        if ctrl > body || diff > body - ctrl {
            crate::bail!(
                MalformedPayload,
                "bsdiff: control ({ctrl}) and diff ({diff}) streams overrun the {body} bytes after the header"
            );
        }
        // Both fit in `body`, which came from a usize.
        Ok(PatchHeader {
            format,
            compressors,
            ctrl_len: ctrl as usize,
            diff_len: diff as usize,
            new_size,
        })
    }

    /// The header's 32 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        match self.format {
            Format::Bsdiff40 => out[..8].copy_from_slice(MAGIC_BSDIFF40),
            Format::Bsdf2 => {
                out[..5].copy_from_slice(MAGIC_BSDF2);
                for (slot, compressor) in out[5..8].iter_mut().zip(self.compressors) {
                    *slot = compressor as u8;
                }
            }
        }
        out[8..16].copy_from_slice(&encode_offtin(saturating_i64(self.ctrl_len as u64)));
        out[16..24].copy_from_slice(&encode_offtin(saturating_i64(self.diff_len as u64)));
        out[24..32].copy_from_slice(&encode_offtin(saturating_i64(self.new_size)));
        out
    }

    /// The control, diff and extra streams of `patch` (the patch this header was parsed from).
    pub(crate) fn streams<'p>(&self, patch: &'p [u8]) -> Result<[&'p [u8]; 3]> {
        let body = patch.get(HEADER_LEN..).unwrap_or_default();
        // (`split_at_checked` is newer than AOSP 15's rustc 1.78.)
        let split = |s: &'p [u8], at: usize| (at <= s.len()).then(|| s.split_at(at));
        let (ctrl, rest) = split(body, self.ctrl_len).ok_or_else(|| overrun(patch.len()))?;
        let (diff, extra) = split(rest, self.diff_len).ok_or_else(|| overrun(patch.len()))?;
        Ok([ctrl, diff, extra])
    }
}

fn overrun(patch_len: usize) -> crate::Error {
    crate::err!(
        MalformedPayload,
        "bsdiff: header does not describe this {patch_len}-byte patch"
    )
}

fn field(header: &[u8; HEADER_LEN], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&header[at..at + 8]);
    out
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Decodes bsdiff's `offtin`: little-endian magnitude in the low 63 bits, sign in the top
/// bit. "Negative zero" decodes to 0, as in AOSP's `ParseInt64`; `i64::MIN` cannot occur.
pub(crate) fn decode_offtin(bytes: [u8; 8]) -> i64 {
    let raw = u64::from_le_bytes(bytes);
    // The magnitude has 63 bits, so it fits in an i64 and negating it cannot overflow.
    let magnitude = (raw & !(1 << 63)) as i64;
    if raw >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// Encodes `offtin`. `i64::MIN` has no encoding; it is written as `-i64::MAX`.
pub(crate) fn encode_offtin(value: i64) -> [u8; 8] {
    let magnitude = value.unsigned_abs().min(i64::MAX as u64);
    let sign = if value < 0 { 1u64 << 63 } else { 0 };
    (magnitude | sign).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn header(magic: &[u8], ctrl: i64, diff: i64, new: i64) -> Vec<u8> {
        let mut out = magic.to_vec();
        out.resize(8, 0);
        for v in [ctrl, diff, new] {
            out.extend_from_slice(&encode_offtin(v));
        }
        out
    }

    #[test]
    fn offtin_matches_bsdiff_encoding() {
        assert_eq!(encode_offtin(0), [0; 8]);
        assert_eq!(encode_offtin(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_offtin(-1), [1, 0, 0, 0, 0, 0, 0, 0x80]);
        for v in [
            0,
            1,
            -1,
            255,
            -256,
            i64::MAX,
            -i64::MAX,
            1 << 40,
            -(1 << 40),
        ] {
            assert_eq!(decode_offtin(encode_offtin(v)), v);
        }
        // Negative zero is zero; the all-ones pattern is -(2^63 - 1).
        assert_eq!(decode_offtin([0, 0, 0, 0, 0, 0, 0, 0x80]), 0);
        assert_eq!(decode_offtin([0xff; 8]), -i64::MAX);
    }

    #[test]
    fn parses_both_magics() {
        let mut p = header(b"BSDIFF40", 3, 4, 100);
        p.extend_from_slice(&[0; 10]);
        let h = PatchHeader::parse(&p).unwrap();
        assert_eq!(h.format, Format::Bsdiff40);
        assert_eq!(h.compressors, [Compressor::Bz2; 3]);
        assert_eq!((h.ctrl_len, h.diff_len, h.new_size), (3, 4, 100));
        assert_eq!(h.to_bytes()[..], p[..32]);
        let [c, d, e] = h.streams(&p).unwrap();
        assert_eq!((c.len(), d.len(), e.len()), (3, 4, 3));

        let mut p = header(b"BSDF2\x02\x01\x00", 0, 0, 0);
        let h = PatchHeader::parse(&p).unwrap();
        assert_eq!(h.format, Format::Bsdf2);
        assert_eq!(
            h.compressors,
            [Compressor::Brotli, Compressor::Bz2, Compressor::None]
        );
        assert_eq!(h.to_bytes()[..], p[..]);
        p[7] = 3;
        assert_eq!(
            PatchHeader::parse(&p).unwrap_err().code,
            ErrorCode::MalformedPayload
        );
    }

    #[test]
    fn rejects_bad_headers() {
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            header(b"BSDIFF40", 0, 0, 0)[..31].to_vec(),
            header(b"BSDIFF41", 0, 0, 0),
            header(b"BSDF3\x01\x01\x01", 0, 0, 0),
            header(b"BSDIFF40", -1, 0, 0),
            header(b"BSDIFF40", 0, -1, 0),
            header(b"BSDIFF40", 0, 0, -1),
            header(b"BSDIFF40", 1, 0, 0),
            header(b"BSDIFF40", 0, 1, 0),
            header(b"BSDIFF40", i64::MAX, i64::MAX, 0),
        ];
        for (i, case) in cases.iter().enumerate() {
            let err = PatchHeader::parse(case).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedPayload, "case {i}: {err}");
        }
        // Exactly filling the patch is fine.
        let mut p = header(b"BSDIFF40", 2, 3, 0);
        p.extend_from_slice(&[0; 5]);
        assert!(PatchHeader::parse(&p).is_ok());
    }
}
