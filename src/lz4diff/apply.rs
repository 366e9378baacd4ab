//! Applying an LZ4DIFF patch: decompress the source clusters, apply the inner patch,
//! recompress the destination clusters (update_engine's `Lz4Patch`).

use super::header::{Algorithm, Block, CompressionInfo, Inner, Patch};
use crate::error::Result;
use crate::{bail, err};

/// Sizes a patch may not exceed, whatever it claims.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest decompressed file, source or destination.
    pub max_decompressed: u64,
}

impl Limits {
    /// 512 MiB per decompressed side (update_engine sets none; its generator diffs one
    /// EROFS file per operation). Memory is the source, the two decompressed files and the
    /// destination.
    pub const DEFAULT: Limits = Limits {
        max_decompressed: 512 << 20,
    };
}

/// Farthest an LZ4 block can expand: a match costs at least one byte per 255 it copies.
fn max_expansion(compressed: u64) -> u64 {
    compressed.saturating_mul(256).saturating_add(64)
}

/// EROFS's zero padding is at most one 4 KiB block before the data.
const MAX_PADDING: usize = 4096;

/// The decompressed file `data` holds in the clusters `info` describes
/// (update_engine's `TryDecompressBlob`). `data` must be exactly the clusters.
pub fn decompress(data: &[u8], info: &CompressionInfo, limits: Limits) -> Result<Vec<u8>> {
    if info.blocks.is_empty() {
        bail!(MalformedPayload, "lz4diff source without clusters");
    }
    if info.compressed_len() != data.len() as u64 {
        bail!(
            MalformedPayload,
            "lz4diff clusters hold {} bytes, the extents {}",
            info.compressed_len(),
            data.len()
        );
    }
    let total = info.uncompressed_len();
    if total > limits.max_decompressed {
        bail!(
            MalformedPayload,
            "lz4diff file of {total} bytes is over the {}-byte limit",
            limits.max_decompressed
        );
    }
    for b in &info.blocks {
        if b.is_compressed() && b.uncompressed_length > max_expansion(b.compressed_length) {
            bail!(
                MalformedPayload,
                "lz4diff cluster of {} bytes claims {} decompressed",
                b.compressed_length,
                b.uncompressed_length
            );
        }
        if !b.is_compressed() && b.compressed_length != b.uncompressed_length {
            bail!(MalformedPayload, "lz4diff stored cluster changes length");
        }
    }
    // Bounded by the checks above: the limit, and what the clusters can really expand to.
    let mut out = Vec::with_capacity(total as usize);
    let mut at = 0usize;
    for b in &info.blocks {
        let len = b.compressed_length as usize;
        let cluster = &data[at..at + len];
        at += len;
        if !b.is_compressed() {
            out.extend_from_slice(cluster);
            continue;
        }
        let mut margin = 0;
        if info.zero_padding {
            let limit = cluster.len().min(MAX_PADDING);
            while margin < limit && cluster[margin] == 0 {
                margin += 1;
            }
        }
        let plain =
            crate::lz4::decompress_partial(&cluster[margin..], b.uncompressed_length as usize)
                .ok_or_else(|| {
                    err!(
                        MalformedPayload,
                        "lz4diff cluster at {} does not decompress to {} bytes",
                        b.uncompressed_offset,
                        b.uncompressed_length
                    )
                })?;
        out.extend_from_slice(&plain);
    }
    Ok(out)
}

/// The clusters of `data` as `info` lays them out, each compressed from its offset onwards
/// into exactly its compressed length, then any bytes past the clusters as they are
/// (update_engine's `TryCompressBlob`, with the postfix patches of `Lz4Patch`).
pub fn compress(data: &[u8], info: &CompressionInfo) -> Result<Vec<u8>> {
    let clustered = usize::try_from(info.uncompressed_len())
        .map_err(|_| err!(MalformedPayload, "lz4diff file too large"))?;
    let Some(trailing) = data.get(clustered..) else {
        bail!(
            MalformedPayload,
            "lz4diff destination of {} bytes, clusters describe {clustered}",
            data.len()
        );
    };
    let fixups = info.blocks.iter().any(|b| !b.postfix_bspatch.is_empty());
    let stored = usize::try_from(info.compressed_len())
        .map_err(|_| err!(MalformedPayload, "lz4diff file too large"))?;
    let mut out = Vec::with_capacity(stored.saturating_add(trailing.len()));
    for b in &info.blocks {
        let start = b.uncompressed_offset as usize;
        let cluster = if b.is_compressed() {
            recompress(&data[start..clustered], b, info)?
        } else {
            data[start..start + b.uncompressed_length as usize].to_vec()
        };
        if fixups {
            out.extend_from_slice(&fix_up(cluster, b)?);
        } else {
            out.extend_from_slice(&cluster);
        }
    }
    out.extend_from_slice(trailing);
    Ok(out)
}

