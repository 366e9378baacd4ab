//! `bsdiff::apply` on arbitrary patches.
//!
//! Input layout (also that of `fuzz/seeds/bsdf2_apply/`, replayed by
//! `tests/fuzz_seeds_bsdiff.rs`): `new_len: u16 LE`, `old_len: u16 LE`, `old_len` bytes of
//! old data (fewer if the input ends), then the patch.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let new_len = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let old_len = usize::from(u16::from_le_bytes([head[2], head[3]])).min(rest.len());
    let (old, patch) = rest.split_at(old_len);
    if let Ok(new) = abupdate::bsdiff::apply(old, patch, new_len) {
        assert_eq!(new.len(), new_len);
    }
});
