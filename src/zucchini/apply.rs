//! Applying a parsed patch, as Chromium's `zucchini_apply.cc` does: each new element is its
//! extra data interleaved with the old bytes its equivalences copy, then the raw delta adds
//! byte diffs into the copies; for an executable element the disassembler of its type then
//! corrects the references the copies carry ([`super::references`]). A patch holding an
//! element type this build has no disassembler for (Windows, ZTF) is refused with
//! Unsupported before any output exists.

use std::io::Read;

use super::dex::Dex;
use super::elf::{Arch, Elf};
use super::patch::{Element, ExeType, Patch};
use super::references::{self, SortOrder};
use crate::decompress::{Codec, Decompressors, Default as Backend};
use crate::error::{Error, Result};
use crate::{bail, err};

/// Applies a ZUCCHINI operation's blob, brotli of an ensemble patch, to `source` (the
/// operation's source extents): the output is the `dst_len` bytes of its destination extents.
///
/// Memory: the source, the output, and the decompressed patch, which may not exceed four times
/// the destination plus 1 MiB (a generator's patch holds at most the destination's bytes as
/// extra data, a few bytes per equivalence and per changed byte; one larger than that is not a
/// delta), so a brotli bomb stops at that cap. The output is sized by `dst_len`, never by the
/// patch.
pub fn apply_op(source: &[u8], blob: &[u8], dst_len: usize) -> Result<Vec<u8>> {
    let cap = dst_len.saturating_mul(4).saturating_add(1 << 20);
    let mut reader = Backend::reader(Codec::Brotli, blob)
        .map_err(|e| err!(MalformedPayload, "zucchini: brotli: {e}"))?;
    let mut patch = Vec::new();
    (&mut reader)
        .take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut patch)
        .map_err(|e| err!(MalformedPayload, "zucchini: brotli: {e}"))?;
    if patch.len() > cap {
        bail!(
            MalformedPayload,
            "zucchini patch decompresses past {cap} bytes for a {dst_len}-byte destination"
        );
    }
    let patch = Patch::parse(&patch)?;
    // update_engine: the patch makes exactly the destination extents' bytes.
    if patch.header.new_size as usize != dst_len {
        bail!(
            MalformedPayload,
            "zucchini patch makes {} bytes for a {dst_len}-byte destination",
            patch.header.new_size
        );
    }
    apply(source, &patch)
}

/// Applies a parsed patch to `old`. Fails with Unsupported for an element that needs a
/// disassembler, SourceHash when `old` is not the image the patch was made from (size or
/// CRC-32), MalformedPayload for streams that do not fit, and PayloadHash when the result's
/// CRC-32 is not the one the patch recorded. The output is `header.new_size` bytes: callers
/// bound it ([`apply_op`] checks it against the destination).
///
/// The patch does not say which C++ library's `std::sort` its generator broke equal-source
/// ties with: this tries libc++'s order (AOSP's clang builds), and only when that fails and
/// some executable element's ties prune differently in libstdc++'s order (g++ builds) redoes
/// the patch in that order, into the same buffer; its outcome is then the result.
pub fn apply(old: &[u8], patch: &Patch) -> Result<Vec<u8>> {
    check(old, patch)?;
    let mut new = vec![0; patch.header.new_size as usize];
    let first = build(old, patch, SortOrder::Libcxx, &mut new);
    if first.is_ok() && crc32fast::hash(&new) == patch.header.new_crc {
        return Ok(new);
    }
    let executable = |e: &&Element| disassembler(e.exe_type).is_some();
    if !patch
        .elements
        .iter()
        .filter(executable)
        .any(references::orders_differ)
    {
        first?;
        return Err(crc_mismatch());
    }
    build(old, patch, SortOrder::Libstdcxx, &mut new)?;
    verify(patch, new)
}

/// [`apply`] with equal-source equivalences in `order` only, no fallback.
pub fn apply_in_order(old: &[u8], patch: &Patch, order: SortOrder) -> Result<Vec<u8>> {
    check(old, patch)?;
    let mut new = vec![0; patch.header.new_size as usize];
    build(old, patch, order, &mut new)?;
    verify(patch, new)
}

/// Refuses a patch this build cannot apply or whose source is not `old`.
fn check(old: &[u8], patch: &Patch) -> Result<()> {
    if let Some(ExeType::Executable(tag)) = patch
        .elements
        .iter()
        .map(|e| e.exe_type)
        .find(|t| *t != ExeType::NoOp && disassembler(*t).is_none())
    {
        bail!(
            Unsupported,
            "zucchini element type {:?} needs a disassembler this build lacks",
            String::from_utf8_lossy(&tag)
        );
    }
    let header = &patch.header;
    if old.len() != header.old_size as usize || crc32fast::hash(old) != header.old_crc {
        bail!(
            SourceHash,
            "zucchini: the source is not the image the patch was made from"
        );
    }
    Ok(())
}

/// Writes every element of the patch into `new` (`header.new_size` bytes).
fn build(old: &[u8], patch: &Patch, order: SortOrder, new: &mut [u8]) -> Result<()> {
    for element in &patch.elements {
        let (Some(old_part), Some(new_part)) = (
            old.get(element.old.clone()),
            new.get_mut(element.new.clone()),
        ) else {
            bail!(MalformedPayload, "zucchini element outside the images");
        };
        copy_and_extra(old_part, element, new_part)?;
        raw_delta(element, new_part)?;
        match disassembler(element.exe_type) {
            Some(Kind::Elf(arch)) => correct_elf(arch, element, old_part, new_part, order)?,
            Some(Kind::Dex) => correct_dex(element, old_part, new_part, order)?,
            // The no-op disassembler has no references: nothing may be left to correct.
            None if !element.reference_delta.is_empty() => bail!(
                MalformedPayload,
                "zucchini reference delta in a raw element"
            ),
            None => {}
        }
    }
    Ok(())
}

