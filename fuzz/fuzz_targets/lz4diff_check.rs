//! The checks of the `lz4diff_patch` and `lz4_compress` fuzz targets, shared with
//! `tests/fuzz_seeds_lz4diff.rs`, which replays their seeds. Each returns an outcome string
//! for the seeds' `.expected` list and panics where a property breaks.

use abupdate::{lz4, lz4diff};

/// `src_len: u16 LE`, `dst_len: u32 LE`, the source, then an LZ4DIFF blob. A patch that
/// applies gives exactly `dst_len` bytes; every refusal is 21 (malformed) or 24 (a
/// recompressed cluster's hash). Destinations are capped at 1 MiB and decompressed files
/// at 4 MiB, whatever the header claims.
pub fn lz4diff_patch(data: &[u8]) -> String {
    let Some((head, rest)) = data.split_first_chunk::<6>() else {
        return "short".into();
    };
    let src_len = usize::from(u16::from_le_bytes([head[0], head[1]])).min(rest.len());
    let dst_len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
    if dst_len > 1 << 20 {
        return "big".into();
    }
    let (src, blob) = rest.split_at(src_len);
    let limits = lz4diff::Limits {
        max_decompressed: 4 << 20,
    };
    match lz4diff::apply(src, blob, dst_len, limits) {
        Ok(out) => {
            assert_eq!(out.len(), dst_len);
            format!("ok:{dst_len}")
        }
        Err(e) => {
            let code = e.code.as_i32();
            assert!(matches!(code, 21 | 24), "{e}");
            format!("err:{code}")
        }
    }
}

/// `level: u8` (0: the fast compressor, else HC at `level - 1`), `target: u16 LE`, the
/// input. The block fits the target and decodes to the input it says it consumed.
pub fn lz4_compress(data: &[u8]) -> String {
    let Some((head, input)) = data.split_first_chunk::<3>() else {
        return "short".into();
    };
    let target = usize::from(u16::from_le_bytes([head[1], head[2]]));
    let result = match head[0] {
        0 => lz4::compress_dest_size(input, target),
        l => lz4::compress_hc_dest_size(input, target, i32::from(l) - 1),
    };
    let Some((block, consumed)) = result else {
        assert_eq!(target, 0, "liblz4 fails only without room");
        return "none".into();
    };
    assert!(block.len() <= target.max(1), "{} > {target}", block.len());
    assert!(consumed <= input.len());
    let back = lz4::decompress_partial(&block, consumed).expect("our block decodes");
    assert!(back == input[..consumed], "block decodes to other bytes");
    format!("ok:{}:{consumed}", block.len())
}
