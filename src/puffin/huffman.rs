//! Canonical Huffman codes (RFC 1951 3.2.2) and deflate's length and distance tables.

use crate::bail;
use crate::error::Result;

pub(super) const MAX_BITS: u32 = 15;

/// The order code-length code lengths are sent in (RFC 1951 3.2.7).
pub(super) const PERMUTATION: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

pub(super) const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub(super) const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
pub(super) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
pub(super) const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The length code for `len` (3..=258) as puffin's huffer picks it: the largest base not above
/// `len` (so 258 is code 285, never 284 with 31 extra).
pub(super) fn length_code(len: u16) -> usize {
    LENGTH_BASE.partition_point(|&b| b <= len) - 1
}

/// The distance code for `dist` (1..=32768): the largest base not above it.
pub(super) fn dist_code(dist: u16) -> usize {
    DIST_BASE.partition_point(|&b| b <= dist) - 1
}

/// Bit-reversed canonical codes for `lens`: deflate sends Huffman codes most significant bit
/// first into a least-significant-first bit stream. Fails on an oversubscribed set; an
/// incomplete one is allowed (deflate permits a single distance code, and puffin any).
fn codes(lens: &[u8]) -> Result<Vec<u16>> {
    let mut count = [0u16; MAX_BITS as usize + 1];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut left: i32 = 1;
    for &c in &count[1..] {
        left = (left << 1) - i32::from(c);
        if left < 0 {
            bail!(MalformedPayload, "oversubscribed Huffman code");
        }
    }
    let mut next = [0u16; MAX_BITS as usize + 2];
    let mut code = 0u16;
    for bits in 1..=MAX_BITS as usize {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    Ok(lens
        .iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[usize::from(l)];
            next[usize::from(l)] += 1;
            c.reverse_bits() >> (16 - u32::from(l))
        })
        .collect())
}

/// A code for decoding: a table indexed by the next `max_bits` bits of input.
pub(super) struct Decoder {
    /// `symbol | len << 9`, 0 where no code matches.
    table: Vec<u16>,
    pub max_bits: u32,
}

impl Decoder {
    pub fn new(lens: &[u8]) -> Result<Self> {
        let rev = codes(lens)?;
        let max_bits: u32 = lens.iter().copied().max().unwrap_or(0).into();
        let mut table = vec![0u16; 1usize << max_bits];
        for (sym, (&len, &code)) in lens.iter().zip(&rev).enumerate() {
            if len == 0 {
                continue;
            }
            let entry = sym as u16 | u16::from(len) << 9;
            let step = 1usize << len;
            let mut i = usize::from(code);
            while i < table.len() {
                table[i] = entry;
                i += step;
            }
        }
        Ok(Decoder { table, max_bits })
    }

    /// Looks up `bits` (the next `max_bits` input bits): the symbol and its length.
    pub fn lookup(&self, bits: u32) -> Result<(u16, u32)> {
        match self.table.get(bits as usize) {
            Some(&e) if e != 0 => Ok((e & 0x1FF, u32::from(e >> 9))),
            _ => bail!(MalformedPayload, "no Huffman code matches the input"),
        }
    }
}

/// A code for encoding: each symbol's bit-reversed code and its length.
pub(super) struct Encoder {
    codes: Vec<u16>,
    lens: Vec<u8>,
}

impl Encoder {
    pub fn new(lens: &[u8]) -> Result<Self> {
        Ok(Encoder {
            codes: codes(lens)?,
            lens: lens.to_vec(),
        })
    }

    /// The code for `sym` and its length; fails for a symbol the code does not have.
    pub fn code(&self, sym: usize) -> Result<(u32, u32)> {
        match self.lens.get(sym) {
            Some(&l) if l != 0 => Ok((u32::from(self.codes[sym]), u32::from(l))),
            _ => bail!(
                MalformedPayload,
                "puff uses a symbol its Huffman code lacks"
            ),
        }
    }
}

/// Code lengths of the fixed literal/length code (RFC 1951 3.2.6).
pub(super) fn fixed_lit_lens() -> [u8; 288] {
    let mut l = [0u8; 288];
    l[..144].fill(8);
    l[144..256].fill(9);
    l[256..280].fill(7);
    l[280..].fill(8);
    l
}

pub(super) const FIXED_DIST_LENS: [u8; 30] = [5; 30];
