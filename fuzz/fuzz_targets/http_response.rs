//! The HTTP client's handling of what a server sends: status line and headers, `Content-Range`,
//! `Content-Length`, chunked framing, redirects (`Location` resolved against the URL) and the
//! retry loop, run over scripted bytes. Seeds: `fuzz/seeds/http_response/`, replayed by
//! `tests/fuzz_seeds_http.rs`; the checks are in `http_response_check.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "http_response_check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    let _ = check::run(data);
});