/// `new` if its CRC-32 is the patch's.
fn verify(patch: &Patch, new: Vec<u8>) -> Result<Vec<u8>> {
    if crc32fast::hash(&new) != patch.header.new_crc {
        return Err(crc_mismatch());
    }
    Ok(new)
}

fn crc_mismatch() -> Error {
    err!(
        PayloadHash,
        "zucchini: the patched image does not match the patch's CRC-32"
    )
}

/// The disassemblers this build has.
enum Kind {
    Elf(Arch),
    Dex,
}

/// The disassembler of an executable element type, if this build has it.
fn disassembler(exe_type: ExeType) -> Option<Kind> {
    match exe_type {
        ExeType::Executable(tag) => match &tag {
            b"Ex86" => Some(Kind::Elf(Arch::X86)),
            b"Ex64" => Some(Kind::Elf(Arch::X64)),
            b"EA32" => Some(Kind::Elf(Arch::AArch32)),
            b"EA64" => Some(Kind::Elf(Arch::AArch64)),
            b"DEX " => Some(Kind::Dex),
            _ => None,
        },
        ExeType::NoOp => None,
    }
}

/// Reference correction of a DEX element: both elements must parse as DEX files whose
/// `file_size` is exactly the element (AOSP's disassembler size check).
fn correct_dex(element: &Element, old: &[u8], new: &mut [u8], order: SortOrder) -> Result<()> {
    let old_dex = Dex::parse(old).filter(|d| d.size as usize == old.len());
    let new_dex = Dex::parse(new).filter(|d| d.size as usize == new.len());
    let (Some(old_dex), Some(new_dex)) = (old_dex, new_dex) else {
        bail!(
            MalformedPayload,
            "zucchini DEX element is not a DEX file of its extent"
        );
    };
    references::correct(element, old, &old_dex, new, &new_dex, order)
}

/// Reference correction of an ELF element: both elements must parse as ELFs of the element's
/// type spanning exactly the element (AOSP's disassembler size check).
fn correct_elf(
    arch: Arch,
    element: &Element,
    old: &[u8],
    new: &mut [u8],
    order: SortOrder,
) -> Result<()> {
    let old_elf = Elf::parse(old, arch, true).filter(|e| e.size == old.len());
    let new_elf = Elf::parse(new, arch, false).filter(|e| e.size == new.len());
    let (Some(old_elf), Some(new_elf)) = (old_elf, new_elf) else {
        bail!(
            MalformedPayload,
            "zucchini {arch:?} element is not an ELF of its extent"
        );
    };
    references::correct(element, old, &old_elf, new, &new_elf, order)
}

/// Extra data up to each equivalence, the equivalence's old bytes, extra data to the end.
fn copy_and_extra(old: &[u8], element: &Element, new: &mut [u8]) -> Result<()> {
    let mut equivalences = element.equivalences.clone();
    let mut extra = element.extra_data;
    let mut at = 0usize;
    let mut put_extra = |at: usize, end: usize, new: &mut [u8]| -> Result<()> {
        let gap = end
            .checked_sub(at)
            .ok_or_else(|| err!(MalformedPayload, "zucchini equivalences overlap"))?;
        if gap > extra.len() {
            bail!(MalformedPayload, "zucchini extra data runs out");
        }
        let (chunk, rest) = extra.split_at(gap);
        extra = rest;
        new.get_mut(at..end)
            .ok_or_else(|| err!(MalformedPayload, "zucchini extra data outside its element"))?
            .copy_from_slice(chunk);
        Ok(())
    };
    while let Some(eq) = equivalences.next() {
        let (src, dst, len) = (eq.src as usize, eq.dst as usize, eq.len as usize);
        put_extra(at, dst, new)?;
        // `Patch::parse` checked both blocks against the element.
        let (Some(from), Some(to)) = (
            src.checked_add(len).and_then(|end| old.get(src..end)),
            dst.checked_add(len).and_then(|end| new.get_mut(dst..end)),
        ) else {
            bail!(MalformedPayload, "zucchini equivalence outside its element");
        };
        to.copy_from_slice(from);
        at = dst + len;
    }
    put_extra(at, new.len(), new)?;
    if !equivalences.done() || !extra.is_empty() {
        bail!(
            MalformedPayload,
            "zucchini equivalences or extra data left over"
        );
    }
    Ok(())
}

/// Adds the raw delta's byte diffs into the copied blocks. Its offsets count bytes of the
/// equivalences' copies laid end to end, so it walks them in step.
fn raw_delta(element: &Element, new: &mut [u8]) -> Result<()> {
    let mut equivalences = element.equivalences.clone();
    let mut deltas = element.raw_delta.clone();
    let mut current = equivalences.next();
    let mut base = 0u64;
    while let Some(delta) = deltas.next() {
        let offset = u64::from(delta.copy_offset);
        let eq = loop {
            match current {
                Some(eq) if base + u64::from(eq.len) <= offset => {
                    base += u64::from(eq.len);
                    current = equivalences.next();
                }
                Some(eq) => break eq,
                None => bail!(MalformedPayload, "zucchini raw delta past the equivalences"),
            }
        };
        // base <= offset < base + len, and the block lies in the element.
        let at = u64::from(eq.dst) + (offset - base);
        let byte = usize::try_from(at)
            .ok()
            .and_then(|at| new.get_mut(at))
            .ok_or_else(|| err!(MalformedPayload, "zucchini raw delta outside its element"))?;
        *byte = byte.wrapping_add_signed(delta.diff);
    }
    if !deltas.done() {
        bail!(
            MalformedPayload,
            "zucchini raw delta malformed or left over"
        );
    }
    Ok(())
}
