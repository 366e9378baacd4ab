//! Zucchini's DEX disassembler (`disassembler_dex.cc`, element type `DEX `, version 1): the
//! container. A DEX image is parsed as AOSP's `DisassemblerDex::ParseHeader` does: the header
//! (magic `dex\n035\0`, `037`, `038` or `039`, the file size and map offset), the map list (at
//! most 21 items, each type once, each table inside the file), then the variable-length
//! sections whose items hold references: type lists, annotation set ref lists, annotation sets,
//! annotations directories (with their field, method and parameter annotations) and code items.
//! Any structural fault means "not a DEX", as in AOSP. The references themselves (42 types over
//! 17 pools) are in [`super::dex_refs`]; code items and instructions in [`super::dex_code`].
//!
//! The parse keeps offsets only, no borrow of the image, so the new element can be parsed and
//! then written in place, as the ELF disassembler is.

use super::dex_code;

/// `sizeof(dex::HeaderItem)`.
const HEADER_SIZE: u32 = 0x70;
/// `kMaxItemListSize`: the map list's most entries.
const MAX_MAP_ITEMS: u32 = 21;

/// The map item types the references use, by their DEX type codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    StringId,
    TypeId,
    ProtoId,
    FieldId,
    MethodId,
    ClassDef,
    CallSiteId,
    MethodHandle,
    TypeList,
    AnnotationSetRefList,
    AnnotationSet,
    Code,
    AnnotationsDirectory,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::StringId,
        Kind::TypeId,
        Kind::ProtoId,
        Kind::FieldId,
        Kind::MethodId,
        Kind::ClassDef,
        Kind::CallSiteId,
        Kind::MethodHandle,
        Kind::TypeList,
        Kind::AnnotationSetRefList,
        Kind::AnnotationSet,
        Kind::Code,
        Kind::AnnotationsDirectory,
    ];

    fn type_code(self) -> u16 {
        match self {
            Kind::StringId => 0x0001,
            Kind::TypeId => 0x0002,
            Kind::ProtoId => 0x0003,
            Kind::FieldId => 0x0004,
            Kind::MethodId => 0x0005,
            Kind::ClassDef => 0x0006,
            Kind::CallSiteId => 0x0007,
            Kind::MethodHandle => 0x0008,
            Kind::TypeList => 0x1001,
            Kind::AnnotationSetRefList => 0x1002,
            Kind::AnnotationSet => 0x1003,
            Kind::Code => 0x2001,
            Kind::AnnotationsDirectory => 0x2006,
        }
    }

    /// The item's size (`sizeof` of its struct): exact for the fixed-size id tables, a lower
    /// bound (the header) for the variable-length ones.
    pub fn item_size(self) -> u32 {
        match self {
            Kind::StringId | Kind::TypeId | Kind::CallSiteId => 4,
            Kind::ProtoId => 12,
            Kind::FieldId | Kind::MethodId | Kind::MethodHandle => 8,
            Kind::ClassDef => 32,
            Kind::TypeList | Kind::AnnotationSetRefList | Kind::AnnotationSet => 4,
            Kind::Code | Kind::AnnotationsDirectory => 16,
        }
    }
}

/// AOSP's `GetItemBaseSize`: 1 for the types no reference uses.
fn base_size(type_code: u16) -> u32 {
    Kind::ALL
        .iter()
        .find(|k| k.type_code() == type_code)
        .map_or(1, |k| k.item_size())
}

/// A map item: `size` items from `offset`; both 0 when the map lacks the type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct MapItem {
    pub size: u32,
    pub offset: u32,
}

/// The parsed variable-length items whose fields are references, as sorted offsets.
#[derive(Clone, Copy, Debug)]
pub(super) enum Parsed {
    /// Each `type_item` of every type list.
    TypeItems,
    /// Each `annotation_set_ref_item`.
    SetRefs,
    /// Each `annotation_off_item` of every annotation set.
    SetEntries,
    /// Each `annotations_directory_item`.
    Directories,
    /// Each `field_annotation`, `method_annotation`, `parameter_annotation`.
    FieldAnnotations,
    MethodAnnotations,
    ParameterAnnotations,
}

