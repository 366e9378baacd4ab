//! Replays every seed of the `http_response` fuzz target through the target's own checks
//! (`fuzz/fuzz_targets/http_response_check.rs`): none may panic, and each seed listed in
//! `fuzz/seeds/http_response.expected` must give its listed result, `ok:<payload bytes>` or
//! `err:<code>`, after `:<requests sent>`.
//!
//! `cargo test --test fuzz_seeds_http regenerate_seeds -- --ignored` rewrites the generated
//! seeds and the list. Seeds named `crash-*` are inputs that once broke the client; they are
//! kept, listed by hand.

mod common;

#[path = "../fuzz/fuzz_targets/http_response_check.rs"]
mod check;

use abupdate::download::scripted;
use std::path::PathBuf;

fn seeds_dir() -> PathBuf {
    common::fuzz_seeds::seeds_dir("http_response")
}

fn expected_path() -> PathBuf {
    common::fuzz_seeds::expected_path("http_response")
}

fn outcome(data: &[u8]) -> String {
    let Some(run) = check::run(data) else {
        return "short".into();
    };
    let result = match &run.result {
        Ok(()) => format!("ok:{}", run.payload.len()),
        Err(e) => format!("err:{}", e.code.as_i32()),
    };
    format!("{result}:{}", run.requests.len())
}

#[test]
fn seeds_replay() {
    common::fuzz_seeds::replay("http_response", 10, outcome);
}

const HTTPS: u8 = 1;
const SIZED: u8 = 2;
const STEP_7: u8 = 1 << 2;
const STEP_4096: u8 = 3 << 2;
const BASE_FROM_TOP: u8 = 0x10;

fn seed(flags: u8, base: u32, size: u32, start: u32, responses: &[&str]) -> Vec<u8> {
    let mut out = vec![flags];
    for word in [base, size, start] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (i, response) in responses.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(scripted::CUT);
        }
        out.extend_from_slice(response.as_bytes());
    }
    out
}

/// The responses of a well-behaved server and of broken or hostile ones, each reaching a
/// different branch of the client.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    const RANGE_0_9: &str =
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\nETag: \"e1\"\r\n\r\n0123456789";
    vec![
        ("range-exact.bin", seed(SIZED, 0, 10, 0, &[RANGE_0_9])),
        ("range-small-reads.bin", seed(SIZED | STEP_7, 0, 10, 0, &[RANGE_0_9])),
        (
            "range-in-zip.bin",
            seed(
                SIZED,
                100,
                10,
                4,
                &["HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 104-109/500\r\nContent-Length: 6\r\n\r\n456789"],
            ),
        ),
        (
            "full-unsized.bin",
            seed(0, 0, 0, 0, &["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]),
        ),
        (
            "until-close.bin",
            seed(STEP_4096, 0, 0, 0, &["HTTP/1.1 200 OK\r\n\r\nbody until the connection closes"]),
        ),
        (
            "interim-100.bin",
            seed(SIZED, 0, 3, 0, &["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/3\r\n\r\nabc"]),
        ),
        (
            "chunked.bin",
            seed(
                SIZED | STEP_7,
                0,
                12,
                0,
                &["HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-11/12\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n world!\r\n0\r\nTrailer: t\r\n\r\n"],
            ),
        ),
        (
            "chunk-size-overflow.bin",
            seed(0, 0, 0, 0, &["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nx"]),
        ),
        (
            "chunk-longer-than-size.bin",
            seed(0, 0, 0, 0, &["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"]),
        ),
        (
            "resume-after-cut.bin",
            seed(
                SIZED,
                0,
                10,
                0,
                &[
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\nETag: \"e1\"\r\n\r\n01234",
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-9/10\r\nContent-Length: 5\r\nETag: \"e1\"\r\n\r\n56789",
                ],
            ),
        ),
        (
            "etag-changed.bin",
            seed(
                SIZED,
                0,
                10,
                0,
                &[
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\nETag: \"e1\"\r\n\r\n01234",
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-9/10\r\nContent-Length: 5\r\nETag: \"e2\"\r\n\r\n56789",
                ],
            ),
        ),
        (
            "redirect-relative.bin",
            seed(
                SIZED,
                0,
                10,
                0,
                &["HTTP/1.1 302 Found\r\nLocation: ../other/p.bin?t=1\r\nContent-Length: 0\r\n\r\n", RANGE_0_9],
            ),
        ),
        (
            "redirect-absolute.bin",
            seed(
                SIZED | HTTPS,
                0,
                10,
                0,
                &["HTTP/1.1 301 Moved\r\nLocation: https://cdn.example:8443/x\r\n\r\n", RANGE_0_9],
            ),
        ),
        (
            "redirect-to-plain-http.bin",
            seed(SIZED | HTTPS, 0, 10, 0, &["HTTP/1.1 307 Temporary\r\nLocation: http://cdn.example/x\r\n\r\n"]),
        ),
        (
            "redirect-crlf.bin",
            seed(SIZED, 0, 10, 0, &["HTTP/1.1 302 Found\r\nLocation: /a\rX-Injected: 1\r\n\r\n"]),
        ),
        (
            "redirect-loop.bin",
            seed(SIZED, 0, 10, 0, &["HTTP/1.1 302 Found\r\nLocation: /a\r\n\r\n"; 7]),
        ),
        (
            "range-wrong-start.bin",
            seed(SIZED, 0, 10, 0, &["HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 1-9/10\r\n\r\n123456789"]),
        ),
        (
            "range-total-mismatch.bin",
            seed(SIZED, 0, 10, 0, &["HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/11\r\n\r\n0123456789"]),
        ),
        (
            "crash-content-range-2-64.bin",
            seed(0, 0, 0, 0, &["HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-18446744073709551615/*\r\n\r\n"]),
        ),
        (
            "content-length-conflict.bin",
            seed(0, 0, 0, 0, &["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"]),
        ),
        (
            "ignores-range-small-skip.bin",
            seed(SIZED, 0, 10, 4, &["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"]),
        ),
        (
            "unsatisfiable-at-end.bin",
            seed(0, 0, 0, 7, &["HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */7\r\n\r\n"]),
        ),
        (
            "server-error-retry-after.bin",
            seed(
                SIZED,
                0,
                10,
                0,
                &["HTTP/1.1 503 Busy\r\nRetry-After: 18446744073709551615\r\n\r\n", RANGE_0_9],
            ),
        ),
        (
            "gzip-encoded.bin",
            seed(0, 0, 0, 0, &["HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab"]),
        ),
        (
            "offset-near-u64-max.bin",
            seed(BASE_FROM_TOP, 0, 0, 0, &["HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 18446744073709551615-18446744073709551615/*\r\n\r\nx"]),
        ),
        ("not-http.bin", seed(0, 0, 0, 0, &["SSH-2.0-OpenSSH\r\n\r\n"])),
        ("empty-script.bin", seed(SIZED, 0, 10, 0, &[])),
    ]
}

#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    let dir = seeds_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let listed = std::fs::read_to_string(expected_path()).unwrap_or_default();
    let mut list: String = listed
        .lines()
        .filter(|l| l.starts_with("crash-") && !seeds().iter().any(|(n, _)| l.starts_with(n)))
        .map(|l| format!("{l}\n"))
        .collect();
    for (name, data) in seeds() {
        list.push_str(&format!("{name} {}\n", outcome(&data)));
        std::fs::write(dir.join(name), data).unwrap();
    }
    std::fs::write(expected_path(), list).unwrap();
}
