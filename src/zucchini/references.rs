//! Reference correction, Zucchini's `ApplyReferencesCorrection`: after the equivalences and raw
//! delta built a new executable element, every reference (a pointer, a branch, a relocation)
//! the equivalences copied from the old element is rewritten to point where it should in the
//! new one. Per pool of targets: the old references' targets projected through the
//! equivalences plus the patch's extra targets make a sorted target pool; each copied
//! reference's target is projected too, and the patch's reference delta says how many pool
//! entries away from the nearest one its new target is.
//!
//! Memory is bounded by the element (its references, equivalences) and the patch's streams;
//! nothing is sized by a count the patch claims.

use super::patch::{var_i32, var_u32, Element, Equivalence};
use super::{gnu_sort, llvm_sort};
use crate::bail;
use crate::error::Result;

/// A reference: the offset of its bytes and the offset it points to (which may be a fake
/// offset past the image, for a target with no file bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Reference {
    pub location: u32,
    pub target: u32,
}

/// One kind of reference a disassembler finds: its type tag (its index in the group list)
/// and the pool its targets share with other types.
#[derive(Clone, Copy, Debug)]
pub(super) struct Group {
    pub pool: u8,
}

/// A visitor of references; an error stops the walk.
pub(super) type Visit<'a> = dyn FnMut(Reference) -> Result<()> + 'a;

/// What reference correction needs from a disassembler parsed from one image.
pub(super) trait Disassembler {
    /// The reference types, in type-tag order.
    fn groups(&self) -> &'static [Group];

    /// Calls `f` with each reference of `group` whose location lies in `lo..hi` of `image`
    /// (the image this disassembler was parsed from), in location order. Fails when a
    /// reference's bytes straddle `lo` or `hi`, which no generator's equivalence does.
    fn references(&self, image: &[u8], group: usize, lo: u32, hi: u32, f: &mut Visit)
        -> Result<()>;

    /// Writes `reference` of `group` into `image` (the image this was parsed from).
    fn write(&self, image: &mut [u8], group: usize, reference: Reference) -> Result<()>;
}

/// Which C++ library's `std::sort` put the generator's equivalences in source order. It is not
/// stable, and when two equivalences share a source the one left first survives pruning, so
/// every projected reference depends on it; a patch does not say which library made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// LLVM libc++, as AOSP's clang builds `delta_generator` and `update_engine`.
    Libcxx,
    /// GNU libstdc++, as g++ builds (this project's AOSP `zucchini` oracle).
    Libstdcxx,
}

/// Offsets below this are valid (`kOffsetBound`).
const OFFSET_BOUND: u32 = u32::MAX / 2;

/// Zucchini's `OffsetMapper`: the equivalences with overlaps in the old element removed
/// (`PruneEquivalencesAndSortBySource`), sorted by source.
struct OffsetMapper {
    equivalences: Vec<Equivalence>,
    old_size: u32,
    new_size: u32,
}

impl OffsetMapper {
    fn new(
        mut equivalences: Vec<Equivalence>,
        old_size: u32,
        new_size: u32,
        order: SortOrder,
    ) -> Self {
        // Not stable: equal sources end up in the order `std::sort` leaves them.
        let by_source = |a: &Equivalence, b: &Equivalence| a.src < b.src;
        match order {
            SortOrder::Libcxx => llvm_sort::sort(&mut equivalences, by_source),
            SortOrder::Libstdcxx => gnu_sort::sort(&mut equivalences, by_source),
        }
        let n = equivalences.len();
        let mut current = 0;
        while current < n {
            let cur = equivalences[current];
            let cur_end = u64::from(cur.src) + u64::from(cur.len);
            let mut next = current + 1;
            let mut reaper = false;
            while next < n && u64::from(equivalences[next].src) < cur_end {
                if cur.len < equivalences[next].len {
                    // `next` is longer: it truncates `current` and swallows those between.
                    let delta = cur_end - u64::from(equivalences[next].src);
                    equivalences[current].len = cur.len - delta as u32;
                    reaper = true;
                    break;
                }
                next += 1;
            }
            if reaper {
                for e in &mut equivalences[current + 1..next] {
                    e.len = 0;
                }
                current = next;
            } else {
                for e in &mut equivalences[current + 1..next] {
                    // src < cur_end <= src + len for the overlapping ones.
                    let delta = (cur_end - u64::from(e.src)) as u32;
                    e.len -= e.len.min(delta);
                    e.src = e.src.wrapping_add(delta);
                    e.dst = e.dst.wrapping_add(delta);
                }
                current += 1;
            }
        }
        equivalences.retain(|e| e.len != 0);
        Self {
            equivalences,
            old_size,
            new_size,
        }
    }

