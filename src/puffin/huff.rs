//! Huffing: a puff back into the deflate bits it was made from (see [`super::puff`] for the
//! puff format). The block types, code lengths and symbol choices recorded in the puff fix
//! every bit, so a puff of a deflate stream huffs back to the identical stream.

use super::bits::BitWriter;
use super::huffman::{
    dist_code, fixed_lit_lens, length_code, Encoder, DIST_BASE, DIST_EXTRA, FIXED_DIST_LENS,
    LENGTH_BASE, LENGTH_EXTRA, PERMUTATION,
};
use super::puff::MAX_METADATA;
use crate::error::Result;
use crate::{bail, err};

/// One puff item.
enum Item<'a> {
    Metadata(&'a [u8]),
    Literals(&'a [u8]),
    Copy { len: u16, dist: u16 },
    EndOfBlock,
}

/// Reads puff items; the bounds checks are puffin's `BufferPuffReader`'s.
struct PuffReader<'a> {
    puff: &'a [u8],
    pos: usize,
    in_block: bool,
}

impl<'a> PuffReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .pos
            .checked_add(n)
            .and_then(|end| self.puff.get(self.pos..end))
            .ok_or_else(|| err!(MalformedPayload, "puff item runs past the puff"))?;
        self.pos += n;
        Ok(s)
    }

    fn left(&self) -> usize {
        self.puff.len() - self.pos
    }

    fn next(&mut self) -> Result<Item<'a>> {
        if !self.in_block {
            // Puffin wants the length and at least one byte.
            if self.left() < 3 {
                bail!(MalformedPayload, "puff block metadata truncated");
            }
            let h = self.take(2)?;
            let len = usize::from(u16::from_be_bytes([h[0], h[1]])) + 1;
            if len > MAX_METADATA {
                bail!(MalformedPayload, "puff block metadata of {len} bytes");
            }
            self.in_block = true;
            return Ok(Item::Metadata(self.take(len)?));
        }
        let b = self.take(1)?[0];
        if b & 0x80 != 0 {
            let len = if b & 0x7F < 127 {
                u16::from(b & 0x7F) + 3
            } else {
                u16::from(self.take(1)?[0]) + 130
            };
            if len > 259 {
                bail!(MalformedPayload, "puff copy length {len}");
            }
            if len == 259 {
                self.in_block = false;
                return Ok(Item::EndOfBlock);
            }
            let d = self.take(2)?;
            let dist = u16::from_be_bytes([d[0], d[1]]);
            if dist >= 1 << 15 {
                bail!(MalformedPayload, "puff copy distance {dist}");
            }
            Ok(Item::Copy {
                len,
                dist: dist + 1,
            })
        } else {
            let n = if b < 127 {
                usize::from(b) + 1
            } else {
                let l = self.take(2)?;
                usize::from(u16::from_be_bytes([l[0], l[1]])) + 128
            };
            Ok(Item::Literals(self.take(n)?))
        }
    }
}

/// Huffs a whole puff into `bw`, then pads to a byte boundary with zeros.
pub(super) fn huff_blocks(puff: &[u8], bw: &mut BitWriter<'_>) -> Result<()> {
    let mut pr = PuffReader {
        puff,
        pos: 0,
        in_block: false,
    };
    while pr.left() != 0 {
        let Item::Metadata(md) = pr.next()? else {
            bail!(MalformedPayload, "puff block does not start with metadata");
        };
        let header = md[0];
        let btype = (header >> 5) & 3;
        bw.write(1, u32::from(header >> 7))?;
        bw.write(2, u32::from(btype))?;
        let (lit, dist) = match btype {
            0 => {
                bw.write(bw.to_boundary(), u32::from(header & 0x1F))?;
                match pr.next()? {
                    Item::Literals(bytes) => {
                        let len = u16::try_from(bytes.len()).map_err(|_| {
                            err!(MalformedPayload, "stored block of {} bytes", bytes.len())
                        })?;
                        bw.write(16, u32::from(len))?;
                        bw.write(16, u32::from(!len))?;
                        bw.bytes(bytes)?;
                        if !matches!(pr.next()?, Item::EndOfBlock) {
                            bail!(MalformedPayload, "stored puff block does not end");
                        }
                    }
                    Item::EndOfBlock => {
                        bw.write(16, 0)?;
                        bw.write(16, 0xFFFF)?;
                    }
                    _ => bail!(MalformedPayload, "stored puff block holds a copy"),
                }
                continue;
            }
            1 => (
                Encoder::new(&fixed_lit_lens())?,
                Encoder::new(&FIXED_DIST_LENS)?,
            ),
            2 => dynamic_header(&md[1..], bw)?,
            _ => bail!(MalformedPayload, "puff block type 3"),
        };
        loop {
            match pr.next()? {
                Item::Literals(bytes) => {
                    for &b in bytes {
                        let (c, n) = lit.code(usize::from(b))?;
                        bw.write(n, c)?;
                    }
                }
                Item::Copy { len, dist: d } => {
                    let i = length_code(len);
                    let (c, n) = lit.code(257 + i)?;
                    bw.write(n, c)?;
                    bw.write(LENGTH_EXTRA[i].into(), u32::from(len - LENGTH_BASE[i]))?;
                    let j = dist_code(d);
                    let (c, n) = dist.code(j)?;
                    bw.write(n, c)?;
                    bw.write(DIST_EXTRA[j].into(), u32::from(d - DIST_BASE[j]))?;
                }
                Item::EndOfBlock => {
                    let (c, n) = lit.code(256)?;
                    bw.write(n, c)?;
                    break;
                }
                Item::Metadata(_) => unreachable_metadata()?,
            }
        }
    }
    bw.flush()
}

