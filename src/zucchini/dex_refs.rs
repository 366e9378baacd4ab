//! The DEX disassembler's references (`DisassemblerDex::MakeReferenceGroups`): 42 types over
//! 17 pools, in AOSP's type order (grouped by target pool: string, type, proto, field and
//! method ids, call site ids, method handles, type lists, annotation set ref lists, annotation
//! sets, class data, code, string data, annotations, encoded arrays, annotations directories,
//! call sites), each with AOSP's reader (where its locations are, how a target is read and
//! validated) and writer. The reference delta counts references in exactly this order.
//!
//! Readers follow AOSP's three walkers: fixed-size id items (`ItemReferenceReader`), the
//! parsed variable-length items (`CachedItemListReferenceReader`) and instructions
//! (`InstructionReferenceReader`), with their sentinels (offset 0, index 0xFFFFFFFF) and their
//! way of stopping at an invalid target. Writers that AOSP lets skip a reference (an index past
//! its table, a branch out of range) skip it here too.

use super::dex::{Dex, Kind, Parsed};
use super::dex_code::{Instructions, Op};
use super::references::{Disassembler, Group, Reference, Visit};
use crate::bail;
use crate::error::Result;

/// `kInvalidOffset`.
const INVALID: u32 = u32::MAX - 1;
/// `kDexSentinelIndexAsOffset`: NO_INDEX.
const NO_INDEX: u32 = u32::MAX;
/// `kOffsetBound`.
const OFFSET_BOUND: u32 = u32::MAX / 2;

/// Where a type's references are.
#[derive(Clone, Copy)]
enum At {
    /// A field `rel` bytes into each fixed-size item of a table.
    Item(Kind, u32),
    /// A method handle's field or method id (rel 4), for handle types `lo..=hi` only.
    Handle(u16, u16),
    /// A field `rel` bytes into each parsed variable-length item.
    Parsed(Parsed, u32),
    /// An operand of instructions: the offset of the operand in an instruction, if it has one.
    Code(fn(Op) -> Option<u32>),
}

/// How a reference's target is stored.
#[derive(Clone, Copy)]
enum Value {
    /// An index of `width` bytes into a table.
    Index(u8, Kind),
    /// A file offset (u32).
    Offset,
    /// A branch of `width` bytes, in 16-bit units from its instruction's start.
    Rel(u8),
}

struct Type {
    pool: u8,
    at: At,
    value: Value,
}

const fn t(pool: u8, at: At, value: Value) -> Type {
    Type { pool, at, value }
}

fn code(opcodes: &'static [u8], rel: u32, op: Op) -> Option<u32> {
    opcodes.contains(&op.base).then_some(rel)
}

use At::{Code, Handle, Item};
use Kind::{CallSiteId, ClassDef, FieldId, MethodHandle, MethodId, ProtoId, StringId, TypeId};
use Value::{Index, Offset, Rel};

/// `kNumTypes`.
pub(super) const TYPE_COUNT: usize = 42;