    /// `ExtendedForwardProject`: an old offset through the nearest equivalence, clamped into
    /// the new element; a fake offset past the old element moves to past the new one.
    fn extended_forward_project(&self, offset: u32) -> u32 {
        if offset >= self.old_size {
            let delta = offset - self.old_size;
            return if delta < OFFSET_BOUND.wrapping_sub(self.new_size) {
                self.new_size.wrapping_add(delta)
            } else {
                OFFSET_BOUND - 1
            };
        }
        let eqs = &self.equivalences;
        let mut pos = eqs.partition_point(|e| e.src <= offset);
        if pos > 0 {
            let prev = eqs[pos - 1];
            let prev_end = u64::from(prev.src) + u64::from(prev.len);
            let take_prev = match eqs.get(pos) {
                None => true,
                Some(next) => {
                    u64::from(offset) < prev_end
                        || u64::from(offset) - prev_end < u64::from(next.src - offset)
                }
            };
            if take_prev {
                pos -= 1;
            }
        }
        let Some(unit) = eqs.get(pos) else {
            // Only reached with no equivalences, when there is no reference to project.
            return 0;
        };
        let projected = i64::from(offset) - i64::from(unit.src) + i64::from(unit.dst);
        let last = i64::from(self.new_size.saturating_sub(1));
        projected.clamp(0, last) as u32
    }

    /// `ForwardProjectAll`: sorted offsets mapped through the equivalence covering them;
    /// those no equivalence covers are dropped.
    fn forward_project_all(&self, offsets: &mut Vec<u32>) {
        let mut current = self.equivalences.iter().peekable();
        offsets.retain_mut(|src| {
            while let Some(e) = current.peek() {
                if u64::from(e.src) + u64::from(e.len) <= u64::from(*src) {
                    current.next();
                } else {
                    break;
                }
            }
            match current.peek() {
                Some(e) if e.src <= *src => {
                    *src = *src - e.src + e.dst;
                    true
                }
                _ => false,
            }
        });
    }
}

/// `TargetPool::KeyForNearestOffset`: the index of the pool entry nearest `offset`, the lower
/// one on a tie.
fn key_for_nearest(targets: &[u32], offset: u32) -> u32 {
    let mut pos = targets.partition_point(|&t| t < offset);
    if pos > 0 {
        let nearer_below = match targets.get(pos) {
            None => true,
            Some(&t) => t - offset >= offset - targets[pos - 1],
        };
        if nearer_below {
            pos -= 1;
        }
    }
    // A pool has at most one entry per byte of the element or of the patch.
    pos as u32
}

/// Appends the patch's extra targets (delta-coded, ascending) to `targets`.
fn extra_targets(mut stream: &[u8], targets: &mut Vec<u32>) -> Result<()> {
    let mut compensation = 0u32;
    while !stream.is_empty() {
        let target = var_u32(&mut stream).and_then(|diff| diff.checked_add(compensation));
        let Some(target) = target else {
            bail!(MalformedPayload, "zucchini extra targets malformed");
        };
        targets.push(target);
        let Some(next) = target.checked_add(1) else {
            bail!(MalformedPayload, "zucchini extra targets malformed");
        };
        compensation = next;
    }
    Ok(())
}

/// The element's equivalences in patch order.
fn equivalences(element: &Element) -> Vec<Equivalence> {
    let mut out = Vec::new();
    let mut source = element.equivalences.clone();
    while let Some(eq) = source.next() {
        out.push(eq);
    }
    out
}

/// Whether the two libraries' sorts leave the element's equivalences pruned differently
/// (equal sources in another order that changes which survive), so that reference correction
/// in one order may make other bytes than in the other.
pub(super) fn orders_differ(element: &Element) -> bool {
    let eqs = equivalences(element);
    let mapped = |order| OffsetMapper::new(eqs.clone(), u32::MAX, u32::MAX, order).equivalences;
    mapped(SortOrder::Libcxx) != mapped(SortOrder::Libstdcxx)
}

