//! Offsets in an executable's file and the virtual addresses (RVAs) its sections load at, as
//! Zucchini's `AddressTranslator` maps them: units of (offset range, RVA range) merged where
//! they agree, RVAs past a unit's file bytes ("dangling", e.g. `.bss`) given fake offsets past
//! every real one so that references to them still have a target to match.

/// Offsets and RVAs at or past this are out of range (`kOffsetBound`, `kRvaBound`).
pub(super) const BOUND: u32 = u32::MAX / 2;
/// No RVA (`kInvalidRva`); written as is where Zucchini writes it.
pub(super) const INVALID_RVA: u32 = u32::MAX - 1;

/// One section's offset range and RVA range (`offset_size <= rva_size` once normalised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unit {
    pub offset_begin: u32,
    pub offset_size: u32,
    pub rva_begin: u32,
    pub rva_size: u32,
}

impl Unit {
    // Both ends lie below `BOUND` once `Translator::new` accepts the unit, so sums keep.
    fn offset_end(&self) -> u32 {
        self.offset_begin + self.offset_size
    }

    fn rva_end(&self) -> u32 {
        self.rva_begin + self.rva_size
    }

    fn covers_offset(&self, offset: u32) -> bool {
        self.offset_begin <= offset && offset - self.offset_begin < self.offset_size
    }

    fn covers_rva(&self, rva: u32) -> bool {
        self.rva_begin <= rva && rva - self.rva_begin < self.rva_size
    }

    fn has_dangling_rva(&self) -> bool {
        self.rva_size > self.offset_size
    }
}

/// Why a set of units does not describe an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BadUnits;

/// The offset ↔ RVA map of one image.
#[derive(Clone, Debug, Default)]
pub(super) struct Translator {
    by_offset: Vec<Unit>,
    by_rva: Vec<Unit>,
    fake_offset_begin: u32,
}

fn bounded(begin: u32, size: u32, bound: u32) -> bool {
    begin < bound && size <= bound - begin
}

impl Translator {
    /// Validates and merges `units` (Zucchini's `AddressTranslator::Initialize`): units
    /// overlapping in RVA must agree on the offset shift, and no two may overlap in offset.
    pub fn new(mut units: Vec<Unit>) -> Result<Self, BadUnits> {
        for unit in &mut units {
            if !bounded(unit.offset_begin, unit.offset_size, BOUND)
                || !bounded(unit.rva_begin, unit.rva_size, BOUND)
            {
                return Err(BadUnits);
            }
            unit.offset_size = unit.offset_size.min(unit.rva_size);
        }
        units.retain(|u| u.rva_size != 0);
        units.sort_by_key(|u| (u.rva_begin, u.rva_size));
        units.dedup();
        let mut merged: Vec<Unit> = Vec::with_capacity(units.len());
        for fast in units {
            let Some(slow) = merged.last_mut() else {
                merged.push(fast);
                continue;
            };
            if slow.rva_end() < fast.rva_begin {
                merged.push(fast);
                continue;
            }
            // Tangent units may stay apart; overlapping ones must merge.
            let optional = slow.rva_end() == fast.rva_begin;
            let same_shift = fast.offset_begin >= slow.offset_begin
                && fast.offset_begin - slow.offset_begin == fast.rva_begin - slow.rva_begin;
            let dangling_clash = (fast.has_dangling_rva() && fast.offset_end() < slow.offset_end())
                || (slow.has_dangling_rva() && slow.offset_end() < fast.offset_end());
            if !same_shift || dangling_clash {
                if optional {
                    merged.push(fast);
                    continue;
                }
                return Err(BadUnits);
            }
            slow.rva_size = slow.rva_size.max(fast.rva_end() - slow.rva_begin);
            slow.offset_size = slow.offset_size.max(fast.offset_end() - slow.offset_begin);
        }
        merged.sort_by_key(|u| u.offset_begin);
        if merged
            .windows(2)
            .any(|w| w[0].offset_end() > w[1].offset_begin)
        {
            return Err(BadUnits);
        }
        let offset_bound = merged.iter().map(Unit::offset_end).max().unwrap_or(0);
        let rva_bound = merged.iter().map(Unit::rva_end).max().unwrap_or(0);
        // Fake offsets (`offset_bound + rva`) must stay valid offsets.
        if !bounded(offset_bound, rva_bound, BOUND) {
            return Err(BadUnits);
        }
        let mut by_rva = merged.clone();
        by_rva.sort_by_key(|u| u.rva_begin);
        Ok(Self {
            by_offset: merged,
            by_rva,
            fake_offset_begin: offset_bound,
        })
    }

    fn unit_of_offset(&self, offset: u32) -> Option<&Unit> {
        let i = self.by_offset.partition_point(|u| u.offset_begin <= offset);
        let unit = self.by_offset.get(i.checked_sub(1)?)?;
        unit.covers_offset(offset).then_some(unit)
    }

    fn unit_of_rva(&self, rva: u32) -> Option<&Unit> {
        let i = self.by_rva.partition_point(|u| u.rva_begin <= rva);
        let unit = self.by_rva.get(i.checked_sub(1)?)?;
        unit.covers_rva(rva).then_some(unit)
    }

    /// Whether `rva` lies in a unit (dangling or not).
    pub fn rva_is_valid(&self, rva: u32) -> bool {
        rva != INVALID_RVA && self.unit_of_rva(rva).is_some()
    }

    /// The offset of `rva`: a real one, a fake one for a dangling RVA, or `None`.
    pub fn rva_to_offset(&self, rva: u32) -> Option<u32> {
        let unit = self.unit_of_rva(rva)?;
        let delta = rva - unit.rva_begin;
        // Below BOUND by construction (`offset_bound + rva_bound` was checked).
        Some(if delta < unit.offset_size {
            delta + unit.offset_begin
        } else {
            self.fake_offset_begin + rva
        })
    }

    /// The RVA of `offset` (real or fake), or [`INVALID_RVA`].
    pub fn offset_to_rva(&self, offset: u32) -> u32 {
        if offset >= self.fake_offset_begin {
            let rva = offset - self.fake_offset_begin;
            return match self.unit_of_rva(rva) {
                Some(u) if u.has_dangling_rva() && rva - u.rva_begin >= u.offset_size => rva,
                _ => INVALID_RVA,
            };
        }
        match self.unit_of_offset(offset) {
            Some(u) => offset - u.offset_begin + u.rva_begin,
            None => INVALID_RVA,
        }
    }
}