/// `DisassemblerDex::ReferenceType` in order, with its pool (`ReferencePool`).
const TYPES: [Type; TYPE_COUNT] = [
    // kStringId
    t(0, Item(TypeId, 0), Index(4, StringId)),
    t(0, Item(ProtoId, 0), Index(4, StringId)),
    t(0, Item(FieldId, 4), Index(4, StringId)),
    t(0, Item(MethodId, 4), Index(4, StringId)),
    t(0, Item(ClassDef, 16), Index(4, StringId)),
    t(0, Code(|op| code(&[0x1A], 2, op)), Index(2, StringId)),
    t(0, Code(|op| code(&[0x1B], 2, op)), Index(4, StringId)),
    // kTypeId
    t(1, Item(ProtoId, 4), Index(4, TypeId)),
    t(1, Item(FieldId, 0), Index(2, TypeId)),
    t(1, Item(FieldId, 2), Index(2, TypeId)),
    t(1, Item(MethodId, 0), Index(2, TypeId)),
    t(1, Item(ClassDef, 0), Index(4, TypeId)),
    t(1, Item(ClassDef, 8), Index(4, TypeId)),
    t(1, At::Parsed(Parsed::TypeItems, 0), Index(2, TypeId)),
    t(
        1,
        Code(|op| code(&[0x1C, 0x1F, 0x20, 0x22, 0x23, 0x24, 0x25], 2, op)),
        Index(2, TypeId),
    ),
    // kProtoId: invoke-polymorphic's proto is its fourth unit; const-method-type's its second.
    t(
        2,
        Code(|op| match op.base {
            0xFA | 0xFB => Some(6),
            0xFF => Some(2),
            _ => None,
        }),
        Index(2, ProtoId),
    ),
    t(2, Item(MethodId, 2), Index(2, ProtoId)),
    // kFieldId
    t(3, Code(|op| code(&[0x52, 0x60], 2, op)), Index(2, FieldId)),
    t(3, Handle(0, 3), Index(2, FieldId)),
    t(
        3,
        At::Parsed(Parsed::FieldAnnotations, 0),
        Index(4, FieldId),
    ),
    // kMethodId
    t(
        4,
        Code(|op| code(&[0x6E, 0x74, 0xFA, 0xFB], 2, op)),
        Index(2, MethodId),
    ),
    t(4, Handle(4, 8), Index(2, MethodId)),
    t(
        4,
        At::Parsed(Parsed::MethodAnnotations, 0),
        Index(4, MethodId),
    ),
    t(
        4,
        At::Parsed(Parsed::ParameterAnnotations, 0),
        Index(4, MethodId),
    ),
    // kCallSiteId, kMethodHandle
    t(
        5,
        Code(|op| code(&[0xFC, 0xFD], 2, op)),
        Index(2, CallSiteId),
    ),
    t(6, Code(|op| code(&[0xFE], 2, op)), Index(2, MethodHandle)),
    // kTypeList
    t(7, Item(ProtoId, 8), Offset),
    t(7, Item(ClassDef, 12), Offset),
    // kAnnotationSetRefList
    t(8, At::Parsed(Parsed::ParameterAnnotations, 4), Offset),
    // kAnnotationSet
    t(9, At::Parsed(Parsed::SetRefs, 0), Offset),
    t(9, At::Parsed(Parsed::Directories, 0), Offset),
    t(9, At::Parsed(Parsed::FieldAnnotations, 4), Offset),
    t(9, At::Parsed(Parsed::MethodAnnotations, 4), Offset),
    // kClassData
    t(10, Item(ClassDef, 24), Offset),
    // kCode: goto; goto/16, if-test, if-testz; fill-array-data, goto/32, the switches.
    t(11, Code(|op| code(&[0x28], 1, op)), Rel(1)),
    t(11, Code(|op| code(&[0x29, 0x32, 0x38], 2, op)), Rel(2)),
    t(
        11,
        Code(|op| code(&[0x26, 0x2A, 0x2B, 0x2C], 2, op)),
        Rel(4),
    ),
    // kStringData, kAnnotation, kEncodedArray, kAnnotationsDirectory, kCallSite
    t(12, Item(StringId, 0), Offset),
    t(13, At::Parsed(Parsed::SetEntries, 0), Offset),
    t(14, Item(ClassDef, 28), Offset),
    t(15, Item(ClassDef, 20), Offset),
    t(16, Item(CallSiteId, 0), Offset),
];

/// The pools of [`TYPES`], for reference correction.
static GROUPS: [Group; TYPE_COUNT] = {
    let mut out = [Group { pool: 0 }; TYPE_COUNT];
    let mut i = 0;
    while i < TYPE_COUNT {
        out[i] = Group {
            pool: TYPES[i].pool,
        };
        i += 1;
    }
    out
};

