//! PUFFDIFF patches: `PUF1`, a big-endian u32 header length, a `PatchHeader` protobuf, then
//! the inner patch: BSDF2, or in puffin's zucchini variant (which update_engine never makes
//! but applies) brotli of a Zucchini patch, applied by [`crate::zucchini`].

use protobuf::Message;

use super::proto::puffin as pb;
use super::puff::BitExtent;
#[cfg(feature = "host-tools")]
use super::stream::stream_info;
use super::stream::{huff_stream, puff_stream, ByteExtent, StreamInfo};
use crate::error::Result;
use crate::{bail, err};

/// The patch's first four bytes.
pub const MAGIC: &[u8; 4] = b"PUF1";

/// Largest header accepted. Decoding a header costs up to ~32x its size (each 2-byte empty
/// extent becomes a message); real ones hold two small extents per deflate block, some
/// hundred KiB for a 150 MiB APK.
const MAX_HEADER: usize = 4 << 20;

/// Sizes a patch may not exceed, whatever it claims.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest destination: AOSP's generator makes no PUFFDIFF for a file over 150 MiB.
    pub max_dst: u64,
    /// Largest puffed stream, source or destination.
    pub max_puff: u64,
}

impl Limits {
    /// 150 MiB destinations (AOSP's `kMaxPuffdiffDestinationSize`); puffed streams up to
    /// 512 MiB. Memory is what the source, destination and the puffs actually produced take,
    /// never a claimed size.
    pub const DEFAULT: Limits = Limits {
        max_dst: 150 << 20,
        max_puff: 512 << 20,
    };
}

/// The algorithm of a patch's inner patch (`PatchHeader.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// A BSDF2 patch.
    Bsdiff,
    /// Brotli of a Zucchini ensemble patch.
    Zucchini,
}

/// A parsed patch: its two stream descriptions and the inner patch.
#[derive(Debug)]
pub struct Patch<'a> {
    /// The source's deflate and puff layout.
    pub src: StreamInfo,
    /// The destination's deflate and puff layout.
    pub dst: StreamInfo,
    /// How `data` patches the puffed source into the puffed destination.
    pub inner: Inner,
    /// The inner patch.
    pub data: &'a [u8],
}

impl<'a> Patch<'a> {
    /// Parses the container and header. Fails with MalformedPayload on anything malformed.
    pub fn parse(patch: &'a [u8]) -> Result<Self> {
        let Some((magic, rest)) = patch.split_first_chunk::<4>() else {
            bail!(MalformedPayload, "puffin patch too short");
        };
        if magic != MAGIC {
            bail!(MalformedPayload, "not a puffin patch (magic {magic:02x?})");
        }
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            bail!(MalformedPayload, "puffin patch too short");
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > rest.len() || len > MAX_HEADER {
            bail!(
                MalformedPayload,
                "puffin header of {len} bytes (patch {} bytes, limit {MAX_HEADER})",
                patch.len()
            );
        }
        let (header, data) = rest.split_at(len);
        let header = pb::PatchHeader::parse_from_bytes(header)
            .map_err(|e| err!(MalformedPayload, "puffin header: {e}"))?;
        let inner = match header.type_.enum_value() {
            Ok(pb::patch_header::PatchType::BSDIFF) => Inner::Bsdiff,
            Ok(pb::patch_header::PatchType::ZUCCHINI) => Inner::Zucchini,
            Err(t) => bail!(MalformedPayload, "puffin patch type {t}"),
        };
        Ok(Patch {
            src: from_proto(header.src.as_ref())?,
            dst: from_proto(header.dst.as_ref())?,
            inner,
            data,
        })
    }
}

fn from_proto(info: Option<&pb::StreamInfo>) -> Result<StreamInfo> {
    let Some(info) = info else {
        return Ok(StreamInfo::default());
    };
    let mut puffs = Vec::with_capacity(info.puffs.len());
    for p in &info.puffs {
        // Puffs are recorded in bits but are whole bytes; puffin divides by 8.
        if p.offset % 8 != 0 || p.length % 8 != 0 {
            bail!(MalformedPayload, "puff extent not in whole bytes");
        }
        puffs.push(ByteExtent {
            offset: p.offset / 8,
            length: p.length / 8,
        });
    }
    Ok(StreamInfo {
        deflates: info
            .deflates
            .iter()
            .map(|d| BitExtent {
                offset: d.offset,
                length: d.length,
            })
            .collect(),
        puffs,
        puff_length: info.puff_length,
    })
}