/// One compressed cluster: liblz4 fills `compressed_length` bytes from `rest` (the file
/// from the cluster's offset to the end of the clusters), then zeros pad it.
fn recompress(rest: &[u8], b: &Block, info: &CompressionInfo) -> Result<Vec<u8>> {
    let target = b.compressed_length as usize;
    let block = match info.algorithm {
        Algorithm::Lz4 => crate::lz4::compress_dest_size(rest, target),
        Algorithm::Lz4hc(level) => crate::lz4::compress_hc_dest_size(rest, target, level),
        Algorithm::Uncompressed => {
            bail!(
                MalformedPayload,
                "lz4diff compressed cluster without an algorithm"
            )
        }
    };
    let Some((mut block, _)) = block else {
        bail!(
            MalformedPayload,
            "lz4diff cluster at {} does not compress into {target} bytes",
            b.uncompressed_offset
        );
    };
    let pad = target - block.len();
    if info.zero_padding {
        let mut padded = vec![0u8; pad];
        padded.append(&mut block);
        Ok(padded)
    } else {
        block.resize(target, 0);
        Ok(block)
    }
}

/// A cluster through its postfix patch, if it has one, after checking the hash.
fn fix_up(cluster: Vec<u8>, b: &Block) -> Result<Vec<u8>> {
    if cluster.len() as u64 != b.compressed_length {
        bail!(MalformedPayload, "lz4diff stored cluster changes length");
    }
    if b.postfix_bspatch.is_empty() {
        return Ok(cluster);
    }
    if let Some(want) = b.sha256 {
        if ring::digest::digest(&ring::digest::SHA256, &cluster).as_ref() != want {
            bail!(
                PayloadHash,
                "recompressed lz4diff cluster at {} does not match its hash: this liblz4 \
                 compresses differently from the generator's",
                b.uncompressed_offset
            );
        }
    }
    crate::bsdiff::apply(&cluster, &b.postfix_bspatch, cluster.len())
}

/// Applies an LZ4DIFF patch to `src` (the operation's source extents), producing exactly
/// `dst_len` bytes. MalformedPayload (21) on a malformed or hostile patch, PayloadHash (24)
/// where a recompressed cluster's hash is wrong.
pub fn apply(src: &[u8], blob: &[u8], dst_len: usize, limits: Limits) -> Result<Vec<u8>> {
    let patch = Patch::parse(blob)?;
    // The destination is the clusters and then the rest of the decompressed file, as is.
    let stored = patch.dst.compressed_len();
    let clustered = patch.dst.uncompressed_len();
    let Some(plain_len) = (dst_len as u64)
        .checked_sub(stored)
        .and_then(|trailing| trailing.checked_add(clustered))
    else {
        bail!(
            MalformedPayload,
            "lz4diff clusters of {stored} bytes for a {dst_len}-byte destination"
        );
    };
    if plain_len > limits.max_decompressed {
        bail!(
            MalformedPayload,
            "lz4diff file of {plain_len} bytes is over the {}-byte limit",
            limits.max_decompressed
        );
    }
    for b in &patch.dst.blocks {
        if b.is_compressed() && b.uncompressed_length > max_expansion(b.compressed_length) {
            bail!(
                MalformedPayload,
                "lz4diff destination cluster expands too far"
            );
        }
    }
    let old = decompress(src, &patch.src, limits)?;
    let new = match patch.inner {
        Inner::Bsdiff => crate::bsdiff::apply(&old, patch.data, plain_len as usize)?,
        Inner::Puffdiff => crate::puffin::apply(
            &old,
            patch.data,
            plain_len as usize,
            crate::puffin::Limits::DEFAULT,
        )?,
    };
    drop(old);
    let out = compress(&new, &patch.dst)?;
    if out.len() != dst_len {
        bail!(
            MalformedPayload,
            "lz4diff produced {} bytes for a {dst_len}-byte destination",
            out.len()
        );
    }
    Ok(out)
}