/// Corrects the references of `new` (the element as equivalences and raw delta left it) from
/// those of `old`: `old_dis` is parsed from `old`, `new_dis` from `new`, of the same type;
/// equal-source equivalences are ordered as `order`'s `std::sort` leaves them.
pub(super) fn correct(
    element: &Element,
    old: &[u8],
    old_dis: &dyn Disassembler,
    new: &mut [u8],
    new_dis: &dyn Disassembler,
    order: SortOrder,
) -> Result<()> {
    let equivalences = equivalences(element);
    // `Patch::parse` bounded both element sizes by u32.
    let (old_size, new_size) = (old.len() as u32, new.len() as u32);
    let mapper = OffsetMapper::new(equivalences.clone(), old_size, new_size, order);
    let groups = old_dis.groups();
    let mut pools: Vec<u8> = groups.iter().map(|g| g.pool).collect();
    pools.sort_unstable();
    pools.dedup();
    let mut deltas = element.reference_delta;
    for pool in pools {
        let members: Vec<usize> = (0..groups.len())
            .filter(|&i| groups[i].pool == pool)
            .collect();
        let mut targets = Vec::new();
        for &group in &members {
            old_dis.references(old, group, 0, old_size, &mut |r| {
                targets.push(r.target);
                Ok(())
            })?;
        }
        targets.sort_unstable();
        targets.dedup();
        mapper.forward_project_all(&mut targets);
        if let Some(&(_, stream)) = element.extra_targets.iter().find(|(tag, _)| *tag == pool) {
            extra_targets(stream, &mut targets)?;
        }
        targets.sort_unstable();
        targets.dedup();
        for &group in &members {
            for eq in &equivalences {
                let src_end = eq.src.saturating_add(eq.len);
                old_dis.references(old, group, eq.src, src_end, &mut |r| {
                    let projected = mapper.extended_forward_project(r.target);
                    let expected = key_for_nearest(&targets, projected);
                    if deltas.is_empty() {
                        bail!(MalformedPayload, "zucchini reference delta runs out");
                    }
                    let Some(delta) = var_i32(&mut deltas) else {
                        bail!(MalformedPayload, "zucchini reference delta malformed");
                    };
                    let key = expected.wrapping_add_signed(delta);
                    let Some(&target) = targets.get(key as usize) else {
                        bail!(MalformedPayload, "zucchini reference delta past its pool");
                    };
                    // Readers start at the equivalence; the writer checks the end.
                    let Some(location) = r
                        .location
                        .checked_sub(eq.src)
                        .and_then(|d| d.checked_add(eq.dst))
                    else {
                        bail!(
                            MalformedPayload,
                            "zucchini reference outside its equivalence"
                        );
                    };
                    new_dis.write(new, group, Reference { location, target })
                })?;
            }
        }
    }
    if !deltas.is_empty() {
        bail!(MalformedPayload, "zucchini reference delta left over");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(src: u32, dst: u32, len: u32) -> Equivalence {
        Equivalence { src, dst, len }
    }

    #[test]
    fn overlapping_equivalences_are_pruned_and_offsets_projected() {
        // The longer block at 10 truncates the one at 0 and swallows the short one at 12; the
        // one at 30 loses what the block at 10 covers.
        let mapper = OffsetMapper::new(
            vec![
                eq(0, 100, 15),
                eq(12, 200, 2),
                eq(10, 300, 20),
                eq(25, 400, 10),
            ],
            50,
            1000,
            SortOrder::Libstdcxx,
        );
        assert_eq!(
            mapper.equivalences,
            vec![eq(0, 100, 10), eq(10, 300, 20), eq(30, 405, 5)]
        );
        let mut offsets = vec![5, 12, 29, 30, 40];
        mapper.forward_project_all(&mut offsets);
        assert_eq!(offsets, vec![105, 302, 319, 405]);
        // Nearest block (the lower on a tie), clamped into the new element; fake offsets move.
        assert_eq!(mapper.extended_forward_project(40), 415);
        assert_eq!(mapper.extended_forward_project(50), 1000);
        assert_eq!(key_for_nearest(&[10, 20, 30], 15), 0);
        assert_eq!(key_for_nearest(&[10, 20, 30], 16), 1);
        assert_eq!(key_for_nearest(&[10, 20, 30], 99), 2);
        assert_eq!(key_for_nearest(&[], 5), 0);
    }
}