fn le(image: &[u8], at: u32, width: u8) -> Result<u32> {
    let at = at as usize;
    let Some(bytes) = at
        .checked_add(usize::from(width))
        .and_then(|end| image.get(at..end))
    else {
        bail!(MalformedPayload, "zucchini DEX reference outside the image");
    };
    let mut word = [0u8; 4];
    word[..bytes.len()].copy_from_slice(bytes);
    Ok(u32::from_le_bytes(word))
}

impl Dex {
    /// The target of the reference at `location` (AOSP's mappers), [`INVALID`] when AOSP's is.
    fn target(&self, image: &[u8], value: Value, location: u32) -> Result<u32> {
        Ok(match value {
            // `ReadTargetIndex`.
            Index(width, kind) => {
                let index = le(image, location, width)?;
                let table = self.item(kind);
                if index == NO_INDEX {
                    NO_INDEX
                } else if index >= table.size {
                    INVALID
                } else {
                    // Inside the table, which `Dex::parse` found inside the image.
                    table.offset + index * kind.item_size()
                }
            }
            // `ReadTargetOffset32`.
            Offset => match le(image, location, 4)? {
                0 => 0,
                v if v >= self.size => INVALID,
                v => v,
            },
            // The branch counts units from the instruction, one unit (rel8: one byte) before.
            Rel(4) => {
                let delta = i64::from(le(image, location, 4)? as i32);
                let target = i64::from(location) + (delta - 1) * 2;
                match u32::try_from(target) {
                    Ok(t) if t < OFFSET_BOUND => t,
                    _ => INVALID,
                }
            }
            Rel(width) => {
                let raw = le(image, location, width)?;
                let delta = if width == 1 {
                    i32::from(raw as u8 as i8)
                } else {
                    i32::from(raw as u16 as i16)
                };
                // AOSP's offset arithmetic wraps.
                location.wrapping_add(delta.wrapping_sub(1).wrapping_mul(2) as u32)
            }
        })
    }

    /// `ItemReferenceReader`.
    fn read_items(&self, image: &[u8], ty: &Type, lo: u32, hi: u32, f: &mut Visit) -> Result<()> {
        let (kind, rel, handle) = match ty.at {
            Item(kind, rel) => (kind, rel, None),
            Handle(min, max) => (MethodHandle, 4, Some((min, max))),
            _ => return Ok(()),
        };
        let table = self.item(kind);
        let size = kind.item_size();
        // In the image, so below 2^32.
        let offset_of = |i: u32| table.offset + i * size;
        let mut i = if table.offset == 0 {
            table.size
        } else if lo < table.offset {
            0
        } else if lo < offset_of(table.size) {
            let i = (lo - table.offset) / size;
            if lo > offset_of(i) + rel {
                i + 1
            } else {
                i
            }
        } else {
            table.size
        };
        while i < table.size {
            let item = offset_of(i);
            let location = item + rel;
            if location >= hi {
                break;
            }
            let target = match handle {
                // `ReadMethodHandleFieldOrMethodId`: the handle's type picks the table.
                Some((min, max)) => match le(image, item, 2)? as u16 {
                    kind if kind >= 9 => INVALID,
                    kind if kind < min || kind > max => NO_INDEX,
                    _ => self.target(image, ty.value, location)?,
                },
                None => self.target(image, ty.value, location)?,
            };
            i += 1;
            if target == 0 || target == NO_INDEX {
                continue;
            }
            if target == INVALID {
                break;
            }
            f(Reference { location, target })?;
        }
        Ok(())
    }

    /// `CachedItemListReferenceReader`.
    fn read_list(&self, image: &[u8], ty: &Type, lo: u32, hi: u32, f: &mut Visit) -> Result<()> {
        let At::Parsed(list, rel) = ty.at else {
            return Ok(());
        };
        let items = self.list(list);
        let mut i = items.partition_point(|&o| o <= lo);
        if i > 0 && items[i - 1] + rel >= lo {
            i -= 1;
        }
        for &item in &items[i..] {
            let location = item + rel;
            if location >= hi {
                break;
            }
            match self.target(image, ty.value, location)? {
                INVALID => break,
                0 => continue,
                target => f(Reference { location, target })?,
            }
        }
        Ok(())
    }