fn to_proto(info: &StreamInfo) -> pb::StreamInfo {
    let ext = |offset, length| {
        let mut e = pb::BitExtent::new();
        e.offset = offset;
        e.length = length;
        e
    };
    let mut out = pb::StreamInfo::new();
    out.deflates = info
        .deflates
        .iter()
        .map(|d| ext(d.offset, d.length))
        .collect();
    out.puffs = info
        .puffs
        .iter()
        .map(|p| ext(p.offset * 8, p.length * 8))
        .collect();
    out.puff_length = info.puff_length;
    out
}

/// Applies a PUFFDIFF patch to `src`, producing exactly `dst_len` bytes: puff the source,
/// patch the puffed source into the puffed destination (bspatch, or Zucchini), huff that.
pub fn apply(src: &[u8], patch: &[u8], dst_len: usize, limits: Limits) -> Result<Vec<u8>> {
    if dst_len as u64 > limits.max_dst {
        bail!(
            MalformedPayload,
            "PUFFDIFF destination of {dst_len} bytes is over the {}-byte limit",
            limits.max_dst
        );
    }
    let patch = Patch::parse(patch)?;
    // Both sides are checked before any work, so a bad destination costs no puffing.
    for info in [&patch.src, &patch.dst] {
        if info.puff_length > limits.max_puff {
            bail!(
                MalformedPayload,
                "puffed stream of {} bytes is over the {}-byte limit",
                info.puff_length,
                limits.max_puff
            );
        }
    }
    let src_puff = puff_stream(src, &patch.src, limits.max_puff)?;
    let dst_puff_len = usize::try_from(patch.dst.puff_length)
        .map_err(|_| err!(MalformedPayload, "puffed destination too large"))?;
    let dst_puff = match patch.inner {
        Inner::Bsdiff => crate::bsdiff::apply(&src_puff, patch.data, dst_puff_len)?,
        // The Zucchini patch is for the puffed streams, sized as the header says.
        Inner::Zucchini => crate::zucchini::apply_op(&src_puff, patch.data, dst_puff_len)?,
    };
    drop(src_puff);
    huff_stream(&dst_puff, &patch.dst, dst_len)
}

/// Encodes a patch: the container around `bsdiff` (made between the two puffed streams).
pub fn encode(src: &StreamInfo, dst: &StreamInfo, bsdiff: &[u8]) -> Result<Vec<u8>> {
    let mut header = pb::PatchHeader::new();
    header.version = 1;
    header.src = Some(to_proto(src)).into();
    header.dst = Some(to_proto(dst)).into();
    let header = header
        .write_to_bytes()
        .map_err(|e| err!(InstallFailed, "puffin header: {e}"))?;
    let len =
        u32::try_from(header.len()).map_err(|_| err!(InstallFailed, "puffin header too large"))?;
    let mut out = Vec::with_capacity(8 + header.len() + bsdiff.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(bsdiff);
    Ok(out)
}

/// Makes a PUFFDIFF patch from `src` to `dst` given their deflate blocks (see
/// [`super::locate`]). Destination blocks that would not huff back bit-exactly (see
/// [`super::locate::round_trips`]) are left to the bsdiff as plain bytes. A host tool (the
/// payload builder's), like the bsdiff encoder it uses.
#[cfg(feature = "host-tools")]
pub fn make(
    src: &[u8],
    dst: &[u8],
    src_deflates: &[BitExtent],
    dst_deflates: &[BitExtent],
) -> Result<Vec<u8>> {
    let dst_deflates: Vec<BitExtent> = dst_deflates
        .iter()
        .copied()
        .filter(|&d| super::locate::round_trips(dst, d))
        .collect();
    let src_info = stream_info(src, src_deflates)?;
    let dst_info = stream_info(dst, &dst_deflates)?;
    let src_puff = puff_stream(src, &src_info, u64::MAX)?;
    let dst_puff = puff_stream(dst, &dst_info, u64::MAX)?;
    let bsdiff = crate::bsdiff::make_bsdf2(&src_puff, &dst_puff)?;
    encode(&src_info, &dst_info, &bsdiff)
}
