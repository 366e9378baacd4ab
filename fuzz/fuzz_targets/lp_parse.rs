//! liblp `super` metadata parsing on arbitrary bytes: a geometry struct, then one metadata
//! slot. Seeds: `fuzz/seeds/lp_parse/`, replayed by `tests/lp_hostile.rs`; the checks are in
//! `lp_parse_check.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "lp_parse_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    let _ = check::run(data);
});
