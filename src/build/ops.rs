//! Turning partition images into install operations: pure functions over byte slices.
//!
//! Full payloads (minor version 0) use only REPLACE, REPLACE_BZ and REPLACE_XZ, whichever is
//! smallest for each chunk and never larger than the raw blocks, as AOSP's generator and
//! `payload_checker` require. Deltas add SOURCE_COPY for blocks the source already has, ZERO
//! for zero blocks, and BROTLI_BSDIFF for changed blocks when it beats REPLACE_*.

use std::collections::HashMap;
use std::io::Write;

use crate::engine::hashing::sha256;
use crate::err;
use crate::error::Result;
use crate::payload::{Extent, OpKind, BLOCK_SIZE};

/// Blocks per chunk: 2 MiB, the chunk size AOSP's generator uses for full payloads.
pub const CHUNK_BLOCKS: u64 = 512;
const BS: usize = BLOCK_SIZE as usize;

/// Which compressors a REPLACE_* operation may use.
#[derive(Clone, Copy, Debug)]
pub struct Compressors {
    /// REPLACE_XZ may be tried.
    pub xz: bool,
    /// REPLACE_BZ may be tried.
    pub bzip2: bool,
}

/// One generated operation with its blob (empty for blob-less kinds).
#[derive(Clone, Debug)]
pub struct GeneratedOp {
    /// The operation type.
    pub kind: OpKind,
    /// The operation's data.
    pub blob: Vec<u8>,
    /// Source slot blocks it reads.
    pub src_extents: Vec<Extent>,
    /// Target slot blocks it writes.
    pub dst_extents: Vec<Extent>,
    /// SHA-256 of the source blocks, for operations that read them.
    pub src_sha256: Option<[u8; 32]>,
}

/// The smallest REPLACE_* operation for `data` at `start_block`.
pub fn replace(data: &[u8], start_block: u64, compressors: Compressors) -> Result<GeneratedOp> {
    let mut best = (OpKind::Replace, data.to_vec());
    if compressors.xz {
        let xz = compress_xz(data)?;
        if xz.len() < best.1.len() {
            best = (OpKind::ReplaceXz, xz);
        }
    }
    if compressors.bzip2 {
        let bz = compress_bz2(data)?;
        if bz.len() < best.1.len() {
            best = (OpKind::ReplaceBz, bz);
        }
    }
    Ok(GeneratedOp {
        kind: best.0,
        blob: best.1,
        src_extents: vec![],
        dst_extents: vec![Extent {
            start_block,
            num_blocks: (data.len() / BS) as u64,
        }],
        src_sha256: None,
    })
}

/// XZ as AOSP writes it: preset 6 with a 2 MiB dictionary (chunks are 2 MiB, more is waste),
/// no integrity check (the operation's SHA-256 covers it).
pub fn compress_xz(data: &[u8]) -> Result<Vec<u8>> {
    use liblzma::stream::{Check, LzmaOptions, Stream};
    let mut opts =
        LzmaOptions::new_preset(6).map_err(|e| err!(InstallFailed, "xz options: {e}"))?;
    opts.dict_size(2 << 20);
    let mut filters = liblzma::stream::Filters::new();
    filters.lzma2(&opts);
    let stream = Stream::new_stream_encoder(&filters, Check::None)
        .map_err(|e| err!(InstallFailed, "xz encoder: {e}"))?;
    let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data)
        .map_err(|e| err!(InstallFailed, "xz: {e}"))?;
    enc.finish().map_err(|e| err!(InstallFailed, "xz: {e}"))
}

fn compress_bz2(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    enc.write_all(data)
        .map_err(|e| err!(InstallFailed, "bzip2: {e}"))?;
    enc.finish().map_err(|e| err!(InstallFailed, "bzip2: {e}"))
}

/// What a block of the new image is, relative to the old image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    Zero,
    /// Identical to this block of the old image.
    Copy(u64),
    Changed,
    /// Computed by the device (verity hash tree and FEC): no operation.
    Skip,
}

/// Delta operations turning `old` into `new` (both whole images, multiples of 4096 bytes),
/// leaving out the `skip` blocks, which the device computes itself.
pub fn delta(
    old: &[u8],
    new: &[u8],
    skip: &[Extent],
    compressors: Compressors,
) -> Result<Vec<GeneratedOp>> {
    delta_with(old, new, skip, compressors, true)
}