/// `BufferView::covers_array`: `num` items of `elt` bytes from `offset` lie in `len` bytes.
pub(super) fn covers_array(len: usize, offset: usize, num: usize, elt: usize) -> bool {
    offset <= len && (len - offset) / elt >= num
}

/// A cursor over the image (cut to `file_size`), with `BufferSource`'s rules.
pub(super) struct Source<'a> {
    pub image: &'a [u8],
    pub pos: usize,
}

impl<'a> Source<'a> {
    /// At `offset` (clamped to the end, as `Skip` does).
    pub fn at(image: &'a [u8], offset: usize) -> Self {
        Self {
            image,
            pos: offset.min(image.len()),
        }
    }

    pub fn remaining(&self) -> usize {
        self.image.len() - self.pos
    }

    /// `AlignOn(image, 4)`: to the next multiple of 4 from the image start, if inside.
    pub fn align4(&mut self) -> bool {
        match self.pos.checked_next_multiple_of(4) {
            Some(aligned) if aligned <= self.image.len() => {
                self.pos = aligned;
                true
            }
            _ => false,
        }
    }

    /// `GetArray`: skips `count` items of `width` bytes if they are all there.
    pub fn skip_array(&mut self, count: usize, width: usize) -> bool {
        if self.remaining() / width < count {
            return false;
        }
        self.pos += count * width;
        true
    }

    pub fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes: [u8; N] = self.image.get(self.pos..)?.get(..N)?.try_into().ok()?;
        self.pos += N;
        Some(bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    /// `GetUleb128`/`GetSleb128`/`SkipLeb128`: at most 5 bytes, bits past 32 dropped; the
    /// value and the number of bits it has (for sign extension).
    fn leb(&mut self) -> Option<(u32, u32)> {
        let mut value = 0u32;
        let rest = self.image.get(self.pos..)?;
        for (i, &b) in rest.iter().take(5).enumerate() {
            // The fifth byte's high bits fall off the 32-bit value, as in AOSP.
            value |= u32::from(b & 0x7f).checked_shl(7 * i as u32).unwrap_or(0);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Some((value, 7 * i as u32));
            }
        }
        None
    }

    pub fn uleb(&mut self) -> Option<u32> {
        self.leb().map(|(v, _)| v)
    }

    pub fn sleb(&mut self) -> Option<i32> {
        let (value, shift) = self.leb()?;
        // Sign bit at `shift + 6`; a fifth byte's value is taken whole.
        Some(if shift == 28 {
            value as i32
        } else {
            let unused = 32 - (shift + 7);
            ((value << unused) as i32) >> unused
        })
    }
}

/// A parsed DEX image: its size, map items and the offsets of the items holding references.
#[derive(Clone, Debug)]
pub(super) struct Dex {
    /// `file_size`: the disassembler's extent, which must be the element's.
    pub size: u32,
    items: [MapItem; 13],
    lists: [Vec<u32>; 7],
    /// Each code item's offset, in file order (never empty).
    pub code_items: Vec<u32>,
}

