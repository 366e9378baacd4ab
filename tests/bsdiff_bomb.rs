//! Decompression bombs and lying sizes must not make `bsdiff::apply` allocate more than the
//! output it was asked for plus bounded decoder state. A counting global allocator measures
//! the peak; this file holds a single test so nothing else allocates meanwhile.
//!
//! `tests/data/bsdiff/zeros-1gib.{br,bz2}` are 1 GiB of zero bytes compressed with the
//! Debian `brotli` (`brotli -q 5`) and `bzip2` (`bzip2 -9`) tools: 809 and 785 bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use abupdate::bsdiff;
use abupdate::ErrorCode;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded as received; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak heap growth it caused (also printed).
fn peak_during<T>(what: &str, f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!("{what}: peak heap growth {peak} bytes");
    (out, peak)
}

fn offtin(v: i64) -> [u8; 8] {
    let sign = if v < 0 { 1u64 << 63 } else { 0 };
    (v.unsigned_abs() | sign).to_le_bytes()
}

/// A BSDF2 patch from raw parts: compressor bytes, stored control entries or a control stream.
fn bsdf2(types: [u8; 3], ctrl: &[u8], diff: &[u8], extra: &[u8], new_size: i64) -> Vec<u8> {
    let mut p = b"BSDF2".to_vec();
    p.extend_from_slice(&types);
    for v in [ctrl.len() as i64, diff.len() as i64, new_size] {
        p.extend_from_slice(&offtin(v));
    }
    [ctrl, diff, extra]
        .iter()
        .for_each(|s| p.extend_from_slice(s));
    p
}

fn entries(list: &[(i64, i64, i64)]) -> Vec<u8> {
    list.iter()
        .flat_map(|&(d, e, s)| [offtin(d), offtin(e), offtin(s)])
        .flatten()
        .collect()
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/bsdiff")
            .join(name),
    )
    .unwrap()
}

#[test]
fn bombs_stay_bounded() {
    const MIB: usize = 1 << 20;
    // Decoder state (bzip2 ~3.6 MB per stream, brotli up to its window) plus bookkeeping.
    const STATE: usize = 24 * MIB;
    let (br, bz2) = (data("zeros-1gib.br"), data("zeros-1gib.bz2"));
    let old = vec![5u8; 4096];
    let new_len = MIB;

    // Extra stream inflating to 1 GiB, 1 MiB of it used. bzip2's rest is ignored (AOSP
    // does too); a brotli stream must end with the output, so that one fails.
    let patch = bsdf2(
        [0, 0, 1],
        &entries(&[(0, new_len as i64, 0)]),
        b"",
        &bz2,
        new_len as i64,
    );
    let (result, peak) = peak_during("bz2 extra bomb", || bsdiff::apply(&old, &patch, new_len));
    assert_eq!(result.unwrap(), vec![0u8; new_len]);
    assert!(
        peak < new_len + STATE,
        "bz2 extra bomb peaked at {peak} bytes"
    );

    let patch = bsdf2(
        [0, 0, 2],
        &entries(&[(0, new_len as i64, 0)]),
        b"",
        &br,
        new_len as i64,
    );
    let (result, peak) = peak_during("brotli extra bomb", || bsdiff::apply(&old, &patch, new_len));
    let err = result.unwrap_err();
    assert_eq!(err.code, ErrorCode::MalformedPayload);
    assert!(
        err.message.contains("holds more than the patch uses"),
        "{err}"
    );
    assert!(
        peak < new_len + STATE,
        "brotli extra bomb peaked at {peak} bytes"
    );

    // Diff stream bomb: old bytes plus zeros, then past the end of old zeros plus zeros.
    let patch = bsdf2(
        [0, 1, 0],
        &entries(&[(new_len as i64, 0, 0)]),
        &bz2,
        b"",
        new_len as i64,
    );
    let (result, peak) = peak_during("bz2 diff bomb", || bsdiff::apply(&old, &patch, new_len));
    let out = result.unwrap();
    assert!(out[..4096].iter().all(|&b| b == 5) && out[4096..].iter().all(|&b| b == 0));
    assert!(peak < new_len + STATE, "diff bomb peaked at {peak} bytes");
    drop(out);

    // Control stream bomb: endless (0, 0, 0) entries.
    for (types, stream) in [([1, 0, 0], &bz2), ([2, 0, 0], &br)] {
        let patch = bsdf2(types, stream, b"", b"", new_len as i64);
        let (result, peak) = peak_during(&format!("control bomb {types:?}"), || {
            bsdiff::apply(&old, &patch, new_len)
        });
        let err = result.unwrap_err();
        assert!(err.message.contains("no output"), "{err}");
        assert!(
            peak < new_len + STATE,
            "control bomb {types:?} peaked at {peak} bytes"
        );
    }

    // A size the streams cannot back: 1 TiB promised, 100 bytes of diff behind it. Output
    // grows only as the stream delivers, and the reservation up front is capped.
    let huge: usize = 1 << 40;
    let patch = bsdf2(
        [0, 0, 0],
        &entries(&[(huge as i64, 0, 0)]),
        &[1u8; 100],
        b"",
        huge as i64,
    );
    let (result, peak) = peak_during("lying size", || bsdiff::apply(&old, &patch, huge));
    let err = result.unwrap_err();
    assert!(err.message.contains("diff stream ends early"), "{err}");
    assert!(peak < STATE, "lying size peaked at {peak} bytes");
}