/// [`delta`], with PUFFDIFF tried for changed blocks holding deflate data only if `puffdiff`
/// (off, it measures what PUFFDIFF saves).
pub fn delta_with(
    old: &[u8],
    new: &[u8],
    skip: &[Extent],
    compressors: Compressors,
    puffdiff: bool,
) -> Result<Vec<GeneratedOp>> {
    let mut kinds = classify(old, new);
    for e in skip {
        let range = e.start_block as usize..(e.end_block() as usize).min(kinds.len());
        kinds
            .get_mut(range)
            .into_iter()
            .flatten()
            .for_each(|k| *k = BlockKind::Skip);
    }
    let mut ops = Vec::new();
    let mut i = 0usize;
    while i < kinds.len() {
        let run_end = run_end(&kinds, i);
        let (start, end) = (i as u64, run_end as u64);
        match kinds[i] {
            BlockKind::Zero => ops.push(GeneratedOp {
                kind: OpKind::Zero,
                blob: vec![],
                src_extents: vec![],
                dst_extents: vec![Extent {
                    start_block: start,
                    num_blocks: end - start,
                }],
                src_sha256: None,
            }),
            BlockKind::Copy(src) => {
                let src_extent = Extent {
                    start_block: src,
                    num_blocks: end - start,
                };
                ops.push(GeneratedOp {
                    kind: OpKind::SourceCopy,
                    blob: vec![],
                    src_sha256: Some(sha256(
                        &old[src as usize * BS..(src + end - start) as usize * BS],
                    )),
                    src_extents: vec![src_extent],
                    dst_extents: vec![Extent {
                        start_block: start,
                        num_blocks: end - start,
                    }],
                })
            }
            BlockKind::Changed => ops.push(changed(old, new, start, end, compressors, puffdiff)?),
            BlockKind::Skip => {}
        }
        i = run_end;
    }
    Ok(ops)
}

fn classify(old: &[u8], new: &[u8]) -> Vec<BlockKind> {
    let old_blocks: HashMap<&[u8], u64> = old
        .chunks_exact(BS)
        .enumerate()
        .rev() // the lowest index wins, so runs stay contiguous
        .map(|(i, b)| (b, i as u64))
        .collect();
    new.chunks_exact(BS)
        .enumerate()
        .map(|(i, block)| {
            if block.iter().all(|&b| b == 0) {
                BlockKind::Zero
            } else if old.get(i * BS..(i + 1) * BS) == Some(block) {
                BlockKind::Copy(i as u64)
            } else if let Some(&j) = old_blocks.get(block) {
                BlockKind::Copy(j)
            } else {
                BlockKind::Changed
            }
        })
        .collect()
}

/// End of the run of blocks starting at `i` that one operation can cover.
fn run_end(kinds: &[BlockKind], i: usize) -> usize {
    let limit = (i + CHUNK_BLOCKS as usize).min(kinds.len());
    let mut j = i + 1;
    while j < limit {
        let same = match (kinds[i], kinds[j]) {
            (BlockKind::Copy(a), BlockKind::Copy(b)) => b == a + (j - i) as u64,
            (a, b) => a == b,
        };
        if !same {
            break;
        }
        j += 1;
    }
    j
}

/// Changed blocks: BROTLI_BSDIFF or PUFFDIFF against the old blocks at the same place,
/// whichever is smallest, if that is smaller than the best REPLACE_*.
fn changed(
    old: &[u8],
    new: &[u8],
    start: u64,
    end: u64,
    compressors: Compressors,
    try_puffdiff: bool,
) -> Result<GeneratedOp> {
    let data = &new[start as usize * BS..end as usize * BS];
    let replace_op = replace(data, start, compressors)?;
    let old_end = (end as usize * BS).min(old.len() / BS * BS);
    if old_end <= start as usize * BS {
        return Ok(replace_op);
    }
    let src = &old[start as usize * BS..old_end];
    let mut best = (OpKind::BrotliBsdiff, crate::bsdiff::make_bsdf2(src, data)?);
    if let Some(puff) = try_puffdiff
        .then(|| puffdiff(src, data))
        .transpose()?
        .flatten()
    {
        if puff.len() < best.1.len() {
            best = (OpKind::Puffdiff, puff);
        }
    }
    if best.1.len() >= replace_op.blob.len() {
        return Ok(replace_op);
    }
    Ok(GeneratedOp {
        kind: best.0,
        blob: best.1,
        src_extents: vec![Extent {
            start_block: start,
            num_blocks: (src.len() / BS) as u64,
        }],
        dst_extents: replace_op.dst_extents,
        src_sha256: Some(sha256(src)),
    })
}