/// `ReadDexHeader`: whether `image` starts with a DEX header AOSP's zucchini takes, and the
/// file size and map offset.
pub(super) fn read_header(image: &[u8]) -> Option<(u32, u32)> {
    let header = image.get(..HEADER_SIZE as usize)?;
    if &header[..4] != b"dex\n" || header[7] != 0 {
        return None;
    }
    if !header[4..7].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !matches!(&header[4..7], b"035" | b"037" | b"038" | b"039") {
        return None;
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (file_size, map_off) = (word(0x20), word(0x34));
    if file_size as usize > image.len() || file_size < HEADER_SIZE || map_off < HEADER_SIZE {
        return None;
    }
    Some((file_size, map_off))
}

impl Dex {
    /// Parses `image` as AOSP does; `None` for anything it would refuse.
    pub fn parse(image: &[u8]) -> Option<Self> {
        let (file_size, map_off) = read_header(image)?;
        let image = image.get(..file_size as usize)?;
        let mut source = Source::at(image, map_off as usize);
        let count = source.u32()?;
        if count > MAX_MAP_ITEMS {
            return None;
        }
        let mut items = [MapItem::default(); 13];
        let mut seen = Vec::new();
        for _ in 0..count {
            let entry: [u8; 12] = source.take()?;
            let kind = u16::from_le_bytes([entry[0], entry[1]]);
            let size = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            let offset = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
            let base = base_size(kind) as usize;
            if !covers_array(image.len(), offset as usize, size as usize, base)
                || seen.contains(&kind)
            {
                return None;
            }
            seen.push(kind);
            if let Some(i) = Kind::ALL.iter().position(|k| k.type_code() == kind) {
                items[i] = MapItem { size, offset };
            }
        }
        let mut dex = Dex {
            size: file_size,
            items,
            lists: Default::default(),
            code_items: Vec::new(),
        };
        let type_lists = dex.jagged(image, Kind::TypeList, 2)?;
        let ref_lists = dex.jagged(image, Kind::AnnotationSetRefList, 4)?;
        let sets = dex.jagged(image, Kind::AnnotationSet, 4)?;
        let [directories, fields, methods, parameters] = dex.directories(image)?;
        dex.lists = [
            type_lists,
            ref_lists,
            sets,
            directories,
            fields,
            methods,
            parameters,
        ];
        let code = dex.item(Kind::Code);
        if !covers_array(image.len(), code.offset as usize, code.size as usize, 16) {
            return None;
        }
        let mut source = Source::at(image, code.offset as usize);
        for _ in 0..code.size {
            let at = dex_code::skip_code_item(&mut source)?;
            dex.code_items.push(at);
        }
        // AOSP requires code items.
        (!dex.code_items.is_empty()).then_some(dex)
    }

    pub fn item(&self, kind: Kind) -> MapItem {
        let i = Kind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        self.items[i]
    }

    pub fn list(&self, list: Parsed) -> &[u32] {
        &self.lists[list as usize]
    }

    /// `ParseItemOffsets`: `size` lists, each 4-aligned, a u32 count then items of `width`.
    fn jagged(&self, image: &[u8], kind: Kind, width: usize) -> Option<Vec<u32>> {
        let item = self.item(kind);
        if !covers_array(image.len(), item.offset as usize, item.size as usize, 4) {
            return None;
        }
        let mut source = Source::at(image, item.offset as usize);
        let mut out = Vec::new();
        for _ in 0..item.size {
            if !source.align4() {
                return None;
            }
            let count = source.u32()? as usize;
            push_items(&mut source, count, width, &mut out)?;
        }
        Some(out)
    }

    /// `ParseAnnotationsDirectoryItems`: each directory (4-aligned, 16-byte header) then its
    /// field, method and parameter annotations (8 bytes each).
    fn directories(&self, image: &[u8]) -> Option<[Vec<u32>; 4]> {
        let item = self.item(Kind::AnnotationsDirectory);
        if !covers_array(image.len(), item.offset as usize, item.size as usize, 16) {
            return None;
        }
        let mut source = Source::at(image, item.offset as usize);
        let mut out: [Vec<u32>; 4] = Default::default();
        for _ in 0..item.size {
            if !source.align4() {
                return None;
            }
            out[0].push(u32::try_from(source.pos).ok()?);
            let header: [u8; 16] = source.take()?;
            let count = |at: usize| {
                u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
                    as usize
            };
            for (list, at) in [(1, 4), (2, 8), (3, 12)] {
                push_items(&mut source, count(at), 8, &mut out[list])?;
            }
        }
        Some(out)
    }
}

/// Records the offsets of `count` items of `width` bytes at the cursor and skips them.
fn push_items(source: &mut Source, count: usize, width: usize, out: &mut Vec<u32>) -> Option<()> {
    if source.remaining() / width < count {
        return None;
    }
    // The items lie in the image, whose size is a u32 (`file_size`).
    out.extend((0..count).map(|i| (source.pos + i * width) as u32));
    source.pos += count * width;
    Some(())
}
