//! Hand-made ELF elements: reference correction driven by each part of the patch (reference
//! delta, extra targets), hostile reference streams refused with 21, and the pieces
//! (address translation, equivalence pruning, AArch64 branch encoding) on known values.
//! AOSP-made patches of real ELF binaries are tested in `tests/zucchini_aosp.rs`.

use super::address::{Translator, Unit};
use super::elf::{Arch, Elf};
use super::tests::{code, patch, put_var, put_var_signed, Spec};
use super::*;
use crate::ErrorCode;

/// A minimal x86-64 ELF: the header, `.text` at offset 0x40 (RVA 0x1040) holding two calls,
/// at 0x40 to 0x48 and at 0x48 back to 0x40, then `.shstrtab` and the section table.
fn tiny_elf() -> Vec<u8> {
    let mut elf = vec![0u8; 0x128];
    elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    elf[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[40..48].copy_from_slice(&0x68u64.to_le_bytes()); // e_shoff
    elf[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    elf[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
    elf[62..64].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
    let text = [
        0xe8, 3, 0, 0, 0, 0x90, 0x90, 0x90, 0xe8, 0xf3, 0xff, 0xff, 0xff, 0x90, 0x90, 0x90,
    ];
    elf[0x40..0x50].copy_from_slice(&text);
    elf[0x50..0x61].copy_from_slice(b"\0.text\0.shstrtab\0");
    let mut header = |index: usize, fields: [(usize, u64); 6]| {
        let at = 0x68 + index * 64;
        for (offset, value) in fields {
            let width = if offset == 4 || offset == 0 { 4 } else { 8 };
            elf[at + offset..at + offset + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
    };
    // name, type, flags, addr, offset, size
    header(
        1,
        [(0, 1), (4, 1), (8, 6), (16, 0x1040), (24, 0x40), (32, 16)],
    );
    header(2, [(0, 7), (4, 3), (8, 0), (16, 0), (24, 0x50), (32, 17)]);
    elf
}

/// The identity patch of `elf` (one equivalence over it all) with `deltas` and `extra`
/// targets for the rel32 pool (2), making `new`.
fn elf_patch(elf: &[u8], new: &[u8], deltas: &[i32], extra: &[u8]) -> Vec<u8> {
    let mut reference_delta = Vec::new();
    for &d in deltas {
        put_var_signed(&mut reference_delta, d);
    }
    let spec = Spec {
        tag: *b"Ex64",
        equivalences: vec![(0, 0, elf.len() as u32)],
        reference_delta,
        extra_targets: if extra.is_empty() {
            vec![]
        } else {
            vec![(2, extra.to_vec())]
        },
        ..Spec::default()
    };
    patch(elf, new, &spec)
}

fn applied(old: &[u8], bytes: &[u8]) -> Vec<u8> {
    apply(old, &Patch::parse(bytes).unwrap()).unwrap()
}

#[test]
fn the_reference_delta_and_extra_targets_choose_each_new_target() {
    let elf = tiny_elf();
    let parsed = Elf::parse(&elf, Arch::X64, true).unwrap();
    assert_eq!(parsed.size, elf.len());
    // Zero deltas: each call keeps its (projected) target.
    assert_eq!(applied(&elf, &elf_patch(&elf, &elf, &[0, 0], &[])), elf);
    // The second call's target one pool entry up: itself (0x48), `call .-5`.
    let mut new = elf.clone();
    new[0x49..0x4d].copy_from_slice(&(-5i32).to_le_bytes());
    assert_eq!(applied(&elf, &elf_patch(&elf, &new, &[0, 1], &[])), new);
    // An extra target at 0x44 comes between the two; one up from 0x40 is now it.
    let mut extra = vec![];
    put_var(&mut extra, 0x44);
    let mut new = elf.clone();
    new[0x49..0x4d].copy_from_slice(&(0x44i32 - 0x4d).to_le_bytes());
    assert_eq!(applied(&elf, &elf_patch(&elf, &new, &[0, 1], &extra)), new);
}

#[test]
fn hostile_reference_streams_are_refused_with_21() {
    use ErrorCode::MalformedPayload;
    let elf = tiny_elf();
    // Runs out, left over, past the pool (either way), malformed extra targets.
    for deltas in [&[0][..], &[0, 0, 0], &[0, 5], &[-2, 0], &[0, i32::MIN]] {
        let p = elf_patch(&elf, &elf, deltas, &[]);
        assert_eq!(code(&elf, &p), MalformedPayload, "{deltas:?}");
    }
    assert_eq!(
        code(&elf, &elf_patch(&elf, &elf, &[0, 0], &[0xff])),
        MalformedPayload
    );
    let mut reference_delta = vec![0x80];
    reference_delta.push(0x80);
    let spec = Spec {
        tag: *b"Ex64",
        equivalences: vec![(0, 0, elf.len() as u32)],
        reference_delta,
        ..Spec::default()
    };
    assert_eq!(code(&elf, &patch(&elf, &elf, &spec)), MalformedPayload);
    // Not an ELF of the element's type or extent.
    let mut grown = elf.clone();
    grown.push(0);
    assert_eq!(
        code(&grown, &elf_patch(&grown, &grown, &[0, 0], &[])),
        MalformedPayload
    );
    let mut aarch64 = elf.clone();
    aarch64[18] = 183;
    assert_eq!(
        code(&aarch64, &elf_patch(&aarch64, &aarch64, &[], &[])),
        MalformedPayload
    );
}

#[test]
fn the_translator_merges_agreeing_units_and_refuses_clashing_ones() {
    let unit = |offset_begin, offset_size, rva_begin, rva_size| Unit {
        offset_begin,
        offset_size,
        rva_begin,
        rva_size,
    };
    // Overlapping with one shift: one unit; `.bss`-like RVAs past the bytes get fake offsets.
    let t = Translator::new(vec![
        unit(0x100, 0x80, 0x1100, 0x80),
        unit(0x140, 0x80, 0x1140, 0x80),
        unit(0x200, 0, 0x3000, 0x100),
    ])
    .unwrap();
    assert_eq!(t.rva_to_offset(0x11bf), Some(0x1bf));
    assert_eq!(t.offset_to_rva(0x1bf), 0x11bf);
    let fake = t.rva_to_offset(0x3010).unwrap();
    assert!(fake >= 0x1c0);
    assert_eq!(t.offset_to_rva(fake), 0x3010);
    assert_eq!(t.rva_to_offset(0x2000), None);
    // Overlapping RVAs with different shifts, or overlapping offsets: not an image.
    assert!(Translator::new(vec![
        unit(0, 0x80, 0x1000, 0x80),
        unit(0x100, 0x80, 0x1040, 0x80)
    ])
    .is_err());
    assert!(Translator::new(vec![
        unit(0, 0x80, 0x1000, 0x80),
        unit(0x40, 0x80, 0x2000, 0x80)
    ])
    .is_err());
    assert!(Translator::new(vec![unit(u32::MAX - 1, 2, 0, 2)]).is_err());
}
