//! Reading a Zucchini ensemble patch: the 24-byte header (`Zucc`, versions, old and new sizes
//! and CRC-32s), the element count, and per element a 22-byte header and its streams, each a
//! little-endian u32 length and that many bytes: equivalences (source skips, destination skips,
//! copy counts), extra data, raw delta (skips, byte diffs), reference delta, then a u32 count of
//! extra-target pools (a tag byte and a stream each).
//!
//! Validation follows Chromium's `patch_reader.cc`, which AOSP's `EnsemblePatchReader` is:
//! elements lie inside the images and cover the new image in order, equivalences lie inside
//! their element with destinations in order, and the extra data is exactly what they leave
//! uncovered. Streams are borrowed slices of the patch: nothing is sized by a claimed length.

use std::ops::Range;

use crate::error::Result;
use crate::{bail, err};

/// The patch magic, `Zucc` read as a little-endian u32.
pub const MAGIC: &[u8; 4] = b"Zucc";
/// The only patch major version Zucchini reads.
const MAJOR_VERSION: u16 = 1;
/// The version every disassembler AOSP builds (no-op, ELF, DEX) writes into its elements.
const ELEMENT_VERSION: u16 = 1;
/// The pool tag no reference group uses.
const NO_POOL_TAG: u8 = 0xff;

/// What an element holds, hence which disassembler corrects its references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExeType {
    /// Raw data (`NoOp`): equivalences, extra data and raw delta only.
    NoOp,
    /// An executable type AOSP's zucchini knows (`Ex86`, `Ex64`, `EA32`, `EA64`, `DEX `, and
    /// the Windows and ZTF ones AOSP does not build), as its 4-character tag.
    Executable([u8; 4]),
}

impl ExeType {
    fn from_tag(tag: [u8; 4]) -> Option<Self> {
        match &tag {
            b"NoOp" => Some(Self::NoOp),
            b"Px86" | b"Px64" | b"Ex86" | b"Ex64" | b"EA32" | b"EA64" | b"DEX " | b"ZTF " => {
                Some(Self::Executable(tag))
            }
            _ => None,
        }
    }
}

/// The ensemble header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Size of the old image the patch applies to.
    pub old_size: u32,
    /// CRC-32 (IEEE) of the old image.
    pub old_crc: u32,
    /// Size of the image the patch makes.
    pub new_size: u32,
    /// CRC-32 (IEEE) of the new image.
    pub new_crc: u32,
}

/// One element: a region of the old image patched into a region of the new one.
#[derive(Clone, Debug)]
pub struct Element<'a> {
    /// The element's kind.
    pub exe_type: ExeType,
    /// Where the element lies in the old image.
    pub old: Range<usize>,
    /// Where the element lies in the new image.
    pub new: Range<usize>,
    pub(super) equivalences: Equivalences<'a>,
    pub(super) extra_data: &'a [u8],
    pub(super) raw_delta: RawDelta<'a>,
    pub(super) reference_delta: &'a [u8],
    /// Per pool tag, the extra targets stream (targets the new element's references point to
    /// that no old reference's target projects to).
    pub(super) extra_targets: Vec<(u8, &'a [u8])>,
}

/// A parsed, validated patch, borrowing its streams from the patch bytes.
#[derive(Clone, Debug)]
pub struct Patch<'a> {
    /// The ensemble header.
    pub header: Header,
    /// The elements, covering the new image in order.
    pub elements: Vec<Element<'a>>,
}

/// Little-endian fixed-size reads from a shrinking slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.0.len() {
            bail!(
                MalformedPayload,
                "zucchini: {what} of {n} bytes past the patch end"
            );
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        self.array(what).map(u16::from_le_bytes)
    }

    /// A stream: its u32 length, then its bytes.
    fn stream(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = self.u32(what)?;
        self.take(len as usize, what)
    }
}

/// Reads an unsigned LEB128 varint as Zucchini does: at most 5 bytes for a u32, bits past the
/// 32nd of the fifth byte dropped; `None` when the stream ends or a sixth byte would be needed.
pub(super) fn var_u32(stream: &mut &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for (i, &b) in stream.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *stream = &stream[i + 1..];
            return Some(value);
        }
    }
    None
}

