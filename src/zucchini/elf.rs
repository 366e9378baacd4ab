//! Zucchini's ELF disassembler (`disassembler_elf.cc`) for x86 (`Ex86`), x86-64 (`Ex64`),
//! ARM (`EA32`) and AArch64 (`EA64`): the section table gives an offset ↔ RVA map; `R_*_RELATIVE` relocations
//! are references ("reloc": the relocation's `r_offset` points at a pointer), the pointers
//! they relocate are references ("abs32"), and branches and RIP-relative operands in
//! executable sections, found by Zucchini's heuristic scan between the pointers, are
//! references ("rel32"). The finders and their filters follow AOSP's exactly: the patch's
//! reference delta counts references in the order they find them.
//!
//! The parse keeps no borrow of the image: readers and writers take the image they were
//! parsed from, so the new element can be parsed, then written in place.

use super::address::{Translator, Unit, BOUND as RVA_BOUND, INVALID_RVA};
use super::arm::{self, Branch};
use super::references::{Disassembler, Group, Reference, Visit};
use crate::bail;
use crate::error::Result;

/// RVAs and section extents at or past this invalidate the ELF (`kSizeBound`).
const SIZE_BOUND: u64 = 0x7FFF_0000;
/// `kInvalidOffset`: what AOSP's reader yields for a target it cannot place.
const INVALID_OFFSET: u32 = u32::MAX - 1;

const SHT_PROGBITS: u32 = 1;
const SHT_RELA: u32 = 4;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHF_EXECINSTR: u64 = 1 << 2;
const SHF_TLS: u64 = 1 << 10;

/// The machines this disassembler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arch {
    /// `EM_386`, ELFCLASS32.
    X86,
    /// `EM_X86_64`, ELFCLASS64.
    X64,
    /// `EM_ARM`, ELFCLASS32: ARM and Thumb-2 code.
    AArch32,
    /// `EM_AARCH64`, ELFCLASS64.
    AArch64,
}

/// The pools (`kReloc`/`kPoolReloc`, `kAbs32`, `kRel32`), shared by every architecture.
const POOL_RELOC: u8 = 0;
const POOL_ABS32: u8 = 1;
const POOL_REL32: u8 = 2;

const INTEL_GROUPS: &[Group] = &[
    Group { pool: POOL_RELOC },
    Group { pool: POOL_ABS32 },
    Group { pool: POOL_REL32 },
];
/// Reloc, abs32, then the AArch64 branch immediates of 14, 19 and 26 bits.
const AARCH64_GROUPS: &[Group] = &[
    Group { pool: POOL_RELOC },
    Group { pool: POOL_ABS32 },
    Group { pool: POOL_REL32 },
    Group { pool: POOL_REL32 },
    Group { pool: POOL_REL32 },
];
/// Reloc, abs32, then the ARM A24 and Thumb-2 T8, T11, T20 and T24 branches.
const AARCH32_GROUPS: &[Group] = &[
    Group { pool: POOL_RELOC },
    Group { pool: POOL_ABS32 },
    Group { pool: POOL_REL32 },
    Group { pool: POOL_REL32 },
    Group { pool: POOL_REL32 },
    Group { pool: POOL_REL32 },
    Group { pool: POOL_REL32 },
];
/// Zucchini's share of words with condition "always" (0xE) below which an ARM section is
/// taken for Thumb-2 (`kAArch32BitCondAlwaysDensityThreshold`).
const ARM_MODE_DENSITY: f64 = 0.4;

impl Arch {
    fn is64(self) -> bool {
        !matches!(self, Self::X86 | Self::AArch32)
    }

    /// The branch encodings of the rel32 groups (x86's one rel32 type is not a [`Branch`]).
    fn branches(self) -> &'static [Branch] {
        match self {
            Self::X86 | Self::X64 => &[],
            Self::AArch32 => arm::AARCH32,
            Self::AArch64 => arm::AARCH64,
        }
    }

    fn machine(self) -> u16 {
        match self {
            Self::X86 => 3,
            Self::X64 => 62,
            Self::AArch32 => 40,
            Self::AArch64 => 183,
        }
    }

    /// The `R_*_RELATIVE` relocation type.
    fn relative_type(self) -> u32 {
        match self {
            Self::X86 | Self::X64 => 8,
            Self::AArch32 => 23,
            Self::AArch64 => 0x403,
        }
    }

    /// `elf64` for ELFCLASS64, else `elf32`.
    fn pick(self, elf64: u32, elf32: u32) -> u32 {
        if self.is64() {
            elf64
        } else {
            elf32
        }
    }

    /// Bytes of a pointer (an abs32 reference's body).
    fn width(self) -> u32 {
        self.pick(8, 4)
    }

    fn header_size(self) -> usize {
        self.pick(64, 52) as usize
    }

    fn section_header_size(self) -> u64 {
        self.pick(64, 40).into()
    }

    fn segment_header_size(self) -> u64 {
        self.pick(56, 32).into()
    }

    /// Bytes of an `Elf_Rel`.
    fn rel_size(self) -> u64 {
        self.pick(16, 8).into()
    }
}