    /// `InstructionReferenceReader`: from the code item holding `lo` on.
    fn read_code(&self, image: &[u8], ty: &Type, lo: u32, hi: u32, f: &mut Visit) -> Result<()> {
        let Code(filter) = ty.at else {
            return Ok(());
        };
        let first = self
            .code_items
            .partition_point(|&o| o <= lo)
            .saturating_sub(1);
        for &code_item in &self.code_items[first..] {
            let Some(instructions) = Instructions::new(image, code_item) else {
                bail!(MalformedPayload, "zucchini DEX code item outside the image");
            };
            for (at, op) in instructions {
                if at >= hi {
                    return Ok(());
                }
                let Some(location) = filter(op).map(|rel| at + rel) else {
                    continue;
                };
                if location < lo {
                    continue;
                }
                if location >= hi {
                    return Ok(());
                }
                let target = self.target(image, ty.value, location)?;
                if target != INVALID {
                    f(Reference { location, target })?;
                }
            }
        }
        Ok(())
    }
}

fn put(image: &mut [u8], at: u32, bytes: &[u8]) -> Result<()> {
    let at = at as usize;
    match at
        .checked_add(bytes.len())
        .and_then(|end| image.get_mut(at..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => bail!(
            MalformedPayload,
            "zucchini DEX reference written outside the image"
        ),
    }
}

impl Disassembler for Dex {
    fn groups(&self) -> &'static [Group] {
        &GROUPS
    }

    fn references(
        &self,
        image: &[u8],
        group: usize,
        lo: u32,
        hi: u32,
        f: &mut Visit,
    ) -> Result<()> {
        let Some(ty) = TYPES.get(group) else {
            return Ok(());
        };
        match ty.at {
            Item(..) | Handle(..) => self.read_items(image, ty, lo, hi, f),
            At::Parsed(..) => self.read_list(image, ty, lo, hi, f),
            Code(_) => self.read_code(image, ty, lo, hi, f),
        }
    }

    fn write(&self, image: &mut [u8], group: usize, r: Reference) -> Result<()> {
        let Some(ty) = TYPES.get(group) else {
            bail!(MalformedPayload, "zucchini DEX reference type {group}");
        };
        match ty.value {
            // `WriteTargetIndex`: an index past the table is skipped, as AOSP logs and skips.
            Index(width, kind) => {
                let table = self.item(kind);
                let index =
                    u64::from(r.target.wrapping_sub(table.offset)) / u64::from(kind.item_size());
                if index >= u64::from(table.size) {
                    return Ok(());
                }
                if width == 2 {
                    let Ok(index) = u16::try_from(index) else {
                        bail!(MalformedPayload, "zucchini DEX index {index} past 16 bits");
                    };
                    put(image, r.location, &index.to_le_bytes())
                } else {
                    // Below the table's u32 size.
                    put(image, r.location, &(index as u32).to_le_bytes())
                }
            }
            Offset => put(image, r.location, &r.target.to_le_bytes()),
            // Units from the instruction's start; a branch out of range is skipped, as in AOSP.
            Rel(width) => {
                let delta = (i64::from(r.target) - i64::from(r.location)) / 2 + 1;
                match width {
                    1 => i8::try_from(delta)
                        .map_or(Ok(()), |d| put(image, r.location, &d.to_le_bytes())),
                    2 => i16::try_from(delta)
                        .map_or(Ok(()), |d| put(image, r.location, &d.to_le_bytes())),
                    _ => i32::try_from(delta)
                        .map_or(Ok(()), |d| put(image, r.location, &d.to_le_bytes())),
                }
            }
        }
    }
}
