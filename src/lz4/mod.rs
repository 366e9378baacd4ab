//! LZ4 blocks as liblz4 1.9.x makes them, byte for byte.
//!
//! LZ4DIFF operations recompress patched data and must reproduce the destination's exact
//! bytes, which EROFS's `mkfs.erofs` made with liblz4's "destination size" compressors: the
//! fast one (`LZ4_compress_destSize`, acceleration 1) and the high-compression one
//! (`LZ4_compress_HC_destSize`: hash chains at levels 1-9, the optimal parser at 10-12). The
//! LZ4 format leaves the encoder free, so any other encoder (lz4_flex included) makes other,
//! equally valid bytes; this module follows liblz4's match finders, parsing heuristics and
//! output-budget rules, written from their behaviour and checked against the real library
//! (tests/lz4_liblz4.rs).
//!
//! Sans-I/O and allocation-bounded: the compressors take the input and a destination budget
//! and allocate that budget plus fixed-size tables; [`decompress_partial`] allocates the
//! output length its caller allows.

mod fast;
mod hc;
mod optimal;

pub use fast::compress_dest_size;
pub use hc::compress_hc_dest_size;

/// Shortest match.
const MINMATCH: usize = 4;
/// The last match must start at least this far from the end of the input.
const MFLIMIT: usize = 12;
/// The last bytes of a block are always literals.
const LASTLITERALS: usize = 5;
/// Inputs shorter than this are stored as one literal run.
const MIN_LENGTH: usize = MFLIMIT + 1;
/// Farthest match offset.
const DISTANCE_MAX: usize = 65535;
/// Literal and match length fields in a token.
const RUN_MASK: usize = 15;
const ML_MASK: usize = 15;
/// liblz4's `LZ4_MAX_INPUT_SIZE`: larger inputs are refused.
pub const MAX_INPUT: usize = 0x7E00_0000;

/// liblz4's HC levels: below 1 means the default (9), above 12 means 12.
pub const HC_LEVEL_DEFAULT: i32 = 9;

fn read32(src: &[u8], pos: usize) -> u32 {
    match src.get(pos..pos.wrapping_add(4)) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

fn read16(src: &[u8], pos: usize) -> u16 {
    match src.get(pos..pos.wrapping_add(2)) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn read64(src: &[u8], pos: usize) -> u64 {
    match src.get(pos..pos.wrapping_add(8)) {
        Some(b) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            u64::from_le_bytes(w)
        }
        None => 0,
    }
}

/// How many bytes at `a` equal those at `b` (`b < a`), not reading at or past `limit`.
fn count(src: &[u8], mut a: usize, mut b: usize, limit: usize) -> usize {
    let start = a;
    while a.saturating_add(8) <= limit {
        let diff = read64(src, a) ^ read64(src, b);
        if diff != 0 {
            return a - start + (diff.trailing_zeros() / 8) as usize;
        }
        a += 8;
        b += 8;
    }
    while a < limit && src.get(a).is_some() && src.get(a) == src.get(b) {
        a += 1;
        b += 1;
    }
    a - start
}

/// Appends a length's continuation bytes (after the 15 in its token field).
fn push_length(out: &mut Vec<u8>, mut len: usize) {
    while len >= 255 {
        out.push(255);
        len -= 255;
    }
    out.push(len as u8);
}

/// The final literal run: as much of `src[anchor..]` as fits in `budget` bytes of output when
/// `fill`, else all of it. Returns how far the input was consumed.
fn last_literals(
    src: &[u8],
    anchor: usize,
    out: &mut Vec<u8>,
    budget: Option<usize>,
) -> Option<usize> {
    let mut run = src.len() - anchor;
    if let Some(limit) = budget {
        let need = out.len() + run + 1 + (run + 255 - RUN_MASK) / 255;
        if need > limit {
            run = limit.checked_sub(out.len())?.checked_sub(1)?;
            run -= (run + 256 - RUN_MASK) / 256;
        }
    }
    if run >= RUN_MASK {
        out.push((RUN_MASK << 4) as u8);
        push_length(out, run - RUN_MASK);
    } else {
        out.push((run << 4) as u8);
    }
    out.extend_from_slice(src.get(anchor..anchor + run)?);
    Some(anchor + run)
}

/// A token's length field `field` and, when it is 15, the continuation bytes at `ip`.
fn read_length(src: &[u8], ip: &mut usize, field: usize) -> Option<usize> {
    let mut len = field;
    if field == RUN_MASK {
        loop {
            let b = *src.get(*ip)?;
            *ip += 1;
            len = len.checked_add(usize::from(b))?;
            if b != 255 {
                break;
            }
        }
    }
    Some(len)
}

/// Decodes an LZ4 block until `out_len` bytes are produced, as liblz4's
/// `LZ4_decompress_safe_partial(src, dst, len, out_len, out_len)`: input past that point is
/// ignored (EROFS pads clusters). `None` if the block is malformed or yields fewer bytes.
pub fn decompress_partial(src: &[u8], out_len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(out_len);
    let mut ip = 0usize;
    while out.len() < out_len {
        let token = *src.get(ip)?;
        ip += 1;
        let lit = read_length(src, &mut ip, usize::from(token >> 4))?;
        let take = lit.min(out_len - out.len());
        out.extend_from_slice(src.get(ip..ip.checked_add(take)?)?);
        ip += lit;
        if out.len() == out_len {
            break;
        }
        if ip == src.len() {
            // The block's last sequence: literals only.
            break;
        }
        let offset = usize::from(read16(src, ip));
        if ip + 2 > src.len() || offset == 0 || offset > out.len() {
            return None;
        }
        ip += 2;
        let ml = read_length(src, &mut ip, usize::from(token & 15))?;
        let ml = (ml + MINMATCH).min(out_len - out.len());
        let from = out.len() - offset;
        for i in 0..ml {
            let b = out[from + i];
            out.push(b);
        }
    }
    (out.len() == out_len).then_some(out)
}

#[cfg(test)]
mod tests;