fn unreachable_metadata() -> Result<()> {
    bail!(MalformedPayload, "puff metadata inside a block")
}

/// Writes a dynamic block's code definitions from their puff metadata (after the header byte).
fn dynamic_header(md: &[u8], bw: &mut BitWriter<'_>) -> Result<(Encoder, Encoder)> {
    let [hlit, hdist, hclen, rest @ ..] = md else {
        bail!(MalformedPayload, "dynamic puff metadata truncated");
    };
    let (nlit, ndist, ncode) = (
        usize::from(*hlit) + 257,
        usize::from(*hdist) + 1,
        usize::from(*hclen) + 4,
    );
    if nlit > 286 || ndist > 30 || ncode > 19 {
        bail!(
            MalformedPayload,
            "dynamic puff metadata counts out of range"
        );
    }
    bw.write(5, (*hlit).into())?;
    bw.write(5, (*hdist).into())?;
    bw.write(4, (*hclen).into())?;
    let packed = ncode.div_ceil(2);
    if rest.len() < packed {
        bail!(MalformedPayload, "dynamic puff metadata truncated");
    }
    let mut code_lens = [0u8; 19];
    for i in 0..ncode {
        let byte = rest[i / 2];
        let l = if i % 2 == 0 { byte >> 4 } else { byte & 0x0F };
        // Sent in 3 bits: a larger nibble (only a forged puff has one) would be written as
        // something other than the code built from it (the fuzzer's first find).
        if l > 7 {
            bail!(MalformedPayload, "puff code length code length {l}");
        }
        code_lens[PERMUTATION[i]] = l;
        bw.write(3, l.into())?;
    }
    let code = Encoder::new(&code_lens)?;
    let mut lens: Vec<u8> = Vec::with_capacity(nlit + ndist);
    let mut syms = rest[packed..].iter();
    while lens.len() < nlit + ndist {
        let &p = syms
            .next()
            .ok_or_else(|| err!(MalformedPayload, "dynamic puff metadata truncated"))?;
        let (sym, extra_bits, extra, count, value) = match p {
            0..=15 => (usize::from(p), 0, 0, 1, p),
            16..=19 => {
                let prev = *lens.last().ok_or_else(|| {
                    err!(MalformedPayload, "puff repeats a length before the first")
                })?;
                (16, 2, p - 16, usize::from(p - 16) + 3, prev)
            }
            20..=27 => (17, 3, p - 20, usize::from(p - 20) + 3, 0),
            28..=155 => (18, 7, p - 28, usize::from(p - 28) + 11, 0),
            _ => bail!(MalformedPayload, "puff code length symbol {p}"),
        };
        let (c, n) = code.code(sym)?;
        bw.write(n, c)?;
        bw.write(extra_bits, extra.into())?;
        lens.extend(std::iter::repeat(value).take(count));
    }
    // Puffin: the metadata must end exactly with the code lengths, which must fill the counts.
    if lens.len() != nlit + ndist || syms.next().is_some() {
        bail!(
            MalformedPayload,
            "dynamic puff metadata does not match its counts"
        );
    }
    Ok((Encoder::new(&lens[..nlit])?, Encoder::new(&lens[nlit..])?))
}
