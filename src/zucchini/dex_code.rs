//! DEX code items and Dalvik instructions as Zucchini's DEX disassembler walks them
//! (`CodeItemParser`, `InstructionParser`, `type_dex.h`'s `kByteCode`): a code item's 16-byte
//! header, its `insns` and, when it has tries, the try items and the uleb128/sleb128-coded
//! handler lists to skip; then its instructions one after another, each known opcode's length
//! in 16-bit units, up to the first unknown opcode or the payload (fill-array-data and switch
//! tables) the 31t instructions point to.

use super::dex::Source;

/// A known opcode: the first opcode of its `kByteCode` entry (the reference filters match
/// entries, e.g. 0x52 for every `iget`/`iput`) and its length in 16-bit units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Op {
    pub base: u8,
    pub units: u8,
}

/// `kByteCode`: (first opcode, units, how many consecutive opcodes share it). The opcodes it
/// lacks (0x3E-0x43, 0x73, 0x79-0x7A, 0xE3-0xF9) are unknown and end a code item's walk.
const BYTECODE: &[(u8, u8, u8)] = &[
    (0x00, 1, 1),
    (0x01, 1, 1),
    (0x02, 2, 1),
    (0x03, 3, 1),
    (0x04, 1, 1),
    (0x05, 2, 1),
    (0x06, 3, 1),
    (0x07, 1, 1),
    (0x08, 2, 1),
    (0x09, 3, 1),
    (0x0A, 1, 1),
    (0x0B, 1, 1),
    (0x0C, 1, 1),
    (0x0D, 1, 1),
    (0x0E, 1, 1),
    (0x0F, 1, 1),
    (0x10, 1, 1),
    (0x11, 1, 1),
    (0x12, 1, 1),
    (0x13, 2, 1),
    (0x14, 3, 1),
    (0x15, 2, 1),
    (0x16, 2, 1),
    (0x17, 3, 1),
    (0x18, 5, 1),
    (0x19, 2, 1),
    (0x1A, 2, 1),
    (0x1B, 3, 1),
    (0x1C, 2, 1),
    (0x1D, 1, 1),
    (0x1E, 1, 1),
    (0x1F, 2, 1),
    (0x20, 2, 1),
    (0x21, 1, 1),
    (0x22, 2, 1),
    (0x23, 2, 1),
    (0x24, 3, 1),
    (0x25, 3, 1),
    (0x26, 3, 1),
    (0x27, 1, 1),
    (0x28, 1, 1),
    (0x29, 2, 1),
    (0x2A, 3, 1),
    (0x2B, 3, 1),
    (0x2C, 3, 1),
    (0x2D, 2, 5),
    (0x32, 2, 6),
    (0x38, 2, 6),
    (0x44, 2, 14),
    (0x52, 2, 14),
    (0x60, 2, 14),
    (0x6E, 3, 5),
    (0x74, 3, 5),
    (0x7B, 1, 21),
    (0x90, 2, 32),
    (0xB0, 1, 32),
    (0xD0, 2, 8),
    (0xD8, 2, 11),
    (0xFA, 4, 1),
    (0xFB, 4, 1),
    (0xFC, 3, 1),
    (0xFD, 3, 1),
    (0xFE, 2, 1),
    (0xFF, 2, 1),
];

/// The entry of `opcode`, if known.
pub(super) fn op(opcode: u8) -> Option<Op> {
    BYTECODE
        .iter()
        .find(|&&(base, _, count)| {
            opcode >= base && u16::from(opcode) < u16::from(base) + u16::from(count)
        })
        .map(|&(base, units, _)| Op { base, units })
}

/// `CodeItemParser::GetNext`: the next code item's offset (4-aligned), the cursor moved past
/// it; `None` for a malformed one.
pub(super) fn skip_code_item(source: &mut Source) -> Option<u32> {
    if !source.align4() {
        return None;
    }
    let at = u32::try_from(source.pos).ok()?;
    let header: [u8; 16] = source.take()?;
    let tries = u16::from_le_bytes([header[6], header[7]]);
    let insns = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if !source.skip_array(insns as usize, 2) {
        return None;
    }
    if tries > 0 {
        if !source.align4() || !source.skip_array(usize::from(tries), 8) {
            return None;
        }
        let handlers = source.uleb()?;
        if source.remaining() < handlers as usize {
            return None;
        }
        for _ in 0..handlers {
            let size = source.sleb()?;
            let pairs = size.unsigned_abs() as usize;
            if source.remaining() < pairs {
                return None;
            }
            for _ in 0..pairs {
                source.uleb()?;
                source.uleb()?;
            }
            if size <= 0 {
                source.uleb()?;
            }
        }
    }
    Some(at)
}

/// `InstructionParser` over one code item's `insns`: yields each instruction's offset and
/// entry until the end, the payload boundary, or an unknown or truncated instruction.
pub(super) struct Instructions<'a> {
    image: &'a [u8],
    at: usize,
    end: usize,
    boundary: usize,
}

impl<'a> Instructions<'a> {
    /// The instructions of the code item at `code_item` (one `Dex::parse` accepted, so its
    /// `insns` lie in the image).
    pub fn new(image: &'a [u8], code_item: u32) -> Option<Self> {
        let at = usize::try_from(code_item).ok()?.checked_add(16)?;
        let units = image.get(at - 4..at)?;
        let units = u32::from_le_bytes([units[0], units[1], units[2], units[3]]) as usize;
        let end = at.checked_add(units.checked_mul(2)?)?;
        if end > image.len() {
            return None;
        }
        Some(Self {
            image,
            at,
            end,
            boundary: end,
        })
    }
}

impl Iterator for Instructions<'_> {
    type Item = (u32, Op);

    fn next(&mut self) -> Option<(u32, Op)> {
        if self.at >= self.boundary {
            return None;
        }
        let op = op(*self.image.get(self.at)?)?;
        let len = usize::from(op.units) * 2;
        let left = self.end - self.at;
        if left < len {
            return None;
        }
        // fill-array-data, packed-switch, sparse-switch: their payload, after them in this
        // code item, ends the instructions.
        if matches!(op.base, 0x26 | 0x2B | 0x2C) {
            let rel = self.image.get(self.at + 2..self.at + 6)?;
            let rel = i32::from_le_bytes([rel[0], rel[1], rel[2], rel[3]]);
            if rel < i32::from(op.units) || rel as u32 as usize >= left / 2 {
                return None;
            }
            self.boundary = self.boundary.min(self.at + rel as usize * 2);
        }
        let at = u32::try_from(self.at).ok()?;
        self.at += len;
        Some((at, op))
    }
}
