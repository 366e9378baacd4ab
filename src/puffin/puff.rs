//! Puffing: a deflate stream into puffin's byte-aligned puff form.
//!
//! A puff is a sequence of items, each introduced by its own header:
//! - block metadata: big-endian u16 `len - 1`, then `len` bytes. The first is the block header
//!   `BFINAL << 7 | BTYPE << 5`, for a stored block ORed with the bits skipped to the byte
//!   boundary; a dynamic block follows it with HLIT, HDIST, HCLEN (one byte each), the code
//!   length code lengths two to a byte (high nibble first), and the code-length symbols, one
//!   byte each: 0..=15 a length, 16..=19 a repeat of the previous length 3..=6 times, 20..=27
//!   3..=10 zeros, 28..=155 11..=138 zeros;
//! - a literal run of `n` bytes: `n - 1` (n <= 127), or 0x7F and big-endian u16 `n - 128`
//!   (n <= 65663), then the bytes;
//! - a copy: `0x80 | (len - 3)` (len <= 129), or 0xFF and `len - 130`, then the big-endian u16
//!   `distance - 1`;
//! - end of block: 0xFF 0x81 (a length of 259).
//!
//! A stored block is its metadata, one literal run (absent when empty) and an end of block.

use super::bits::BitReader;
use super::huffman::{
    fixed_lit_lens, Decoder, DIST_BASE, DIST_EXTRA, FIXED_DIST_LENS, LENGTH_BASE, LENGTH_EXTRA,
    PERMUTATION,
};
use crate::error::Result;
use crate::{bail, err};

/// Most literals one run holds.
const MAX_RUN: usize = 65535 + 128;
/// Block metadata is at most the header, HLIT/HDIST/HCLEN, 286 + 30 code-length symbols and
/// 19 code length code lengths (puffin's buffer size, kept for its limit).
pub(super) const MAX_METADATA: usize = 1 + 3 + 286 + 30 + 19;

/// Writes puff items into a vector, never past `limit` bytes.
pub(super) struct PuffWriter<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
    run: Vec<u8>,
}

impl<'a> PuffWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>, limit: usize) -> Self {
        PuffWriter {
            out,
            limit,
            run: Vec::new(),
        }
    }

    fn room(&self, n: usize) -> Result<()> {
        if self.limit.saturating_sub(self.out.len()) < n {
            bail!(MalformedPayload, "puff larger than its extent");
        }
        Ok(())
    }

    fn literal(&mut self, byte: u8) -> Result<()> {
        self.run.push(byte);
        if self.run.len() == MAX_RUN {
            self.flush()?;
        }
        Ok(())
    }

    fn literals(&mut self, bytes: &[u8]) -> Result<()> {
        // Only stored blocks write runs, right after their metadata: the run is empty here.
        debug_assert!(self.run.is_empty() && bytes.len() <= 65535);
        if bytes.is_empty() {
            return Ok(());
        }
        self.run.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes out the pending literal run.
    pub fn flush(&mut self) -> Result<()> {
        let n = self.run.len();
        if n == 0 {
            return Ok(());
        }
        if n <= 127 {
            self.room(n + 1)?;
            self.out.push((n - 1) as u8);
        } else {
            self.room(n + 3)?;
            self.out.push(0x7F);
            self.out
                .extend_from_slice(&((n - 128) as u16).to_be_bytes());
        }
        self.out.extend_from_slice(&self.run);
        self.run.clear();
        Ok(())
    }

    fn copy(&mut self, len: u16, dist: u16) -> Result<()> {
        self.flush()?;
        if len < 130 {
            self.room(3)?;
            self.out.push(0x80 | (len - 3) as u8);
        } else {
            self.room(4)?;
            self.out.extend_from_slice(&[0xFF, (len - 130) as u8]);
        }
        self.out.extend_from_slice(&(dist - 1).to_be_bytes());
        Ok(())
    }

    fn metadata(&mut self, md: &[u8]) -> Result<()> {
        self.flush()?;
        self.room(md.len() + 2)?;
        self.out
            .extend_from_slice(&((md.len() - 1) as u16).to_be_bytes());
        self.out.extend_from_slice(md);
        Ok(())
    }

    fn end_of_block(&mut self) -> Result<()> {
        self.flush()?;
        self.room(2)?;
        self.out.extend_from_slice(&[0xFF, 0x81]);
        Ok(())
    }
}

/// Where one deflate block lies, in bits of the reader's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitExtent {
    /// Offset in bits.
    pub offset: u64,
    /// Length in bits.
    pub length: u64,
}

