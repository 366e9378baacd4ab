//! Whole streams: a file whose deflate blocks sit at known bit extents, and its puffed form,
//! where each block is replaced by its puff and the bytes between blocks are kept.
//!
//! The mapping is puffin's `PuffinStream`: the bytes between two blocks (from the byte holding
//! the previous block's last bit to the byte holding the next block's first bit) are copied,
//! the first shifted right past the previous block's bits and the last masked to the bits
//! before the next block. Two blocks that touch (one ends on the bit the next starts) have no
//! bytes between them.

use super::bits::{BitReader, BitWriter};
use super::huff::huff_blocks;
use super::puff::{puff_blocks, BitExtent, PuffWriter};
use crate::error::Result;
use crate::{bail, err};

/// A byte extent of the puffed stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteExtent {
    /// Offset in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// One side of a patch: where the deflate blocks are, where their puffs go, and the puffed
/// stream's length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// The deflate blocks, in bits of the deflate stream.
    pub deflates: Vec<BitExtent>,
    /// Where each block's puff lies in the puffed stream.
    pub puffs: Vec<ByteExtent>,
    /// Length of the puffed stream in bytes.
    pub puff_length: u64,
}

/// One stretch of the stream: bytes between blocks, or a block and its puff.
enum Piece {
    /// Bits `from..to` of the deflate stream, kept as `puff_len` bytes.
    Gap { from: u64, to: u64, puff_len: u64 },
    Block {
        deflate: BitExtent,
        puff: ByteExtent,
    },
}

fn gap_bytes(from: u64, to: u64) -> u64 {
    if from == to {
        0
    } else {
        to.div_ceil(8) - from / 8
    }
}

impl StreamInfo {
    /// Checks the extents against each other and against `limit` (the largest puffed stream
    /// accepted), returning the deflate stream's length and its pieces in order.
    fn layout(&self, limit: u64) -> Result<(u64, Vec<Piece>)> {
        let bad = |what: &str| err!(MalformedPayload, "puffin stream info: {what}");
        if self.deflates.len() != self.puffs.len() {
            return Err(bad("deflate and puff counts differ"));
        }
        if self.puff_length > limit {
            bail!(
                MalformedPayload,
                "puffed stream of {} bytes is over the {limit}-byte limit",
                self.puff_length
            );
        }
        let mut pieces = Vec::with_capacity(self.deflates.len() * 2 + 1);
        let (mut bit, mut puff_pos) = (0u64, 0u64);
        for (d, p) in self.deflates.iter().zip(&self.puffs) {
            let d_end = d
                .offset
                .checked_add(d.length)
                .ok_or_else(|| bad("deflate extent overflows"))?;
            if d.offset < bit || d.length == 0 {
                return Err(bad("deflate extents overlap or are out of order"));
            }
            let gap = gap_bytes(bit, d.offset);
            if puff_pos.checked_add(gap) != Some(p.offset) {
                return Err(bad("puff extent is not where its deflate puts it"));
            }
            if gap > 0 {
                pieces.push(Piece::Gap {
                    from: bit,
                    to: d.offset,
                    puff_len: gap,
                });
            }
            puff_pos = p
                .offset
                .checked_add(p.length)
                .filter(|&end| end <= self.puff_length)
                .ok_or_else(|| bad("puff extent past the puffed stream"))?;
            pieces.push(Piece::Block {
                deflate: *d,
                puff: *p,
            });
            bit = d_end;
        }
        let tail = self.puff_length - puff_pos;
        let size = (bit / 8)
            .checked_add(tail)
            .ok_or_else(|| bad("stream size overflows"))?;
        if size.checked_mul(8).is_none() || (bit > size * 8) {
            return Err(bad("last deflate extent past the stream"));
        }
        if tail > 0 {
            pieces.push(Piece::Gap {
                from: bit,
                to: size * 8,
                puff_len: tail,
            });
        }
        Ok((size, pieces))
    }
}

fn byte_range(data_len: usize, from: u64, to: u64) -> Result<std::ops::Range<usize>> {
    let (a, b) = (usize::try_from(from), usize::try_from(to));
    match (a, b) {
        (Ok(a), Ok(b)) if a <= b && b <= data_len => Ok(a..b),
        _ => bail!(MalformedPayload, "puffin extent past the data"),
    }
}

