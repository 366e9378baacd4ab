//! ARM branch encodings Zucchini corrects (`arm_utils.cc`): the ARM-mode `B`/`BL`/`BLX` (A24),
//! the Thumb-2 `B<c>` (T8), `B` (T11), `B<c>.W` (T20) and `B.W`/`BL`/`BLX` (T24), and the
//! AArch64 `TBZ`/`TBNZ` (14-bit), `B.cond`/`CBZ`/`CBNZ` (19-bit) and `B`/`BL` (26-bit)
//! immediates. Each reads a target RVA from an instruction at an RVA and writes one back,
//! refusing (as AOSP does) a target it cannot encode.

/// A branch encoding, in the order of its reference type among the disassembler's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Branch {
    A24,
    T8,
    T11,
    T20,
    T24,
    Immd14,
    Immd19,
    Immd26,
}

/// The AArch32 rel32 types (`kRel32_A24` .. `kRel32_T24`).
pub(super) const AARCH32: &[Branch] = &[
    Branch::A24,
    Branch::T8,
    Branch::T11,
    Branch::T20,
    Branch::T24,
];
/// The AArch64 rel32 types (`kRel32_Immd14` .. `kRel32_Immd26`).
pub(super) const AARCH64: &[Branch] = &[Branch::Immd14, Branch::Immd19, Branch::Immd26];

/// `value` sign-extended from bit `top`.
fn sign_extend(value: u32, top: u32) -> i32 {
    let spare = 31 - top;
    ((value << spare) as i32) >> spare
}

/// Whether `disp` fits `bits` signed bits (`SignedFit`).
fn fits(disp: i32, bits: u32) -> bool {
    sign_extend(disp as u32, bits - 1) == disp
}

fn bit(value: u32, n: u32) -> u32 {
    (value >> n) & 1
}

/// The Thumb-2 instruction size that the halfword `code16` starts.
pub(super) fn thumb2_size(code16: u16) -> u32 {
    if code16 & 0xf000 == 0xf000 || code16 & 0xf800 == 0xe800 {
        4
    } else {
        2
    }
}

impl Branch {
    fn is_thumb2(self) -> bool {
        matches!(self, Self::T8 | Self::T11 | Self::T20 | Self::T24)
    }

    /// Alignment of the instruction's RVA.
    fn instr_align(self) -> u32 {
        if self.is_thumb2() {
            2
        } else {
            4
        }
    }

    /// How far ahead of the instruction its PC reads (8 in ARM mode, 4 in Thumb-2, 0 on
    /// AArch64).
    fn pc_ahead(self) -> u32 {
        match self {
            Self::A24 => 8,
            Self::Immd14 | Self::Immd19 | Self::Immd26 => 0,
            _ => 4,
        }
    }

    /// The instruction at `at`: a word, a Thumb-2 halfword, or a Thumb-2 pair of halfwords
    /// (first halfword high).
    pub fn fetch(self, image: &[u8], at: u32) -> Option<u32> {
        let half = |i: u32| {
            let i = at.checked_add(i)? as usize;
            Some(u32::from(u16::from_le_bytes(
                image.get(i..i.checked_add(2)?)?.try_into().ok()?,
            )))
        };
        match self {
            Self::T8 | Self::T11 => half(0),
            Self::T20 | Self::T24 => Some(half(0)? << 16 | half(2)?),
            _ => {
                let i = at as usize;
                Some(u32::from_le_bytes(
                    image.get(i..i.checked_add(4)?)?.try_into().ok()?,
                ))
            }
        }
    }

    /// Stores `code` at `at` as [`Self::fetch`] reads it; false when it does not fit.
    pub fn store(self, image: &mut [u8], at: u32, code: u32) -> bool {
        let bytes: Vec<u8> = match self {
            Self::T8 | Self::T11 => (code as u16).to_le_bytes().to_vec(),
            Self::T20 | Self::T24 => [(code >> 16) as u16, code as u16]
                .iter()
                .flat_map(|h| h.to_le_bytes())
                .collect(),
            _ => code.to_le_bytes().to_vec(),
        };
        let at = at as usize;
        match at
            .checked_add(bytes.len())
            .and_then(|end| image.get_mut(at..end))
        {
            Some(dst) => {
                dst.copy_from_slice(&bytes);
                true
            }
            None => false,
        }
    }