/// Puffs deflate blocks from `br` into `pw` while at least 8 bits remain, as puffin does.
///
/// With `found` (locating deflates), it stops after the final block and records each
/// compressed (fixed or dynamic) block's extent; stored blocks are puffed but not recorded.
pub(super) fn puff_blocks(
    br: &mut BitReader<'_>,
    pw: &mut PuffWriter<'_>,
    mut found: Option<&mut Vec<BitExtent>>,
) -> Result<()> {
    let mut md = Vec::with_capacity(MAX_METADATA);
    while br.remaining() >= 8 {
        let start = br.position();
        let final_bit = br.read(1)? as u8;
        let btype = br.read(2)? as u8;
        let header = final_bit << 7 | btype << 5;
        let (lit, dist) = match btype {
            0 => {
                let skip = br.to_boundary();
                let skipped = br.read(skip)? as u8;
                if br.remaining() < 32 {
                    bail!(MalformedPayload, "stored deflate block header truncated");
                }
                let len = br.read(16)?;
                let nlen = br.read(16)?;
                if len ^ nlen != 0xFFFF {
                    bail!(MalformedPayload, "stored deflate block length check fails");
                }
                // As puffin: the skipped bits share the header byte.
                pw.metadata(&[header | skipped])?;
                pw.literals(br.bytes(len as usize)?)?;
                pw.end_of_block()?;
                if final_bit == 1 && found.is_some() {
                    break;
                }
                continue;
            }
            1 => {
                pw.metadata(&[header])?;
                (
                    Decoder::new(&fixed_lit_lens())?,
                    Decoder::new(&FIXED_DIST_LENS)?,
                )
            }
            2 => {
                md.clear();
                md.push(header);
                let codes = dynamic_header(br, &mut md)?;
                pw.metadata(&md)?;
                codes
            }
            _ => bail!(MalformedPayload, "deflate block type 3"),
        };
        loop {
            let (sym, n) = lit.lookup(br.peek(lit.max_bits))?;
            br.skip(n)?;
            match sym {
                0..=255 => pw.literal(sym as u8)?,
                256 => {
                    pw.end_of_block()?;
                    if let Some(found) = found.as_deref_mut() {
                        found.push(BitExtent {
                            offset: start,
                            length: br.position() - start,
                        });
                    }
                    break;
                }
                257..=285 => {
                    let i = usize::from(sym - 257);
                    let len = LENGTH_BASE[i] + br.read(LENGTH_EXTRA[i].into())? as u16;
                    let (dsym, n) = dist.lookup(br.peek(dist.max_bits))?;
                    br.skip(n)?;
                    let d = usize::from(dsym);
                    if d >= DIST_BASE.len() {
                        bail!(MalformedPayload, "deflate distance code {d}");
                    }
                    let distance = DIST_BASE[d] + br.read(DIST_EXTRA[d].into())? as u16;
                    pw.copy(len, distance)?;
                }
                _ => bail!(MalformedPayload, "deflate length code {sym}"),
            }
        }
        if final_bit == 1 && found.is_some() {
            break;
        }
    }
    pw.flush()
}

/// Reads a dynamic block's code definitions, appending their puff metadata to `md`.
fn dynamic_header(br: &mut BitReader<'_>, md: &mut Vec<u8>) -> Result<(Decoder, Decoder)> {
    let hlit = br.read(5)? as u8;
    let hdist = br.read(5)? as u8;
    let hclen = br.read(4)? as u8;
    let (nlit, ndist, ncode) = (
        usize::from(hlit) + 257,
        usize::from(hdist) + 1,
        usize::from(hclen) + 4,
    );
    if nlit > 286 || ndist > 30 {
        bail!(
            MalformedPayload,
            "dynamic deflate block with {nlit} literal/length or {ndist} distance codes"
        );
    }
    md.extend_from_slice(&[hlit, hdist, hclen]);
    let mut code_lens = [0u8; 19];
    for i in 0..ncode {
        let l = br.read(3)? as u8;
        code_lens[PERMUTATION[i]] = l;
        if i % 2 == 0 {
            md.push(l << 4);
        } else if let Some(last) = md.last_mut() {
            *last |= l;
        }
    }
    let code = Decoder::new(&code_lens)?;
    let mut lens = Vec::with_capacity(nlit + ndist);
    while lens.len() < nlit + ndist {
        // As puffin: the full code length must be there to look a symbol up.
        if br.remaining() < u64::from(code.max_bits) {
            bail!(MalformedPayload, "deflate code lengths truncated");
        }
        let (sym, n) = code.lookup(br.peek(code.max_bits))?;
        br.skip(n)?;
        let (count, value, puff) = match sym {
            0..=15 => (1, sym as u8, sym as u8),
            16 => {
                let prev = *lens.last().ok_or_else(|| {
                    err!(
                        MalformedPayload,
                        "deflate repeats a length before the first"
                    )
                })?;
                let x = br.read(2)? as u8;
                (3 + usize::from(x), prev, 16 + x)
            }
            17 => {
                let x = br.read(3)? as u8;
                (3 + usize::from(x), 0, 20 + x)
            }
            18 => {
                let x = br.read(7)? as u8;
                (11 + usize::from(x), 0, 28 + x)
            }
            _ => bail!(MalformedPayload, "code length symbol {sym}"),
        };
        md.push(puff);
        lens.extend(std::iter::repeat(value).take(count));
    }
    if lens.len() != nlit + ndist {
        bail!(MalformedPayload, "deflate code lengths overrun their count");
    }
    Ok((Decoder::new(&lens[..nlit])?, Decoder::new(&lens[nlit..])?))
}
