//! Hand-made patches: the stream encodings, apply of raw elements, and each hostile shape
//! refused with its code. Patches from AOSP's own `zucchini` are tested in
//! `tests/zucchini_aosp.rs`.

use super::patch::{var_i32, var_u32};
use super::*;
use crate::ErrorCode;

pub(super) fn put_var(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_var_signed(out: &mut Vec<u8>, v: i32) {
    put_var(
        out,
        if v < 0 {
            (!v as u32) << 1 | 1
        } else {
            (v as u32) << 1
        },
    );
}

fn put_stream(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// One raw element's worth of streams, written as Zucchini's patch writer lays them out.
#[derive(Clone, Default)]
pub(super) struct Spec {
    pub tag: [u8; 4],
    /// (src, dst, len), absolute.
    pub equivalences: Vec<(u32, u32, u32)>,
    pub extra: Vec<u8>,
    /// (copy offset, diff).
    pub raw_delta: Vec<(u32, i8)>,
    pub reference_delta: Vec<u8>,
    /// (pool tag, extra targets stream).
    pub extra_targets: Vec<(u8, Vec<u8>)>,
}

fn element(spec: &Spec, old_len: u32, new_len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0, old_len, 0, new_len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&spec.tag);
    out.extend_from_slice(&1u16.to_le_bytes());
    let (mut src_skip, mut dst_skip, mut count) = (vec![], vec![], vec![]);
    let (mut prev_src, mut prev_dst) = (0i64, 0u32);
    for &(src, dst, len) in &spec.equivalences {
        put_var(&mut count, len);
        put_var_signed(&mut src_skip, (i64::from(src) - prev_src) as i32);
        put_var(&mut dst_skip, dst - prev_dst);
        prev_src = i64::from(src + len);
        prev_dst = dst + len;
    }
    for s in [&src_skip, &dst_skip, &count, &spec.extra] {
        put_stream(&mut out, s);
    }
    let (mut skip, mut diff, mut next) = (vec![], vec![], 0);
    for &(at, d) in &spec.raw_delta {
        put_var(&mut skip, at - next);
        diff.push(d as u8);
        next = at + 1;
    }
    put_stream(&mut out, &skip);
    put_stream(&mut out, &diff);
    put_stream(&mut out, &spec.reference_delta);
    out.extend_from_slice(&(spec.extra_targets.len() as u32).to_le_bytes());
    for (tag, stream) in &spec.extra_targets {
        out.push(*tag);
        put_stream(&mut out, stream);
    }
    out
}

pub(super) fn patch(old: &[u8], new: &[u8], spec: &Spec) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    for v in [
        old.len() as u32,
        crc32fast::hash(old),
        new.len() as u32,
        crc32fast::hash(new),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&element(spec, old.len() as u32, new.len() as u32));
    out
}

/// old: 64 bytes; new: 8 bytes of extra data, old[16..48] with bytes 3 and 20 changed, 4 more
/// extra bytes, old[0..8].
fn sample() -> (Vec<u8>, Vec<u8>, Spec) {
    let old: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    let mut new = b"EXTRA-8!".to_vec();
    new.extend_from_slice(&old[16..48]);
    new[8 + 3] = new[8 + 3].wrapping_add(5);
    new[8 + 20] = new[8 + 20].wrapping_sub(100);
    new.extend_from_slice(b"more");
    new.extend_from_slice(&old[0..8]);
    let spec = Spec {
        tag: *b"NoOp",
        equivalences: vec![(16, 8, 32), (0, 44, 8)],
        extra: b"EXTRA-8!more".to_vec(),
        raw_delta: vec![(3, 5), (20, -100)],
        ..Spec::default()
    };
    (old, new, spec)
}

pub(super) fn code(old: &[u8], patch_bytes: &[u8]) -> ErrorCode {
    match Patch::parse(patch_bytes).and_then(|p| apply(old, &p)) {
        Ok(_) => panic!("applied"),
        Err(e) => e.code,
    }
}

#[test]
fn varints_decode_as_zucchini_writes_them() {
    let mut buf = vec![];
    for v in [0, 1, 127, 128, 300, u32::MAX] {
        buf.clear();
        put_var(&mut buf, v);
        let mut s = &buf[..];
        assert_eq!(var_u32(&mut s), Some(v));
        assert!(s.is_empty());
    }
    for v in [0, -1, 1, i32::MIN, i32::MAX] {
        buf.clear();
        put_var_signed(&mut buf, v);
        assert_eq!(var_i32(&mut &buf[..]), Some(v));
    }
    // A sixth byte overflows; an unfinished varint is not one.
    assert_eq!(
        var_u32(&mut &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..]),
        None
    );
    assert_eq!(var_u32(&mut &[0x80][..]), None);
    // Bits past the 32nd are dropped, as Zucchini's decoder does.
    assert_eq!(
        var_u32(&mut &[0xff, 0xff, 0xff, 0xff, 0x7f][..]),
        Some(u32::MAX)
    );
}

