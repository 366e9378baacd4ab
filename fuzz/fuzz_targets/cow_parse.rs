//! Virtual A/B COW parsing (libsnapshot_cow v2 and v3) on arbitrary bytes: header, ops, labels,
//! sequence data, op data. Seeds: `fuzz/seeds/cow_parse/`, replayed by
//! `tests/fuzz_seeds_cow.rs`; the checks are in `cow_parse_check.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "cow_parse_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    let _ = check::run(data);
});
