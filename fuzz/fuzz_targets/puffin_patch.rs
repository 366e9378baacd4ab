//! `puffin_patch`: see `puffin_check.rs` for the input and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "puffin_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::puffin_patch(data);
});
