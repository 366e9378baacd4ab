//! Broken connections, stalls, server errors, servers that ignore or botch Range, and a file
//! replaced mid-download: every case ends with identical bytes or the right code.

use std::time::{Duration, Instant};

use abupdate::download;
use abupdate::ErrorCode;

use crate::common::nginx::{replace_file, Nginx};
use crate::common::pki::Pki;
use crate::common::proxy::{Mode, Plan, Proxy};
use crate::{drain, fetch, opts, serve_payload, Rng, ZIP_OFFSET};

/// The seed of the random cut positions; `ABUPDATE_TEST_SEED` replays another run.
fn seed() -> u64 {
    std::env::var("ABUPDATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe)
}

/// Ranges asked for never go backwards: every resume starts where the last byte arrived.
fn assert_resumes_in_order(proxy: &Proxy) {
    let starts: Vec<u64> = proxy
        .seen()
        .iter()
        .filter_map(|seen| seen.range_start())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "ranges went backwards: {starts:?}"
    );
}

#[test]
fn survives_cuts_at_random_offsets() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 10, 6 * 1024 * 1024 + 5);
    let len = payload.len() as u64;
    let seed = seed();
    let mut rng = Rng::new(seed);
    let cuts = 36;
    for (base, name) in [(0, "payload.bin"), (ZIP_OFFSET, "ota.zip")] {
        let proxy = Proxy::start(nginx.port, Mode::Http);
        for i in 0..cuts {
            // Every sixth cut falls in or right after the response head.
            let after = if i % 6 == 0 {
                rng.below(400)
            } else {
                rng.below(200_000)
            };
            proxy.push(Plan::cut(after, rng.below(2) == 1));
        }
        let (bytes, refetched) = fetch(&proxy.url(name), base, Some(len), 0, &opts())
            .unwrap_or_else(|code| panic!("seed {seed}: {name} failed with {code}"));
        assert!(bytes == payload, "seed {seed}: {name}: bytes differ");
        eprintln!(
            "{name}: {} connections, {refetched} bytes fetched twice",
            proxy.seen().len()
        );
        // Bytes reach the caller as soon as they arrive: a cut loses nothing received.
        assert!(
            refetched <= 64 * 1024,
            "seed {seed}: {refetched} bytes fetched twice"
        );
        assert_eq!(proxy.seen().len(), cuts + 1, "every planned cut happened");
        assert_resumes_in_order(&proxy);
    }
}

#[test]
fn survives_cuts_over_tls() {
    let pki = Pki::generate();
    let nginx = Nginx::start(Some(&pki));
    let payload = serve_payload(&nginx, 11, 2 * 1024 * 1024 + 1);
    let len = payload.len() as u64;
    let proxy = Proxy::start(nginx.tls_port, Mode::Raw);
    let mut rng = Rng::new(seed() ^ 1);
    for _ in 0..10 {
        // Raw byte counts include the TLS handshake (a few KiB).
        proxy.push(Plan::cut(rng.below(150_000), rng.below(2) == 1));
    }
    let opts = download::SourceOptions {
        pinned_ca: Some(pki.ca_cert.clone()),
        ..opts()
    };
    let (bytes, refetched) = fetch(&proxy.tls_url("payload.bin"), 0, Some(len), 0, &opts).unwrap();
    assert!(bytes == payload, "bytes differ");
    eprintln!(
        "TLS: {} connections, {refetched} bytes fetched twice",
        proxy.seen().len()
    );
    assert!(refetched <= 64 * 1024);
    assert_eq!(proxy.seen().len(), 11);
}

#[test]
fn stalls_are_detected_and_resumed() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 12, 2 * 1024 * 1024);
    let len = payload.len() as u64;
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let mut rng = Rng::new(seed() ^ 2);
    for _ in 0..3 {
        proxy.push(Plan::stall(rng.below(300_000), Duration::from_secs(3)));
    }
    let started = Instant::now();
    let (bytes, _) = fetch(&proxy.url("payload.bin"), 0, Some(len), 0, &opts()).unwrap();
    let took = started.elapsed();
    assert!(bytes == payload, "bytes differ");
    // Three stalls of 300 ms each, not three holds of 3 s.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[..3].iter().all(|s| s.client_gone.is_some()),
        "stalled connections are closed"
    );
    assert_resumes_in_order(&proxy);
}

#[test]
fn server_errors_and_truncation_are_retried() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 13, 500_000);
    let len = payload.len() as u64;
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.push(Plan::respond(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
    ));
    proxy.push(Plan::respond(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!",
    ));
    let mut truncated = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{len}\r\nContent-Length: {len}\r\n\r\n",
        len - 1
    )
    .into_bytes();
    truncated.extend_from_slice(&payload[..100_000]);
    proxy.push(Plan::respond(truncated));
    let (bytes, _) = fetch(&proxy.url("payload.bin"), 0, Some(len), 0, &opts()).unwrap();
    assert!(bytes == payload, "bytes differ");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[3].range_start(), Some(100_000));
}

