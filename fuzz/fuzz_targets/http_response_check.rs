//! What the `http_response` fuzz target does with an input, shared with the seed replay test
//! (`tests/fuzz_seeds_http.rs` includes this file), so both run exactly the same checks.
//!
//! Input: a 13-byte prologue, then what the server sends on each connection, the connections
//! separated by `scripted::CUT` (`\n\0\n`); a connection ends with the server closing it.
//! - byte 0, flags: bit 0 `https`, bit 1 the payload size is known, bits 2-3 the bytes per
//!   socket read (1, 7, 64 or 4096), bit 4 the offset is `u64::MAX` minus its value, bit 5
//!   the size is `u64::MAX` minus its value;
//! - bytes 1-4, 5-8, 9-12: the payload's offset in the file, its size and the start position,
//!   each a u32 LE.
//!
//! The download goes through `abupdate::download::scripted`, the real `HttpSource` over a
//! scripted connection. A panic is a bug, and so is a result that breaks what the engine
//! relies on: the bytes it gets are the payload's from `start` on, no more than the size.

use abupdate::download::scripted::{self, Run};

pub const PROLOGUE: usize = 13;

pub fn run(data: &[u8]) -> Option<Run> {
    let (prologue, script) = data.split_first_chunk::<PROLOGUE>()?;
    let flags = prologue[0];
    let word = |i: usize| {
        u64::from(u32::from_le_bytes([
            prologue[i],
            prologue[i + 1],
            prologue[i + 2],
            prologue[i + 3],
        ]))
    };
    let url = if flags & 1 != 0 {
        "https://ota.example/dir/payload.bin?sig=1"
    } else {
        "http://ota.example:8080/dir/payload.bin"
    };
    let step = [1, 7, 64, 4096][usize::from((flags >> 2) & 3)];
    let base = if flags & 0x10 != 0 {
        u64::MAX - word(1)
    } else {
        word(1)
    };
    let size = if flags & 0x20 != 0 {
        u64::MAX - word(5)
    } else {
        word(5)
    };
    let size = (flags & 2 != 0).then_some(size);
    let start = word(9);
    let run = scripted::run(url, base, size, start, script, step);
    check(&run, size, start, script);
    Some(run)
}

fn check(run: &Run, size: Option<u64>, start: u64, script: &[u8]) {
    let got = run.payload.len() as u64;
    assert!(
        run.payload.len() <= script.len(),
        "more payload than bytes sent"
    );
    if let Some(size) = size {
        if start > size {
            assert!(
                run.result.is_err() && got == 0,
                "a start past the end was accepted"
            );
            return;
        }
        assert!(start + got <= size, "read past the payload's end");
        if run.result.is_ok() {
            assert_eq!(start + got, size, "ended before the payload's end");
        }
    }
    if run.result.is_ok() {
        assert_eq!(
            run.total_size,
            Some(start + got),
            "size learned differs from bytes read"
        );
    }
    for request in &run.requests {
        check_request(request);
    }
}

/// A request is header lines, each ending in CRLF, with no other CR or LF anywhere, so that
/// nothing a server sends (a redirect's `Location`) can add a header or a second request.
fn check_request(request: &[u8]) {
    let text = std::str::from_utf8(request).expect("request is not UTF-8");
    let head = text
        .strip_suffix("\r\n\r\n")
        .expect("request does not end its head");
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    assert!(
        first.starts_with("GET /") && first.ends_with(" HTTP/1.1"),
        "{first:?}"
    );
    assert_eq!(first.matches(' ').count(), 2, "request line {first:?}");
    let mut ranges = 0;
    for line in lines {
        assert!(!line.contains(['\r', '\n']), "bare CR or LF in {line:?}");
        let (name, _) = line.split_once(": ").expect("header line without a colon");
        assert!(!name.is_empty() && !name.contains(' '), "{line:?}");
        ranges += usize::from(name == "Range");
    }
    assert_eq!(ranges, 1, "one Range per request");
}