/// A PUFFDIFF patch from `src` to `dst` when `dst` holds deflate data (zip entries, gzip
/// members) that huffs back bit-exactly, as AOSP's generator does for APKs and gzip files.
fn puffdiff(src: &[u8], dst: &[u8]) -> Result<Option<Vec<u8>>> {
    if dst.len() as u64 > crate::puffin::Limits::DEFAULT.max_dst {
        return Ok(None);
    }
    let dst_deflates = crate::puffin::locate::any(dst);
    if dst_deflates.is_empty() {
        return Ok(None);
    }
    let src_deflates = crate::puffin::locate::any(src);
    // Data that only looks like deflate (a failed puff) is bsdiff's to handle, not an error.
    Ok(crate::puffin::make(src, dst, &src_deflates, &dst_deflates).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::operation::{execute, Output};
    use crate::payload::Operation;

    fn run(op: &GeneratedOp, old: &[u8]) -> Vec<u8> {
        let operation = Operation {
            kind: op.kind,
            data_offset: 0,
            data_length: op.blob.len() as u64,
            data_sha256: Some(sha256(&op.blob)),
            src_extents: op.src_extents.clone(),
            src_sha256: op.src_sha256,
            dst_extents: op.dst_extents.clone(),
        };
        let src: Vec<u8> = op
            .src_extents
            .iter()
            .flat_map(|e| {
                old[e.byte_offset() as usize..(e.byte_offset() + e.byte_len()) as usize].to_vec()
            })
            .collect();
        match execute(
            &operation,
            op.blob.clone(),
            op.kind.reads_source().then_some(&src[..]),
        )
        .unwrap()
        {
            Output::Data(d) => d,
            Output::Zeros => vec![0; operation.dst_bytes() as usize],
        }
    }

    #[test]
    fn delta_ops_rebuild_the_new_image() {
        let mut old = vec![0u8; 40 * BS];
        for (i, b) in old.iter_mut().enumerate() {
            *b = (i * 31 / 7) as u8;
        }
        let mut new = old.clone();
        new[5 * BS..6 * BS].fill(0); // zero block
        new[10 * BS + 17] ^= 0xff; // small change: bsdiff
        new.copy_within(20 * BS..22 * BS, 30 * BS); // moved blocks: copy from elsewhere
        let ops = delta(
            &old,
            &new,
            &[],
            Compressors {
                xz: true,
                bzip2: false,
            },
        )
        .unwrap();
        let kinds: Vec<_> = ops.iter().map(|o| o.kind).collect();
        assert!(kinds.contains(&OpKind::Zero), "{kinds:?}");
        assert!(kinds.contains(&OpKind::SourceCopy), "{kinds:?}");
        assert!(kinds.contains(&OpKind::BrotliBsdiff), "{kinds:?}");
        let mut rebuilt = vec![0xeeu8; new.len()];
        for op in &ops {
            let out = run(op, &old);
            let mut at = 0;
            for e in &op.dst_extents {
                let (o, l) = (e.byte_offset() as usize, e.byte_len() as usize);
                rebuilt[o..o + l].copy_from_slice(&out[at..at + l]);
                at += l;
            }
        }
        assert!(rebuilt == new);
    }

    /// An image of zips (deflated entries) and a gzip file, each slightly changed.
    fn zip_image(version: u8) -> Vec<u8> {
        use std::io::Cursor;
        let mut image = Vec::new();
        for z in 0..2u8 {
            let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(zip::DateTime::default());
            for f in 0..3u8 {
                w.start_file(format!("res/{f}.xml"), opts).unwrap();
                // Words picked by a xorshift: compressible like text, not periodic.
                let mut x = u32::from(z) * 16 + u32::from(f) + 1;
                let mut text: Vec<u8> = (0..3000u32)
                    .flat_map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        format!("<item id=\"{}\" z=\"{z}\"/>\n", x % 5000).into_bytes()
                    })
                    .collect();
                text[1000 + usize::from(f)] = b'A' + version;
                w.write_all(&text).unwrap();
            }
            image.extend(w.finish().unwrap().into_inner());
            image.resize(image.len().next_multiple_of(BS), 0);
        }
        image.resize(image.len() + 2 * BS, 0);
        image
    }

    #[test]
    fn deflate_data_gets_puffdiff() {
        let (old, new) = (zip_image(0), zip_image(1));
        let compressors = Compressors {
            xz: true,
            bzip2: false,
        };
        let ops = delta(&old, &new, &[], compressors).unwrap();
        let puff: Vec<_> = ops.iter().filter(|o| o.kind == OpKind::Puffdiff).collect();
        assert!(
            !puff.is_empty(),
            "{:?}",
            ops.iter().map(|o| o.kind).collect::<Vec<_>>()
        );
        let mut rebuilt = vec![0u8; new.len()];
        for op in &ops {
            let out = run(op, &old);
            let mut at = 0;
            for e in &op.dst_extents {
                let (o, l) = (e.byte_offset() as usize, e.byte_len() as usize);
                rebuilt[o..o + l].copy_from_slice(&out[at..at + l]);
                at += l;
            }
        }
        assert!(rebuilt == new);
        let size = |ops: &[GeneratedOp]| ops.iter().map(|o| o.blob.len()).sum::<usize>();
        let without = delta_with(&old, &new, &[], compressors, false).unwrap();
        assert!(
            size(&ops) < size(&without),
            "{} vs {}",
            size(&ops),
            size(&without)
        );
    }

    #[test]
    fn replace_is_never_larger_than_raw() {
        let mut noise = vec![0u8; 2 * BS];
        let mut x = 1u32;
        for b in &mut noise {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        let op = replace(
            &noise,
            0,
            Compressors {
                xz: true,
                bzip2: true,
            },
        )
        .unwrap();
        assert_eq!(op.kind, OpKind::Replace);
        let op = replace(
            &[7u8; 2 * BS],
            0,
            Compressors {
                xz: true,
                bzip2: true,
            },
        )
        .unwrap();
        assert_ne!(op.kind, OpKind::Replace);
        assert!(op.blob.len() < 2 * BS);
    }
}
