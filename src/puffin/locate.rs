//! Finding deflate blocks in containers, for making PUFFDIFF patches (puffin's
//! `LocateDeflatesInZipArchive` and `LocateDeflatesInGzip`): each compressed (fixed or
//! dynamic) block is one extent; stored blocks are left to the bsdiff.

use super::bits::{BitReader, BitWriter};
use super::huff::huff_blocks;
use super::puff::{puff_blocks, BitExtent, PuffWriter};
use crate::error::Result;

/// The blocks of the deflate stream starting at byte `offset` of `data`, up to and including
/// its final block, and the stream's length in bytes.
pub fn deflate_stream(data: &[u8], offset: usize) -> Result<(Vec<BitExtent>, usize)> {
    let bytes = data.get(offset..).unwrap_or_default();
    let mut br = BitReader::new(bytes);
    let mut found = Vec::new();
    let mut scratch = Vec::new();
    let mut pw = PuffWriter::new(&mut scratch, usize::MAX);
    puff_blocks(&mut br, &mut pw, Some(&mut found))?;
    let base = offset as u64 * 8;
    for e in &mut found {
        e.offset += base;
    }
    Ok((found, br.position().div_ceil(8) as usize))
}

fn le16(d: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?).into())
}

fn le32(d: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?)).ok()
}

/// Deflate blocks of every deflated entry found by scanning for zip local file headers
/// (`PK\x03\x04`, method 8), as puffin does: entries that do not decode are skipped.
pub fn zip(data: &[u8]) -> Vec<BitExtent> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 30 <= data.len() {
        if data[pos..pos + 4] != *b"PK\x03\x04" || le16(data, pos + 8) != Some(8) {
            pos += 1;
            continue;
        }
        let (Some(csize), Some(name), Some(extra)) = (
            le32(data, pos + 18),
            le16(data, pos + 26),
            le16(data, pos + 28),
        ) else {
            break;
        };
        let start = pos + 30 + name + extra;
        if start
            .checked_add(csize)
            .map_or(true, |end| end > data.len())
        {
            pos += 4;
            continue;
        }
        match deflate_stream(data, start) {
            Ok((blocks, len)) => {
                out.extend(blocks);
                pos = start + len;
            }
            Err(_) => pos += 4,
        }
    }
    out
}

/// Deflate blocks of each member of a gzip file (RFC 1952); empty if `data` is not gzip.
pub fn gzip(data: &[u8]) -> Vec<BitExtent> {
    let mut out = Vec::new();
    let mut member = 0usize;
    while let Some((blocks, end)) = gzip_member(data, member) {
        out.extend(blocks);
        member = end;
    }
    out
}

/// The blocks of the gzip member at `member` and where the member ends.
fn gzip_member(data: &[u8], member: usize) -> Option<(Vec<BitExtent>, usize)> {
    if data.get(member..member.checked_add(10)?)?[..3] != [0x1F, 0x8B, 8] {
        return None;
    }
    let flags = data[member + 3];
    let mut at = member + 10;
    if flags & 4 != 0 {
        at += 2 + le16(data, at)?;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            at += data.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    let (blocks, len) = deflate_stream(data, at).ok()?;
    // The CRC-32 and size trailer.
    let end = at + len + 8;
    (end <= data.len()).then_some((blocks, end))
}

/// Deflate blocks in `data`, wherever they are: zip entries (found by their local headers)
/// and gzip members (found by their magic), as in a filesystem image holding APKs and
/// gzip files.
pub fn any(data: &[u8]) -> Vec<BitExtent> {
    let mut found = zip(data);
    let mut at = 0usize;
    while let Some(i) = data
        .get(at..)
        .and_then(|d| d.windows(3).position(|w| w == [0x1F, 0x8B, 8]))
    {
        let start = at + i;
        // Zip entries hold deflate data where a gzip magic may appear by chance.
        let inside_zip = found.iter().any(|b| {
            let (s, e) = (b.offset / 8, (b.offset + b.length).div_ceil(8));
            (s..e).contains(&(start as u64))
        });
        match (!inside_zip).then(|| gzip_member(data, start)).flatten() {
            Some((blocks, end)) => {
                found.extend(blocks);
                at = end;
            }
            None => at = start + 1,
        }
    }
    found.sort_by_key(|b| b.offset);
    // A header found by chance inside another stream's data may decode into blocks that
    // overlap real ones: keep the first of any overlapping run.
    let mut end = 0u64;
    found.retain(|b| {
        let keep = b.offset >= end;
        if keep {
            end = b.offset + b.length;
        }
        keep
    });
    found
}

/// Whether the block at `extent` huffs back to exactly its own bytes: its puff recreates it.
/// Blocks that do not (an encoder choice puffin does not record, such as a length of 258 sent
/// as code 284) cannot be in a patch's destination.
pub fn round_trips(data: &[u8], extent: BitExtent) -> bool {
    let Some(end) = extent.offset.checked_add(extent.length) else {
        return false;
    };
    let (first, last) = ((extent.offset / 8) as usize, end.div_ceil(8) as usize);
    let Some(bytes) = data.get(first..last) else {
        return false;
    };
    let mut br = BitReader::new(bytes);
    let mut puff = Vec::new();
    let shift = (extent.offset % 8) as u32;
    if br.skip(shift).is_err()
        || puff_blocks(&mut br, &mut PuffWriter::new(&mut puff, usize::MAX), None).is_err()
    {
        return false;
    }
    let mut back = Vec::new();
    let mut bw = BitWriter::new(&mut back, bytes.len());
    if bw.write(shift, 0).is_err()
        || huff_blocks(&puff, &mut bw).is_err()
        || back.len() != bytes.len()
    {
        return false;
    }
    // Compare only the block's own bits: the first and last bytes may hold other data.
    let mask_first = 0xFFu8 << shift;
    let tail = (end % 8) as u32;
    let mask_last = if tail == 0 { 0xFF } else { (1u8 << tail) - 1 };
    let n = bytes.len();
    bytes.iter().zip(&back).enumerate().all(|(i, (&a, &b))| {
        let mut m = 0xFFu8;
        if i == 0 {
            m &= mask_first;
        }
        if i == n - 1 {
            m &= mask_last;
        }
        a & m == b & m
    })
}
