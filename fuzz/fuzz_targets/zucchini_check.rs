//! The check of the `zucchini_patch` fuzz target, shared with `tests/fuzz_seeds_zucchini.rs`,
//! which replays its seeds. Returns an outcome string for the seeds' `.expected` list and
//! panics where a property breaks.

use abupdate::zucchini::{self, Patch};

/// `src_len: u16 LE`, the source, then a (decompressed) Zucchini ensemble patch. A patch that
/// parses and applies gives exactly its header's new size; every refusal is 21 (malformed),
/// 24 (result CRC), 25 (wrong source) or 32 (an executable element without a disassembler).
///
/// A patch whose old-image CRC-32 is 0 gets the source's CRC-32 there first, so that mutated
/// sources (ELF headers, code, relocations) get past the source check into the disassembler.
pub fn zucchini_patch(data: &[u8]) -> String {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return "short".into();
    };
    let src_len = usize::from(u16::from_le_bytes(*head)).min(rest.len());
    let (src, patch) = rest.split_at(src_len);
    let mut patch = patch.to_vec();
    if patch.get(12..16) == Some(&[0; 4]) {
        patch[12..16].copy_from_slice(&crc32fast::hash(src).to_le_bytes());
    }
    let result = Patch::parse(&patch).and_then(|p| {
        // The fuzzer's patches claim up to 4 GiB; a destination is bounded by its operation,
        // here by 1 MiB (parsing allocated nothing by the claim).
        if p.header.new_size > 1 << 20 {
            return Ok(None);
        }
        zucchini::apply(src, &p).map(|out| Some((out, p.header.new_size)))
    });
    match result {
        Ok(Some((out, new_size))) => {
            assert_eq!(out.len(), new_size as usize);
            format!("ok:{}", out.len())
        }
        Ok(None) => "big".into(),
        Err(e) => {
            let code = e.code.as_i32();
            assert!(matches!(code, 21 | 24 | 25 | 32), "{e}");
            format!("err:{code}")
        }
    }
}