/// A signed varint: zigzag, with the sign in bit 0 and `!value` stored for negatives.
pub(super) fn var_i32(stream: &mut &[u8]) -> Option<i32> {
    let raw = var_u32(stream)?;
    // The shifted value fits 31 bits, so the cast keeps it.
    let magnitude = (raw >> 1) as i32;
    Some(if raw & 1 == 1 { !magnitude } else { magnitude })
}

/// One block of the new element copied (before the raw delta) from the old element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Equivalence {
    pub src: u32,
    pub dst: u32,
    pub len: u32,
}

/// The equivalence streams, decoded lazily as AOSP's `EquivalenceSource` does.
#[derive(Clone, Debug)]
pub(super) struct Equivalences<'a> {
    src_skip: &'a [u8],
    dst_skip: &'a [u8],
    copy_count: &'a [u8],
    prev_src: u32,
    prev_dst: u32,
}

impl<'a> Equivalences<'a> {
    /// The next equivalence, `None` when a stream is empty or malformed (as AOSP's `GetNext`);
    /// [`Self::done`] tells the two apart.
    pub fn next(&mut self) -> Option<Equivalence> {
        if self.src_skip.is_empty() || self.dst_skip.is_empty() || self.copy_count.is_empty() {
            return None;
        }
        let len = var_u32(&mut self.copy_count)?;
        let src_diff = var_i32(&mut self.src_skip)?;
        let src = self.prev_src.checked_add_signed(src_diff)?;
        self.prev_src = src.checked_add(len)?;
        let dst_diff = var_u32(&mut self.dst_skip)?;
        let dst = self.prev_dst.checked_add(dst_diff)?;
        self.prev_dst = dst.checked_add(len)?;
        Some(Equivalence { src, dst, len })
    }

    /// Whether every stream is consumed.
    pub fn done(&self) -> bool {
        self.src_skip.is_empty() && self.dst_skip.is_empty() && self.copy_count.is_empty()
    }
}

/// One raw-delta byte fix: `diff` added to the byte at `copy_offset` of the concatenated
/// equivalence copies.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawDeltaUnit {
    pub copy_offset: u32,
    pub diff: i8,
}

/// The raw-delta streams, decoded lazily as AOSP's `RawDeltaSource` does.
#[derive(Clone, Debug)]
pub(super) struct RawDelta<'a> {
    skip: &'a [u8],
    diff: &'a [u8],
    compensation: u32,
}

impl<'a> RawDelta<'a> {
    /// The next fix, `None` at the end or on malformed data ([`Self::done`] tells).
    pub fn next(&mut self) -> Option<RawDeltaUnit> {
        if self.skip.is_empty() || self.diff.is_empty() {
            return None;
        }
        let skip = var_u32(&mut self.skip)?;
        let copy_offset = skip.checked_add(self.compensation)?;
        let (&diff, rest) = self.diff.split_first()?;
        self.diff = rest;
        // A zero diff means nothing; AOSP refuses it.
        if diff == 0 {
            return None;
        }
        // Offsets are delta-coded with a bias of one.
        self.compensation = copy_offset.checked_add(1)?;
        Some(RawDeltaUnit {
            copy_offset,
            diff: i8::from_le_bytes([diff]),
        })
    }

    /// Whether both streams are consumed.
    pub fn done(&self) -> bool {
        self.skip.is_empty() && self.diff.is_empty()
    }
}

impl<'a> Patch<'a> {
    /// Parses and validates a (decompressed) ensemble patch. Malformed patches fail with
    /// MalformedPayload; element types are checked by [`super::apply`].
    pub fn parse(patch: &'a [u8]) -> Result<Self> {
        let mut r = Reader(patch);
        if r.array::<4>("magic")? != *MAGIC {
            bail!(MalformedPayload, "not a zucchini patch");
        }
        let major = r.u16("header")?;
        let _minor = r.u16("header")?;
        if major != MAJOR_VERSION {
            bail!(
                MalformedPayload,
                "zucchini patch major version {major} (this reads {MAJOR_VERSION})"
            );
        }
        let header = Header {
            old_size: r.u32("header")?,
            old_crc: r.u32("header")?,
            new_size: r.u32("header")?,
            new_crc: r.u32("header")?,
        };
        let count = r.u32("element count")?;
        let mut elements = Vec::new();
        let mut covered = 0usize;
        for _ in 0..count {
            let element = element(&mut r)?;
            if element.old.end > header.old_size as usize
                || element.new.end > header.new_size as usize
                || element.new.start != covered
            {
                bail!(MalformedPayload, "zucchini element out of place");
            }
            covered = element.new.end;
            elements.push(element);
        }
        if covered != header.new_size as usize {
            bail!(
                MalformedPayload,
                "zucchini elements do not cover the new image"
            );
        }
        if !r.0.is_empty() {
            bail!(MalformedPayload, "zucchini patch has trailing data");
        }
        Ok(Patch { header, elements })
    }
}