fn le<const N: usize>(data: &[u8], at: u64) -> Option<[u8; N]> {
    let at = usize::try_from(at).ok()?;
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(data: &[u8], at: u64) -> Option<u16> {
    le(data, at).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], at: u64) -> Option<u32> {
    le(data, at).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], at: u64) -> Option<u64> {
    le(data, at).map(u64::from_le_bytes)
}

/// A word of the ELF's class: 4 or 8 bytes.
fn word_at(data: &[u8], at: u64, is64: bool) -> Option<u64> {
    if is64 {
        u64_at(data, at)
    } else {
        u32_at(data, at).map(u64::from)
    }
}

fn put(image: &mut [u8], at: u32, bytes: &[u8]) -> bool {
    let at = at as usize;
    match at
        .checked_add(bytes.len())
        .and_then(|end| image.get_mut(at..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

#[derive(Clone, Copy, Debug)]
struct Section {
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    entsize: u64,
}

fn section(image: &[u8], at: u64, is64: bool) -> Option<Section> {
    Some(if is64 {
        Section {
            kind: u32_at(image, at + 4)?,
            flags: u64_at(image, at + 8)?,
            addr: u64_at(image, at + 16)?,
            offset: u64_at(image, at + 24)?,
            size: u64_at(image, at + 32)?,
            entsize: u64_at(image, at + 56)?,
        }
    } else {
        Section {
            kind: u32_at(image, at + 4)?,
            flags: u64::from(u32_at(image, at + 8)?),
            addr: u64::from(u32_at(image, at + 12)?),
            offset: u64::from(u32_at(image, at + 16)?),
            size: u64::from(u32_at(image, at + 20)?),
            entsize: u64::from(u32_at(image, at + 36)?),
        }
    })
}

/// `JudgeSection`'s verdicts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Judgement {
    Malformed,
    Useless,
    /// Maps offsets to RVAs (`.bss`-like: no file bytes).
    Translate,
    /// Maps offsets to RVAs, bounds the image and may hold references.
    Useful,
}

fn judge(image_size: u64, s: &Section) -> Judgement {
    let fits = |start: u64, size: u64, bound: u64| start <= bound && bound - start >= size;
    if !fits(s.addr, s.size, SIZE_BOUND) {
        return Judgement::Malformed;
    }
    let offset_bound = if s.kind == SHT_NOBITS {
        SIZE_BOUND
    } else {
        image_size
    };
    if !fits(s.offset, s.size, offset_bound) {
        return Judgement::Malformed;
    }
    if s.size == 0 || s.addr == 0 {
        return Judgement::Useless;
    }
    if s.kind == SHT_NOBITS {
        return if s.flags & SHF_TLS != 0 {
            Judgement::Useless
        } else {
            Judgement::Translate
        };
    }
    Judgement::Useful
}

/// A relocation section: its extent and entry size (`SectionDimensionsElf`).
#[derive(Clone, Copy, Debug)]
struct RelocSection {
    offset: u32,
    end: u32,
    entry: u32,
}

/// An executable section: extent in the file and its RVA.
#[derive(Clone, Copy, Debug)]
struct ExecSection {
    offset: u32,
    size: u32,
    rva: u32,
}

/// A parsed ELF: what reference correction needs to read and write its references.
#[derive(Debug)]
pub(super) struct Elf {
    arch: Arch,
    /// The ELF's extent: its headers, sections and segments; the element must be exactly it.
    pub size: usize,
    translator: Translator,
    relocs: Vec<RelocSection>,
    execs: Vec<ExecSection>,
    /// Abs32 locations, sorted, non-overlapping.
    abs32: Vec<u32>,
    /// Rel32 locations, sorted; on ARM one list per [`Arch::branches`] entry.
    rel32: Vec<Vec<u32>>,
}

impl Elf {
    /// Parses `image` as an ELF of `arch` (`DisassemblerElf::Parse`); `None` when it is not
    /// one Zucchini would accept. With `find`, also finds the references (only the old image's
    /// are read; the new one's disassembler only writes).
    pub fn parse(image: &[u8], arch: Arch, find: bool) -> Option<Self> {
        let mut elf = Self::parse_header(image, arch)?;
        if find {
            let image = image.get(..elf.size)?;
            elf.abs32 = elf.find_abs32(image);
            elf.find_rel32(image);
        }
        Some(elf)
    }

    fn parse_header(image: &[u8], arch: Arch) -> Option<Self> {
        let is64 = arch.is64();
        let size = u64::try_from(image.len()).ok()?;
        if size > u64::from(u32::MAX) || image.len() < arch.header_size() {
            return None;
        }
        // QuickDetect.
        let class = if is64 { 2 } else { 1 };
        if image[..4] != *b"\x7fELF" || image[4] != class || image[5] != 1 || image[6] != 1 {
            return None;
        }
        let e_type = u16_at(image, 16)?;
        let machine = u16_at(image, 18)?;
        let version = u32_at(image, 20)?;
        let (phoff, shoff, rest) = if is64 {
            (u64_at(image, 32)?, u64_at(image, 40)?, 52)
        } else {
            (
                u64::from(u32_at(image, 28)?),
                u64::from(u32_at(image, 32)?),
                40,
            )
        };
        let shentsize = u16_at(image, rest + 6)?;
        let (phnum, shnum, shstrndx) = (
            u64::from(u16_at(image, rest + 4)?),
            u64::from(u16_at(image, rest + 8)?),
            u64::from(u16_at(image, rest + 10)?),
        );
        if !(e_type == 2 || e_type == 3)
            || version != 1
            || machine != arch.machine()
            || u64::from(shentsize) != arch.section_header_size()
        {
            return None;
        }
        // The tables: `Skip` stops at the end, then the whole array must fit.
        let table = |offset: u64, count: u64, entry: u64| {
            let start = offset.min(size);
            ((size - start) / entry >= count).then(|| (start, start + count * entry))
        };
        let (sh_start, sh_end) = table(shoff, shnum, arch.section_header_size())?;
        let (ph_start, ph_end) = table(phoff, phnum, arch.segment_header_size())?;
        if shstrndx >= shnum {
            return None;
        }
        let sections: Vec<Section> = (0..shnum)
            .map(|i| section(image, sh_start + i * arch.section_header_size(), is64))
            .collect::<Option<_>>()?;
        let names = sections.get(usize::try_from(shstrndx).ok()?)?;
        if names.size > 0 {
            let start = names.offset.min(size);
            if size - start < names.size || image.get((start + names.size - 1) as usize) != Some(&0)
            {
                return None;
            }
        }
        let mut offset_bound = sh_end.max(ph_end);
        for i in 0..phnum {
            let at = ph_start + i * arch.segment_header_size();
            let (offset, filesz) = if is64 {
                (u64_at(image, at + 8)?, u64_at(image, at + 32)?)
            } else {
                (
                    u64::from(u32_at(image, at + 4)?),
                    u64::from(u32_at(image, at + 16)?),
                )
            };
            let end = offset.checked_add(filesz)?;
            if end > u64::from(u32::MAX) || offset > size || size - offset < filesz {
                return None;
            }
            offset_bound = offset_bound.max(end);
        }
        let mut units = Vec::with_capacity(sections.len());
        let mut judged = Vec::with_capacity(sections.len());
        for s in &sections {
            let judgement = judge(size, s);
            // Every field now lies below SIZE_BOUND or the (u32) image size.
            let (offset, len, addr) = (s.offset as u32, s.size as u32, s.addr as u32);
            match judgement {
                Judgement::Malformed => return None,
                Judgement::Useless => {}
                Judgement::Translate | Judgement::Useful => units.push(Unit {
                    offset_begin: offset,
                    offset_size: len,
                    rva_begin: addr,
                    rva_size: len,
                }),
            }
            if judgement == Judgement::Useful {
                offset_bound = offset_bound.max(s.offset + s.size);
            }
            judged.push(judgement);
        }
        let translator = Translator::new(units).ok()?;
        let mut relocs = Vec::new();
        let mut execs = Vec::new();
        for (s, judgement) in sections.iter().zip(judged) {
            if judgement != Judgement::Useful {
                continue;
            }
            let (offset, len) = (s.offset as u32, s.size as u32);
            let rel = arch.rel_size();
            let is_reloc = (s.kind == SHT_REL && s.entsize == rel)
                || (s.kind == SHT_RELA && s.entsize == rel + arch.width() as u64);
            if is_reloc {
                relocs.push(RelocSection {
                    offset,
                    end: offset + len,
                    entry: s.entsize as u32,
                });
            } else if s.kind == SHT_PROGBITS && s.flags & SHF_EXECINSTR != 0 {
                execs.push(ExecSection {
                    offset,
                    size: len,
                    rva: s.addr as u32,
                });
            }
        }
        relocs.sort_by_key(|r| r.offset);
        execs.sort_by_key(|e| e.offset);
        // A real ELF's code and relocation sections do not overlap; a hostile one repeating
        // a section would make the scans quadratic, so it is refused (AOSP would scan it).
        let total = |sizes: &mut dyn Iterator<Item = u32>| sizes.map(u64::from).sum::<u64>();
        if total(&mut execs.iter().map(|e| e.size)) > size
            || total(&mut relocs.iter().map(|r| r.end - r.offset)) > size
        {
            return None;
        }
        Some(Self {
            arch,
            size: usize::try_from(offset_bound).ok()?,
            translator,
            relocs,
            execs,
            abs32: Vec::new(),
            rel32: Vec::new(),
        })
    }

    /// The relocation target of the `Elf_Rel` at `at`: `r_offset` as an RVA when the type is
    /// the architecture's RELATIVE and the value fits 32 bits (`GetRelocationTarget`).
    fn reloc_target(&self, image: &[u8], at: u32) -> Option<u32> {
        let is64 = self.arch.is64();
        let r_offset = word_at(image, u64::from(at), is64)?;
        let width = u64::from(self.arch.width());
        let info = word_at(image, u64::from(at) + width, is64)?;
        let kind = if is64 {
            info & 0xffff_ffff
        } else {
            info & 0xff
        };
        (kind == u64::from(self.arch.relative_type()))
            .then(|| u32::try_from(r_offset).ok())
            .flatten()
    }

    /// `RelocReaderElf`: relocations whose struct starts in `lo..hi` (`hi` rounded up to a
    /// whole struct), RELATIVE ones only, with a target whose pointer lies in the image.
    fn read_relocs(&self, image: &[u8], lo: u32, hi: u32, f: &mut Visit) -> Result<()> {
        if self.relocs.is_empty() {
            return Ok(());
        }
        let at_or_before = |x: u32| self.relocs.partition_point(|r| r.offset <= x).max(1) - 1;
        let mut index = at_or_before(lo);
        let mut section = self.relocs[index];
        let mut cursor = u64::from(section.offset);
        if cursor < u64::from(lo) {
            let entry = u64::from(section.entry);
            cursor += (u64::from(lo) - cursor).div_ceil(entry) * entry;
        }
        let mut hi = u64::from(hi);
        if self.relocs[0].offset as u64 <= hi {
            let end_section = self.relocs[at_or_before(hi as u32)];
            let into = hi - u64::from(end_section.offset);
            if into < u64::from(end_section.end - end_section.offset) {
                let entry = u64::from(end_section.entry);
                hi = u64::from(end_section.offset) + into.div_ceil(entry) * entry;
            }
        }
        let width = u64::from(self.arch.width());
        while cursor + u64::from(section.entry) <= hi {
            while cursor >= u64::from(section.end) {
                index += 1;
                let Some(&next) = self.relocs.get(index) else {
                    return Ok(());
                };
                section = next;
                cursor = u64::from(section.offset);
                if cursor + u64::from(section.entry) > hi {
                    return Ok(());
                }
            }
            let at = cursor as u32;
            cursor += u64::from(section.entry);
            let Some(target) = self
                .reloc_target(image, at)
                .and_then(|rva| self.translator.rva_to_offset(rva))
            else {
                continue;
            };
            if u64::from(target) + width <= image.len() as u64 {
                f(Reference {
                    location: at,
                    target,
                })?;
            }
        }
        Ok(())
    }

    /// The RVA the pointer at `location` holds, if it is one (`AbsoluteAddress::ToRva`).
    fn pointer_rva(&self, image: &[u8], location: u32) -> Option<u32> {
        let value = word_at(image, u64::from(location), self.arch.is64())?;
        u32::try_from(value).ok().filter(|&rva| rva < RVA_BOUND)
    }

    /// `GetAbs32FromRelocSections`: relocation targets whose pointer translates, sorted, with
    /// overlapping ones dropped.
    fn find_abs32(&self, image: &[u8]) -> Vec<u32> {
        let mut locations = Vec::new();
        let _ = self.read_relocs(image, 0, image.len() as u32, &mut |r| {
            locations.push(r.target);
            Ok(())
        });
        locations.sort_unstable();
        locations.retain(|&at| {
            self.pointer_rva(image, at)
                .and_then(|rva| self.translator.rva_to_offset(rva))
                .is_some()
        });
        // `RemoveOverlappingAbs32Locations`: keep each one a whole pointer past the last kept.
        let width = self.arch.width();
        let mut kept: Vec<u32> = Vec::with_capacity(locations.len());
        for at in locations {
            match kept.last() {
                Some(&last) if at - last < width => {}
                _ => kept.push(at),
            }
        }
        kept
    }

    /// The gaps between abs32 bodies inside `start..end` (`Abs32GapFinder`).
    fn gaps(&self, start: u32, end: u32) -> Vec<(u32, u32)> {
        let width = self.arch.width();
        let first = self.abs32.partition_point(|&a| a < start);
        let mut lo = start;
        if let Some(&prev) = first.checked_sub(1).and_then(|i| self.abs32.get(i)) {
            lo = lo.max(prev.saturating_add(width));
        }
        let mut gaps = Vec::new();
        for &at in self.abs32[first..].iter().take_while(|&&a| a < end) {
            if lo < at {
                gaps.push((lo, at));
            }
            lo = at.saturating_add(width);
        }
        if lo < end {
            gaps.push((lo, end));
        }
        gaps
    }

    /// `ParseExecSection` of every executable section, then `PostProcessRel32`.
    fn find_rel32(&mut self, image: &[u8]) {
        let mut found = vec![Vec::new(); self.arch.branches().len().max(1)];
        for exec in &self.execs {
            let end = exec.offset + exec.size;
            let thumb2 = self.arch == Arch::AArch32 && is_thumb2(image, exec);
            for (lo, hi) in self.gaps(exec.offset, end) {
                match self.arch {
                    Arch::X86 | Arch::X64 => self.scan_intel(image, exec, lo, hi, &mut found[0]),
                    Arch::AArch32 if thumb2 => self.scan_thumb2(image, lo, hi, &mut found),
                    Arch::AArch32 | Arch::AArch64 => self.scan_words(image, lo, hi, &mut found),
                }
            }
        }
        for list in &mut found {
            list.sort_unstable();
        }
        self.rel32 = found;
    }

    /// `Rel32FinderX86`/`Rel32FinderX64` over one gap: a candidate opcode's displacement is
    /// taken when its target lies in a section (in this section for branches); a taken one
    /// is skipped over, a refused one resumes one byte on.
    fn scan_intel(&self, image: &[u8], exec: &ExecSection, lo: u32, hi: u32, out: &mut Vec<u32>) {
        let x64 = self.arch == Arch::X64;
        let (start_rva, end_rva) = (exec.rva, exec.rva + exec.size);
        let mut cursor = lo as usize;
        let end = hi as usize;
        while cursor < end {
            let b = |i: usize| image.get(cursor + i).copied().unwrap_or(0);
            let candidate = if cursor + 5 <= end && (b(0) == 0xe8 || b(0) == 0xe9) {
                Some((1, false))
            } else if cursor + 6 <= end && b(0) == 0x0f && b(1) & 0xf0 == 0x80 {
                Some((2, false))
            } else if x64
                && cursor + 6 <= end
                && ((b(0) == 0xff && (b(1) == 0x15 || b(1) == 0x25))
                    || (matches!(b(0), 0x89 | 0x8b | 0x8d) && b(1) & 0xc7 == 0x05))
            {
                Some((2, true))
            } else {
                None
            };
            let Some((opcode, anywhere)) = candidate else {
                cursor += 1;
                continue;
            };
            let location = (cursor + opcode) as u32;
            let disp = u32_at(image, u64::from(location)).unwrap_or(0);
            let target = self
                .translator
                .offset_to_rva(location)
                .wrapping_add(4)
                .wrapping_add(disp);
            if self.translator.rva_is_valid(target)
                && (anywhere || (start_rva <= target && target < end_rva))
            {
                out.push(location);
                cursor += opcode + 4;
            } else {
                cursor += 1;
            }
        }
    }

    /// Takes the branch of kind `index` at `at` when its target lies in an executable section.
    fn take_branch(&self, index: usize, at: u32, target: u32, out: &mut [Vec<u32>]) {
        let in_exec = self
            .translator
            .rva_to_offset(target)
            .is_some_and(|t| self.in_exec_section(t));
        if in_exec {
            out[index].push(at);
        }
    }

    /// `Rel32FinderAArch64` and `ScanA32` over one gap: every 4-byte-aligned word that
    /// decodes as a branch whose target lies in an executable section.
    fn scan_words(&self, image: &[u8], lo: u32, hi: u32, out: &mut [Vec<u32>]) {
        if hi - lo < 4 {
            return;
        }
        let mut at = lo + (lo.wrapping_neg() & 3);
        while hi - at >= 4 {
            let code = u32_at(image, u64::from(at)).unwrap_or(0);
            let rva = self.translator.offset_to_rva(at);
            let branches = self.arch.branches().iter().enumerate();
            // ARM mode has one kind (A24); the Thumb-2 kinds are for `scan_thumb2`.
            for (index, branch) in branches.take(if self.arch == Arch::AArch32 { 1 } else { 3 }) {
                if let Some(target) = branch.read(rva, code) {
                    self.take_branch(index, at, target, out);
                    break;
                }
            }
            at += 4;
        }
    }

    /// `ScanT32` over one gap: Thumb-2 instructions one after the other (2 or 4 bytes), the
    /// 16-bit ones tried as T8 then T11, the 32-bit ones as T20 then T24.
    fn scan_thumb2(&self, image: &[u8], lo: u32, hi: u32, out: &mut [Vec<u32>]) {
        if hi - lo < 2 {
            return;
        }
        let mut at = lo + (lo & 1);
        while hi.checked_sub(at).is_some_and(|left| left >= 2) {
            let code16 = Branch::T8.fetch(image, at).unwrap_or(0);
            let size = arm::thumb2_size(code16 as u16);
            let rva = self.translator.offset_to_rva(at);
            let candidates: &[(usize, Branch)] = if size == 2 {
                &[(1, Branch::T8), (2, Branch::T11)]
            } else if hi - at >= 4 {
                &[(3, Branch::T20), (4, Branch::T24)]
            } else {
                &[]
            };
            for &(index, branch) in candidates {
                let code = branch.fetch(image, at).unwrap_or(0);
                if let Some(target) = branch.read(rva, code) {
                    self.take_branch(index, at, target, out);
                    break;
                }
            }
            at = at.saturating_add(size);
        }
    }

    /// `IsTargetOffsetInElfSectionList` over the executable sections.
    fn in_exec_section(&self, offset: u32) -> bool {
        let i = self.execs.partition_point(|e| e.offset <= offset);
        i.checked_sub(1)
            .and_then(|i| self.execs.get(i))
            .is_some_and(|e| offset - e.offset < e.size)
    }

    /// `Abs32ReaderWin32` (which Zucchini's ELF reader is) over `lo..hi`.
    fn read_abs32(&self, image: &[u8], lo: u32, hi: u32, f: &mut Visit) -> Result<()> {
        let width = self.arch.width();
        let bound = |x: u32| {
            let i = self.abs32.partition_point(|&a| a < x);
            match i.checked_sub(1).map(|p| self.abs32[p]) {
                Some(prev) if x - prev < width => None,
                _ => Some(i),
            }
        };
        let (Some(first), Some(last)) = (bound(lo), bound(hi)) else {
            bail!(
                MalformedPayload,
                "zucchini equivalence cuts through a pointer"
            );
        };
        for &location in self.abs32.get(first..last).unwrap_or(&[]) {
            let target = self
                .pointer_rva(image, location)
                .and_then(|rva| self.translator.rva_to_offset(rva));
            if let Some(target) = target {
                f(Reference { location, target })?;
            }
        }
        Ok(())
    }

    /// `Rel32ReaderX86` / `Rel32ReaderArm` over `lo..hi`.
    fn read_rel32(&self, image: &[u8], kind: usize, lo: u32, hi: u32, f: &mut Visit) -> Result<()> {
        let list = self.rel32.get(kind).map_or(&[][..], Vec::as_slice);
        let first = list.partition_point(|&a| a < lo);
        for &location in list[first..].iter().take_while(|&&a| a < hi) {
            let rva = self.translator.offset_to_rva(location);
            let target = match self.arch.branches().get(kind) {
                Some(branch) => {
                    let target = branch
                        .fetch(image, location)
                        .and_then(|code| branch.read(rva, code))
                        .and_then(|t| self.translator.rva_to_offset(t));
                    match target {
                        Some(target) => target,
                        None => continue,
                    }
                }
                None => {
                    let Some(code) = u32_at(image, u64::from(location)) else {
                        bail!(MalformedPayload, "zucchini rel32 past its element");
                    };
                    let target_rva = rva.wrapping_add(4).wrapping_add(code);
                    self.translator
                        .rva_to_offset(target_rva)
                        .unwrap_or(INVALID_OFFSET)
                }
            };
            f(Reference { location, target })?;
        }
        Ok(())
    }
}

impl Disassembler for Elf {
    fn groups(&self) -> &'static [Group] {
        match self.arch {
            Arch::X86 | Arch::X64 => INTEL_GROUPS,
            Arch::AArch32 => AARCH32_GROUPS,
            Arch::AArch64 => AARCH64_GROUPS,
        }
    }

    fn references(
        &self,
        image: &[u8],
        group: usize,
        lo: u32,
        hi: u32,
        f: &mut Visit,
    ) -> Result<()> {
        let image = image.get(..self.size).unwrap_or(image);
        match group {
            0 => self.read_relocs(image, lo, hi, f),
            1 => self.read_abs32(image, lo, hi, f),
            _ => self.read_rel32(image, group - 2, lo, hi, f),
        }
    }

    fn write(&self, image: &mut [u8], group: usize, r: Reference) -> Result<()> {
        let t = &self.translator;
        let is64 = self.arch.is64();
        let ok = match group {
            // `RelocWriterElf`: the struct must lie in the image; `r_offset` gets the RVA.
            0 => {
                let rel = self.arch.rel_size() as usize;
                let fits = (r.location as usize)
                    .checked_add(rel)
                    .is_some_and(|end| end <= image.len());
                let rva = u64::from(t.offset_to_rva(r.target));
                fits && if is64 {
                    put(image, r.location, &rva.to_le_bytes())
                } else {
                    put(image, r.location, &(rva as u32).to_le_bytes())
                }
            }
            // `Abs32WriterWin32`: skipped where the target has no RVA or the pointer no room.
            1 => {
                let rva = t.offset_to_rva(r.target);
                if rva != INVALID_RVA {
                    if is64 {
                        put(image, r.location, &u64::from(rva).to_le_bytes());
                    } else {
                        put(image, r.location, &rva.to_le_bytes());
                    }
                }
                true
            }
            g if !self.arch.branches().is_empty() => {
                let Some(&branch) = self.arch.branches().get(g - 2) else {
                    bail!(MalformedPayload, "zucchini reference type {g} unknown");
                };
                let Some(code) = branch.fetch(image, r.location) else {
                    bail!(MalformedPayload, "zucchini branch past its element");
                };
                let (rva, target) = (t.offset_to_rva(r.location), t.offset_to_rva(r.target));
                // Like AOSP, a branch that cannot reach its target is left as it is.
                match branch.write(rva, target, code) {
                    Some(code) => branch.store(image, r.location, code),
                    None => true,
                }
            }
            _ => {
                let code = t
                    .offset_to_rva(r.target)
                    .wrapping_sub(t.offset_to_rva(r.location).wrapping_add(4));
                put(image, r.location, &code.to_le_bytes())
            }
        };
        if !ok {
            bail!(MalformedPayload, "zucchini reference past its element");
        }
        Ok(())
    }
}

/// `IsExecSectionThumb2`: a section not word-aligned, or whose words mostly lack the ARM
/// "always" condition, holds Thumb-2 code.
fn is_thumb2(image: &[u8], exec: &ExecSection) -> bool {
    if exec.rva % 4 != 0 || exec.size % 4 != 0 {
        return true;
    }
    let start = exec.offset as usize;
    let words = image
        .get(start..start + exec.size as usize)
        .unwrap_or(&[])
        .chunks_exact(4);
    let total = words.len();
    let always = words.filter(|w| w[3] & 0xf0 == 0xe0).count();
    (always as f64) < total as f64 * ARM_MODE_DENSITY
}
