//! The NBD server (`abupdate::nbd::serve`) on an arbitrary request stream, over a 64 KiB image.
//! The checks are in `nbd_serve_check.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "nbd_serve_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::run(data);
});