fn element<'a>(r: &mut Reader<'a>) -> Result<Element<'a>> {
    let [old_offset, old_len, new_offset, new_len] = [(); 4].map(|()| r.u32("element header"));
    let (old_offset, old_len, new_offset, new_len) = (old_offset?, old_len?, new_offset?, new_len?);
    let tag = r.array::<4>("element header")?;
    let version = r.u16("element header")?;
    let exe_type = ExeType::from_tag(tag)
        .ok_or_else(|| err!(MalformedPayload, "zucchini element type {tag:02x?}"))?;
    if version != ELEMENT_VERSION {
        bail!(
            MalformedPayload,
            "zucchini element version {version} (expected {ELEMENT_VERSION})"
        );
    }
    if old_len == 0 || new_len == 0 {
        bail!(MalformedPayload, "empty zucchini element");
    }
    let range = |offset: u32, len: u32| {
        let start = offset as usize;
        start
            .checked_add(len as usize)
            .map(|end| start..end)
            .ok_or_else(|| err!(MalformedPayload, "zucchini element past 4 GiB"))
    };
    let equivalences = Equivalences {
        src_skip: r.stream("source skips")?,
        dst_skip: r.stream("destination skips")?,
        copy_count: r.stream("copy counts")?,
        prev_src: 0,
        prev_dst: 0,
    };
    let extra_data = r.stream("extra data")?;
    let raw_delta = RawDelta {
        skip: r.stream("raw delta skips")?,
        diff: r.stream("raw delta diffs")?,
        compensation: 0,
    };
    let mut element = Element {
        exe_type,
        old: range(old_offset, old_len)?,
        new: range(new_offset, new_len)?,
        equivalences,
        extra_data,
        raw_delta,
        reference_delta: r.stream("reference delta")?,
        extra_targets: Vec::new(),
    };
    validate(&element)?;
    let pools = r.u32("pool count")?;
    let mut seen = [false; 256];
    for _ in 0..pools {
        let [pool] = r.array::<1>("pool tag")?;
        if pool == NO_POOL_TAG || std::mem::replace(&mut seen[usize::from(pool)], true) {
            bail!(
                MalformedPayload,
                "zucchini pool tag {pool} invalid or repeated"
            );
        }
        element
            .extra_targets
            .push((pool, r.stream("extra targets")?));
    }
    Ok(element)
}

/// AOSP's `ValidateEquivalencesAndExtraData`: equivalences inside the element with their
/// destinations in order, and exactly the uncovered bytes as extra data. (As in AOSP, a
/// malformed equivalence stream ends the walk here and fails at apply.)
fn validate(element: &Element) -> Result<()> {
    let (old_len, new_len) = (element.old.len(), element.new.len());
    let mut equivalences = element.equivalences.clone();
    let mut total = 0u32;
    let mut prev_dst_end = 0u32;
    while let Some(eq) = equivalences.next() {
        // AOSP's `RangeIsBounded`: the start strictly inside, even for an empty block.
        let fits = |start: u32, size: usize| {
            (start as usize) < size && size - start as usize >= eq.len as usize
        };
        if !fits(eq.src, old_len) || !fits(eq.dst, new_len) {
            bail!(MalformedPayload, "zucchini equivalence outside its element");
        }
        // In bounds of a u32-sized element, so the sum does not wrap.
        let dst_end = eq.dst.wrapping_add(eq.len);
        if prev_dst_end > dst_end {
            bail!(MalformedPayload, "zucchini equivalences out of order");
        }
        prev_dst_end = dst_end;
        total = total
            .checked_add(eq.len)
            .ok_or_else(|| err!(MalformedPayload, "zucchini equivalences overflow"))?;
    }
    if new_len.checked_sub(total as usize) != Some(element.extra_data.len()) {
        bail!(MalformedPayload, "zucchini extra data of the wrong size");
    }
    Ok(())
}