    /// The displacement `code` holds and the alignment of its target, when `code` is this
    /// kind of branch.
    fn decode(self, code: u32) -> Option<(i32, u32)> {
        match self {
            Self::A24 => {
                if !matches!((code >> 24) & 0xf, 0xa | 0xb) {
                    return None;
                }
                let disp = sign_extend(code & 0x00ff_ffff, 23).wrapping_shl(2);
                if code >> 28 == 0xf {
                    // BLX: bit 24 is half a word more.
                    return Some((disp | (bit(code, 24) << 1) as i32, 2));
                }
                Some((disp, 4))
            }
            Self::T8 => (code & 0xf000 == 0xd000 && code & 0x0f00 != 0x0f00)
                .then(|| (sign_extend(code & 0xff, 7) << 1, 2)),
            Self::T11 => (code & 0xf800 == 0xe000).then(|| (sign_extend(code & 0x7ff, 10) << 1, 2)),
            Self::T20 => {
                if code & 0xf800_d000 != 0xf000_8000 || code & 0x03c0_0000 == 0x03c0_0000 {
                    return None;
                }
                let t = ((code >> 16) & 0x3f) << 12
                    | (code & 0x7ff) << 1
                    | bit(code, 26) << 20
                    | bit(code, 11) << 19
                    | bit(code, 13) << 18;
                Some((sign_extend(t, 20), 2))
            }
            Self::T24 => {
                let bits = code & 0xf800_d000;
                if !matches!(bits, 0xf000_9000 | 0xf000_d000 | 0xf000_c000) {
                    return None;
                }
                let s = bit(code, 26);
                let t = ((code >> 16) & 0x3ff) << 12
                    | (code & 0x7ff) << 1
                    | s << 24
                    | (bit(code, 13) ^ s ^ 1) << 23
                    | (bit(code, 11) ^ s ^ 1) << 22;
                let mut align = 2;
                if bits == 0xf000_c000 {
                    // BLX: H must be 0.
                    if code & 1 != 0 {
                        return None;
                    }
                    align = 4;
                }
                Some((sign_extend(t, 24), align))
            }
            Self::Immd14 => matches!(code & 0x7f00_0000, 0x3600_0000 | 0x3700_0000)
                .then(|| (sign_extend((code >> 5) & 0x3fff, 13) << 2, 4)),
            Self::Immd19 => (code & 0xff00_0010 == 0x5400_0000
                || matches!(code & 0x7f00_0000, 0x3400_0000 | 0x3500_0000))
            .then(|| (sign_extend((code >> 5) & 0x7_ffff, 18) << 2, 4)),
            Self::Immd26 => matches!(code & 0xfc00_0000, 0x1400_0000 | 0x9400_0000)
                .then(|| (sign_extend(code & 0x3ff_ffff, 25) << 2, 4)),
        }
    }

    /// `code` with its displacement replaced by `disp`, `None` when it does not fit.
    fn encode(self, disp: i32, code: u32) -> Option<u32> {
        self.decode(code)?;
        let d = disp as u32;
        match self {
            Self::A24 => {
                if !fits(disp, 26) {
                    return None;
                }
                let mut t = code;
                if code >> 28 == 0xf {
                    if disp % 2 != 0 {
                        return None;
                    }
                    t = (t & 0xfeff_ffff) | bit(d, 1) << 24;
                } else if disp % 4 != 0 {
                    return None;
                }
                Some((t & 0xff00_0000) | ((disp >> 2) as u32 & 0x00ff_ffff))
            }
            Self::T8 => (disp % 2 == 0 && fits(disp, 9))
                .then_some((code & 0xff00) | ((disp >> 1) as u32 & 0xff)),
            Self::T11 => (disp % 2 == 0 && fits(disp, 12))
                .then_some((code & 0xf800) | ((disp >> 1) as u32 & 0x7ff)),
            Self::T20 => (disp % 2 == 0 && fits(disp, 21)).then(|| {
                (code & 0xfbc0_d000)
                    | bit(d, 20) << 26
                    | ((d >> 12) & 0x3f) << 16
                    | bit(d, 18) << 13
                    | bit(d, 19) << 11
                    | ((d >> 1) & 0x7ff)
            }),
            Self::T24 => {
                let blx = code & 0xf800_d000 == 0xf000_c000;
                if disp % 2 != 0 || (blx && bit(d, 1) != 0) || !fits(disp, 25) {
                    return None;
                }
                let s = bit(d, 24);
                Some(
                    (code & 0xf800_d000)
                        | s << 26
                        | ((d >> 12) & 0x3ff) << 16
                        | (bit(d, 23) ^ s ^ 1) << 13
                        | (bit(d, 22) ^ s ^ 1) << 11
                        | ((d >> 1) & 0x7ff),
                )
            }
            Self::Immd14 => (disp % 4 == 0 && fits(disp, 16))
                .then_some((code & 0xfff8_001f) | ((d >> 2) & 0x3fff) << 5),
            Self::Immd19 => (disp % 4 == 0 && fits(disp, 21))
                .then_some((code & 0xff00_001f) | ((d >> 2) & 0x7_ffff) << 5),
            Self::Immd26 => (disp % 4 == 0 && fits(disp, 28))
                .then_some((code & 0xfc00_0000) | ((d >> 2) & 0x3ff_ffff)),
        }
    }

