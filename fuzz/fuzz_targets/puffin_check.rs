//! The checks of the puffin fuzz targets (`puff_decode`, `huff_encode`, `puffin_patch`),
//! shared with `tests/fuzz_seeds_puffin.rs`, which replays their seeds. Each returns an outcome
//! string for the seeds' `.expected` lists and panics where a property breaks.

use abupdate::puffin::{self, locate, Limits};

/// Puffed output is capped so a run is cheap; real deflate puffs to a few times its size.
const LIMIT: usize = 1 << 20;

/// Arbitrary bytes as a deflate stream: if they puff, the puff must huff back, and a block
/// that `locate` finds and calls round-tripping must come back bit for bit.
pub fn puff_decode(data: &[u8]) -> String {
    let Ok(puff) = puffin::puff(data, LIMIT) else {
        return "err".into();
    };
    // A puff made here huffs, except where puffin's format cannot hold the input: a stored
    // block's 6 or 7 padding bits, which puffin ORs into the block header over its type bits
    // (`puffer.cc`; tests/puffin_aosp.rs shows AOSP's huffer refusing the same puff). That is
    // a clean 21, never a panic.
    let deflate = match puffin::huff(&puff, LIMIT) {
        Ok(deflate) => deflate,
        Err(e) => {
            assert_eq!(e.code.as_i32(), 21, "a puff made here must huff: {e}");
            return "ok:unhuffable".into();
        }
    };
    // Huffing is a function of the puff: puffing its output again gives a puff that huffs to
    // the same bytes. (Re-puffing may fail where puffin's decoder would: it wants a full
    // code-length code's worth of bits after each code length, and a shorter body can leave
    // fewer.)
    if let Ok(again) = puffin::puff(&deflate, LIMIT) {
        assert_eq!(puffin::huff(&again, LIMIT).unwrap(), deflate);
    }
    if let Ok((blocks, _)) = locate::deflate_stream(data, 0) {
        let blocks: Vec<_> = blocks
            .into_iter()
            .filter(|&b| locate::round_trips(data, b))
            .collect();
        if let Ok(info) = puffin::stream_info(data, &blocks) {
            let p = puffin::puff_stream(data, &info, u64::MAX).expect("laid out here");
            assert_eq!(puffin::huff_stream(&p, &info, data.len()).unwrap(), data);
        }
    }
    format!("ok:{}", puff.len())
}

/// Arbitrary bytes as a puff: if they huff, the deflate must puff, and huff to itself again.
pub fn huff_encode(data: &[u8]) -> String {
    let Ok(deflate) = puffin::huff(data, LIMIT) else {
        return "err".into();
    };
    // As in `puff_decode`, puffin's decoder may refuse a stream the huffer can write.
    let Ok(puff) = puffin::puff(&deflate, LIMIT.saturating_mul(8)) else {
        return format!("ok:{}:unpuffable", deflate.len());
    };
    assert_eq!(puffin::huff(&puff, LIMIT).unwrap(), deflate);
    format!("ok:{}", deflate.len())
}

/// `dst_len: u16 LE`, `src_len: u16 LE`, the source, then a PUFFDIFF patch.
pub fn puffin_patch(data: &[u8]) -> String {
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return "short".into();
    };
    let dst_len = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let src_len = usize::from(u16::from_le_bytes([head[2], head[3]])).min(rest.len());
    let (src, patch) = rest.split_at(src_len);
    // Tight limits, so a hostile claim cannot make a run slow.
    let limits = Limits {
        max_dst: 1 << 16,
        max_puff: 1 << 20,
    };
    match puffin::apply(src, patch, dst_len, limits) {
        Ok(out) => {
            assert_eq!(out.len(), dst_len);
            format!("ok:{}", out.len())
        }
        Err(e) => {
            let code = e.code.as_i32();
            assert!(code == 21 || code == 24 || code == 32, "{e}");
            format!("err:{code}")
        }
    }
}
