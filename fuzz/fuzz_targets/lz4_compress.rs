//! `lz4_compress`: see `lz4diff_check.rs` for the input and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "lz4diff_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::lz4_compress(data);
});