#[test]
fn retries_are_bounded() {
    let nginx = Nginx::start(None);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.set_default(|| {
        Plan::respond("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    });
    let opts = download::SourceOptions {
        max_retries: 3,
        ..opts()
    };
    let e = download::open(&proxy.url("payload.bin"), 0, None, 0, &opts)
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed, "{e}");
    assert!(
        e.message.contains("503") && e.message.contains("4 attempts"),
        "{e}"
    );
    assert_eq!(proxy.seen().len(), 4);

    // Nobody listening: connection errors are retried the same way.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = download::open(&format!("http://127.0.0.1:{closed}/p"), 0, None, 0, &opts)
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed, "{e}");
}

#[test]
fn server_ignoring_range() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 14, 1024 * 1024);
    let len = payload.len() as u64;
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.set_default(|| Plan::strip(&["range", "if-range"]));
    // From the start, a whole-file answer is the payload.
    let (bytes, refetched) = fetch(&proxy.url("payload.bin"), 0, Some(len), 0, &opts()).unwrap();
    assert!(bytes == payload);
    assert_eq!(refetched, 0);
    // A payload a few KiB into a zip: the bytes before it are read and dropped.
    let (bytes, refetched) =
        fetch(&proxy.url("ota.zip"), ZIP_OFFSET, Some(len), 0, &opts()).unwrap();
    assert!(bytes == payload);
    // Plus, perhaps, some of the 1000 bytes after the payload that arrived with its end.
    assert!(
        (ZIP_OFFSET..=ZIP_OFFSET + 1000).contains(&refetched),
        "{refetched}"
    );
    // Resuming far into the file would mean downloading it all again: refused.
    let e = download::open(&proxy.url("payload.bin"), 0, Some(len), 600_000, &opts())
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadProtocol, "{e}");
    assert!(e.message.contains("ignores Range"), "{e}");
    // The same when a connection breaks far into the download.
    proxy.push(Plan {
        cut_after: Some(700_000),
        ..Plan::strip(&["range", "if-range"])
    });
    let result = fetch(&proxy.url("payload.bin"), 0, Some(len), 0, &opts());
    assert_eq!(result.err(), Some(ErrorCode::DownloadProtocol));
}

#[test]
fn lying_answers_are_protocol_errors() {
    let nginx = Nginx::start(None);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let answers = [
        // Starts one byte late.
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 1-99/100\r\nContent-Length: 99\r\n\r\n",
        // Runs past the payload.
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-199/300\r\nContent-Length: 200\r\n\r\n",
        "HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\n",
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/100\r\nContent-Length: 50\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 100\r\n\r\n",
        "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        "garbage\r\n\r\n",
    ];
    for answer in answers {
        proxy.push(Plan::respond(answer));
        let e = download::open(&proxy.url("p.bin"), 0, Some(100), 0, &opts())
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::DownloadProtocol, "{answer:?}: {e}");
    }
    assert_eq!(
        proxy.seen().len(),
        answers.len(),
        "none of these is retried"
    );
}

/// A range naming 2^64 bytes (`0-18446744073709551615`) once overflowed the length
/// computation; with no size known there is nothing else to refuse it.
#[test]
fn content_range_longer_than_u64_is_a_protocol_error() {
    let nginx = Nginx::start(None);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    for answer in [
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-18446744073709551615/*\r\n\r\n",
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-18446744073709551615/*\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        proxy.push(Plan::respond(answer));
        let e = download::open(&proxy.url("p.bin"), 0, None, 0, &opts())
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::DownloadProtocol, "{answer:?}: {e}");
        assert!(e.message.contains("longer than any file"), "{e}");
    }
}

#[test]
fn replaced_file_is_detected() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 15, 2 * 1024 * 1024);
    let len = payload.len() as u64;
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let replacement = Rng::new(99).bytes(payload.len());
    for (round, strip_if_range) in [(1, false), (2, true)] {
        let www = nginx.www();
        let new = replacement.clone();
        // Same size, new content and modification time, swapped while the first connection
        // is cut: the resume must notice.
        proxy.push(Plan {
            before_cut: Some(Box::new(move || {
                replace_file(&www, "payload.bin", &new, 1000 * round)
            })),
            ..Plan::cut(1024 * 1024, false)
        });
        if strip_if_range {
            // Without If-Range nginx sends the new file's bytes as asked: the ETag tells.
            proxy.push(Plan::strip(&["if-range"]));
        }
        let mut stream =
            download::open(&proxy.url("payload.bin"), 0, Some(len), 0, &opts()).unwrap();
        assert_eq!(
            drain(&mut stream).err(),
            Some(ErrorCode::DownloadChanged),
            "round {round}"
        );
        let resumed = proxy.seen().last().cloned().unwrap();
        assert!(
            resumed.header("if-range").is_some(),
            "the resume carried If-Range"
        );
        nginx.put("payload.bin", &payload, 0);
    }
}
