//! Payload metadata parsing and validation on arbitrary bytes: the header, the manifest and
//! `Metadata::verify` (no trusted key). Seeds: `fuzz/seeds/payload_parse/`, replayed by
//! `tests/fuzz_seeds_payload.rs`; the checks are in `payload_parse_check.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "payload_parse_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    let _ = check::run(data);
});