    /// The target RVA of `code` at `rva` when it is this kind of branch (`Read*`).
    pub fn read(self, rva: u32, code: u32) -> Option<u32> {
        if rva % self.instr_align() != 0 {
            return None;
        }
        let (disp, align) = self.decode(code)?;
        let target = rva.wrapping_add(self.pc_ahead()).wrapping_add_signed(disp);
        // AArch64 targets are whole words by construction; ARM ones round down.
        Some(target - (target & (align - 1)))
    }

    /// `code` at `rva` re-encoded to reach `target` (`Write*`); `None` when misaligned or
    /// out of reach, which AOSP also leaves unwritten.
    pub fn write(self, rva: u32, target: u32, code: u32) -> Option<u32> {
        if rva % self.instr_align() != 0 {
            return None;
        }
        let align = match self {
            Self::A24 | Self::T24 => self.decode(code)?.1,
            _ => self.instr_align(),
        };
        if target % align != 0 {
            return None;
        }
        let disp = (target as i32).wrapping_sub(rva.wrapping_add(self.pc_ahead()) as i32);
        let disp = disp.wrapping_add(disp.wrapping_neg() & (align as i32 - 1));
        self.encode(disp, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_decode_and_encode_as_the_arm_manuals_lay_them_out() {
        // bl +0x100 at 0x1000 (ARM: PC + 8).
        let bl = 0xeb00_0000 | ((0x100 - 8) / 4);
        assert_eq!(Branch::A24.read(0x1000, bl), Some(0x1100));
        assert_eq!(Branch::A24.write(0x1000, 0x1100, bl), Some(bl));
        // AArch64 bl -8, b.ne +0x40, tbz +0x20; cbz, then out of reach for tbz.
        let bl64 = 0x9400_0000 | (0x3ff_ffff & (-2i32 as u32));
        assert_eq!(Branch::Immd26.read(0x2000, bl64), Some(0x1ff8));
        assert_eq!(Branch::Immd19.read(0x2000, 0x5400_0201), Some(0x2040));
        assert_eq!(Branch::Immd14.read(0x2000, 0x3600_0100), Some(0x2020));
        assert_eq!(
            Branch::Immd14.write(0x2000, 0x2000 + (1 << 16), 0x3600_0100),
            None
        );
        for (branch, code, rva) in [
            (Branch::T8, 0xd1fe_u32, 0x3002),
            (Branch::T11, 0xe7fc, 0x3000),
            (Branch::T20, 0xf040_8004, 0x3000),
            (Branch::T24, 0xf7ff_fffe, 0x3004),
            (Branch::T24, 0xf000_c800, 0x3000),
        ] {
            let target = branch.read(rva, code).unwrap();
            assert_eq!(branch.write(rva, target, code), Some(code), "{branch:?}");
            let mut image = vec![0; 8];
            assert!(branch.store(&mut image, 2, code));
            assert_eq!(branch.fetch(&image, 2), Some(code));
        }
        assert_eq!(thumb2_size(0xf7ff), 4);
        assert_eq!(thumb2_size(0xd1fe), 2);
    }
}