/// Puffs `data` as `info` describes it; the puffed stream is at most `limit` bytes and
/// memory grows with the puff actually produced, never with what `info` claims.
pub fn puff_stream(data: &[u8], info: &StreamInfo, limit: u64) -> Result<Vec<u8>> {
    let (size, pieces) = info.layout(limit)?;
    if size > data.len() as u64 {
        bail!(
            MalformedPayload,
            "puffin stream of {size} bytes, source has {}",
            data.len()
        );
    }
    let mut out = Vec::with_capacity(data.len().min(info.puff_length as usize));
    for piece in pieces {
        match piece {
            Piece::Gap { from, to, puff_len } => {
                let start = out.len();
                out.extend_from_slice(&data[byte_range(data.len(), from / 8, to.div_ceil(8))?]);
                debug_assert_eq!((out.len() - start) as u64, puff_len);
                if to % 8 != 0 {
                    if let Some(last) = out.last_mut() {
                        *last &= (1u8 << (to % 8)) - 1;
                    }
                }
                if from % 8 != 0 {
                    out[start] >>= from % 8;
                }
            }
            Piece::Block { deflate, puff } => {
                let end = deflate.offset + deflate.length;
                let bytes = &data[byte_range(data.len(), deflate.offset / 8, end.div_ceil(8))?];
                let mut br = BitReader::new(bytes);
                br.skip((deflate.offset % 8) as u32)?;
                let start = out.len();
                let want = usize::try_from(puff.length)
                    .map_err(|_| err!(MalformedPayload, "puff extent too large"))?;
                let mut pw = PuffWriter::new(&mut out, start.saturating_add(want));
                puff_blocks(&mut br, &mut pw, None)?;
                if out.len() - start != want {
                    bail!(
                        MalformedPayload,
                        "deflate at bit {} puffs to {} bytes, patch says {want}",
                        deflate.offset,
                        out.len() - start
                    );
                }
            }
        }
    }
    Ok(out)
}

/// Huffs a puffed stream back into the `out_len`-byte stream `info` describes.
pub fn huff_stream(puff: &[u8], info: &StreamInfo, out_len: usize) -> Result<Vec<u8>> {
    let (size, pieces) = info.layout(puff.len() as u64)?;
    if puff.len() as u64 != info.puff_length || size != out_len as u64 {
        bail!(
            MalformedPayload,
            "puffin destination of {size} bytes from a {}-byte puff, expected {out_len}",
            puff.len()
        );
    }
    let mut out = vec![0u8; out_len];
    let mut pos = 0usize;
    let mut block = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Gap { from, puff_len, .. } => {
                // Set by layout from the puff's own length, so within it.
                let bytes = &puff[pos..pos + puff_len as usize];
                pos += bytes.len();
                let at = (from / 8) as usize;
                for (k, &b) in bytes.iter().enumerate() {
                    let b = if k == 0 { b << (from % 8) } else { b };
                    if let Some(o) = out.get_mut(at + k) {
                        *o |= b;
                    }
                }
            }
            Piece::Block { deflate, puff: p } => {
                let bytes = &puff[pos..pos + p.length as usize];
                pos += bytes.len();
                let first = deflate.offset / 8;
                let want = ((deflate.offset + deflate.length).div_ceil(8) - first) as usize;
                block.clear();
                let mut bw = BitWriter::new(&mut block, want);
                bw.write((deflate.offset % 8) as u32, 0)?;
                huff_blocks(bytes, &mut bw)?;
                if block.len() != want {
                    bail!(
                        MalformedPayload,
                        "puff at byte {} huffs to {} bytes, patch says {want}",
                        p.offset,
                        block.len()
                    );
                }
                let at = usize::try_from(first).unwrap_or(usize::MAX);
                for (o, &b) in out.iter_mut().skip(at).zip(&block) {
                    *o |= b;
                }
            }
        }
    }
    Ok(out)
}

/// Puffs each deflate extent of `data` to learn its puff's size and lays the puffs out:
/// the `StreamInfo` a patch records for `data` (puffin's `FindPuffLocations`).
pub fn stream_info(data: &[u8], deflates: &[BitExtent]) -> Result<StreamInfo> {
    let mut puffs = Vec::with_capacity(deflates.len());
    let (mut bit, mut puff_pos) = (0u64, 0u64);
    let mut scratch = Vec::new();
    for d in deflates {
        let end = d.offset + d.length;
        let bytes = &data[byte_range(data.len(), d.offset / 8, end.div_ceil(8))?];
        let mut br = BitReader::new(bytes);
        br.skip((d.offset % 8) as u32)?;
        scratch.clear();
        let mut pw = PuffWriter::new(&mut scratch, usize::MAX);
        puff_blocks(&mut br, &mut pw, None)?;
        let offset = puff_pos + gap_bytes(bit, d.offset);
        puffs.push(ByteExtent {
            offset,
            length: scratch.len() as u64,
        });
        puff_pos = offset + scratch.len() as u64;
        bit = end;
    }
    let tail = (data.len() as u64)
        .checked_sub(bit / 8)
        .ok_or_else(|| err!(MalformedPayload, "deflate extent past the data"))?;
    Ok(StreamInfo {
        deflates: deflates.to_vec(),
        puffs,
        puff_length: puff_pos + tail,
    })
}

/// Puffs every deflate block in `data` (a raw deflate stream, from its first bit) while at
/// least a byte's worth of bits remains, as puffin does for one extent.
pub fn puff(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut br = BitReader::new(data);
    puff_blocks(&mut br, &mut PuffWriter::new(&mut out, limit), None)?;
    Ok(out)
}

/// Huffs a whole puff into deflate bytes (at most `limit`), padded to a byte boundary.
pub fn huff(puff: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    huff_blocks(puff, &mut BitWriter::new(&mut out, limit))?;
    Ok(out)
}
