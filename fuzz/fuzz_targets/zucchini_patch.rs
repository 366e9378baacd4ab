//! `zucchini_patch`: see `zucchini_check.rs` for the input and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "zucchini_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::zucchini_patch(data);
});