#[test]
fn raw_element_applies() {
    let (old, new, spec) = sample();
    let p = patch(&old, &new, &spec);
    assert_eq!(apply(&old, &Patch::parse(&p).unwrap()).unwrap(), new);
}

// The brotli encoder is a host crate.
#[cfg(not(soong))]
#[test]
fn apply_op_decompresses_and_checks_the_destination_size() {
    let (old, new, spec) = sample();
    let p = patch(&old, &new, &spec);
    let mut blob = vec![];
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut &p[..], &mut blob, &params).unwrap();
    assert_eq!(apply_op(&old, &blob, new.len()).unwrap(), new);
    let e = apply_op(&old, &blob, new.len() + 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedPayload);
    // A patch far larger than what it makes is refused before it is parsed.
    let mut bomb = vec![];
    brotli::BrotliCompress(&mut &vec![0u8; 3 << 20][..], &mut bomb, &params).unwrap();
    let e = apply_op(&old, &bomb, 16).unwrap_err();
    assert!(e.to_string().contains("decompresses past"), "{e}");
}

#[test]
fn hostile_patches_are_refused_with_their_codes() {
    use ErrorCode::*;
    let (old, new, spec) = sample();
    let good = patch(&old, &new, &spec);
    let with = |f: &dyn Fn(&mut Spec)| {
        let mut s = spec.clone();
        f(&mut s);
        patch(&old, &new, &s)
    };
    // Executable elements need a disassembler; an ELF (DEX) type's element must be an ELF
    // (DEX file).
    assert_eq!(code(&old, &with(&|s| s.tag = *b"Px64")), Unsupported);
    assert_eq!(code(&old, &with(&|s| s.tag = *b"DEX ")), MalformedPayload);
    assert_eq!(code(&old, &with(&|s| s.tag = *b"Ex64")), MalformedPayload);
    assert_eq!(code(&old, &with(&|s| s.tag = *b"XXXX")), MalformedPayload);
    // Wrong source, wrong result.
    let mut other = old.clone();
    other[0] ^= 1;
    assert_eq!(code(&other, &good), SourceHash);
    assert_eq!(code(&old[1..], &good), SourceHash);
    assert_eq!(code(&old, &with(&|s| s.raw_delta[0].1 = 4)), PayloadHash);
    // Equivalences outside the element or out of order, extra data of the wrong size.
    assert_eq!(
        code(&old, &with(&|s| s.equivalences[0].0 = 40)),
        MalformedPayload
    );
    assert_eq!(
        code(&old, &with(&|s| s.equivalences[1] = (0, 60, 8))),
        MalformedPayload
    );
    assert_eq!(code(&old, &with(&|s| s.extra.push(0))), MalformedPayload);
    // Raw delta past the copies, a zero diff, references in a raw element.
    assert_eq!(
        code(&old, &with(&|s| s.raw_delta.push((40, 1)))),
        MalformedPayload
    );
    assert_eq!(
        code(&old, &with(&|s| s.raw_delta[0].1 = 0)),
        MalformedPayload
    );
    // As in AOSP, a zero diff ends the raw delta; when it was the last, only the result's
    // CRC-32 tells.
    assert_eq!(code(&old, &with(&|s| s.raw_delta[1].1 = 0)), PayloadHash);
    assert_eq!(
        code(&old, &with(&|s| s.reference_delta = vec![2])),
        MalformedPayload
    );
    // A stream claiming 4 GiB, truncation, trailing bytes, a bad magic or version.
    let mut huge = good.clone();
    // From the end: pool count, reference delta, raw diffs, raw skips, then extra data.
    let extra_len_at = good.len() - 4 - 4 - (4 + 2) - (4 + 2) - spec.extra.len() - 4;
    huge[extra_len_at..extra_len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(code(&old, &huge), MalformedPayload);
    for cut in [3, 24, 40, good.len() - 1] {
        assert_eq!(code(&old, &good[..cut]), MalformedPayload, "cut {cut}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(code(&old, &trailing), MalformedPayload);
    let mut version = good.clone();
    version[4] = 2;
    assert_eq!(code(&old, &version), MalformedPayload);
}
