//! Suspending, resuming and cancelling a download from another thread, mid-stream.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use abupdate::download::{self, SourceOptions};
use abupdate::ErrorCode;

use crate::common::nginx::Nginx;
use crate::common::proxy::{Mode, Plan, Proxy};
use crate::{code_of, opts, serve_payload};

/// The bytes read, or the code the stream failed with and when.
type Outcome = Result<Vec<u8>, (ErrorCode, Instant)>;

/// Reads the whole stream on a thread, publishing its progress.
fn reader(
    url: String,
    len: u64,
    opts: SourceOptions,
) -> (Arc<AtomicU64>, thread::JoinHandle<Outcome>) {
    let progress = Arc::new(AtomicU64::new(0));
    let published = Arc::clone(&progress);
    let handle = thread::spawn(move || {
        let mut stream =
            download::open(&url, 0, Some(len), 0, &opts).map_err(|e| (e.code, Instant::now()))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    published.store(out.len() as u64, Ordering::SeqCst);
                }
                Err(e) => return Err((code_of(&e), Instant::now())),
            }
        }
    });
    (progress, handle)
}

/// Waits until the reader has received `at_least` bytes and then stopped moving.
fn wait_stuck(progress: &AtomicU64, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "the reader never got {at_least} bytes"
        );
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100));
    progress.load(Ordering::SeqCst)
}

#[test]
fn suspend_closes_the_connection_and_resume_continues() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 20, 2 * 1024 * 1024);
    let len = payload.len() as u64;
    let proxy = Proxy::start(nginx.port, Mode::Http);
    // The server goes quiet after 1 MiB for longer than the test: only a resume finishes.
    proxy.push(Plan::stall(1024 * 1024, Duration::from_secs(20)));
    let opts = SourceOptions {
        read_timeout: Duration::from_secs(5),
        ..opts()
    };
    let control = opts.control.clone();
    let (progress, handle) = reader(proxy.url("payload.bin"), len, opts);
    let stopped_at = wait_stuck(&progress, 1000 * 1024);

    let suspended = Instant::now();
    control.suspend();
    thread::sleep(Duration::from_millis(500));
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "no new connection while suspended");
    let gone = seen[0].client_gone.expect("suspend closes the connection");
    assert!(
        gone.duration_since(suspended) < Duration::from_millis(300),
        "closed late"
    );
    assert_eq!(progress.load(Ordering::SeqCst), stopped_at);

    control.resume();
    let bytes = handle.join().unwrap().unwrap();
    assert!(bytes == payload, "bytes differ");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].range_start(),
        Some(stopped_at),
        "resumed at the exact byte"
    );
}

#[test]
fn cancel_interrupts_a_stalled_read() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 21, 1024 * 1024);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.push(Plan::stall(300_000, Duration::from_secs(20)));
    let opts = SourceOptions {
        read_timeout: Duration::from_secs(10),
        ..opts()
    };
    let control = opts.control.clone();
    let (progress, handle) = reader(proxy.url("payload.bin"), payload.len() as u64, opts);
    wait_stuck(&progress, 250_000);
    let cancelled = Instant::now();
    control.cancel();
    let (code, at) = handle.join().unwrap().unwrap_err();
    assert_eq!(code, ErrorCode::Cancelled);
    let took = at.duration_since(cancelled);
    eprintln!("cancel took {took:?}");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
}

#[test]
fn cancel_interrupts_backoff_and_suspension() {
    let nginx = Nginx::start(None);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.set_default(|| {
        Plan::respond("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    });
    let opts = SourceOptions {
        backoff_initial: Duration::from_secs(30),
        ..opts()
    };
    let control = opts.control.clone();
    let (_, handle) = reader(proxy.url("payload.bin"), 1000, opts);
    while proxy.seen().is_empty() {
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(100));
    let cancelled = Instant::now();
    control.cancel();
    let (code, at) = handle.join().unwrap().unwrap_err();
    assert_eq!(code, ErrorCode::Cancelled);
    assert!(at.duration_since(cancelled) < Duration::from_secs(1));

    // Cancelling a suspended stream wakes the blocked reader.
    let payload = serve_payload(&nginx, 22, 200_000);
    let opts = crate::opts();
    let control = opts.control.clone();
    let mut stream = download::open(&nginx.url("payload.bin"), 0, None, 0, &opts).unwrap();
    let mut buf = [0u8; 1000];
    assert_eq!(stream.read(&mut buf).unwrap(), 1000);
    assert_eq!(buf[..], payload[..1000]);
    control.suspend();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        control.cancel();
    });
    assert_eq!(
        code_of(&stream.read(&mut buf).unwrap_err()),
        ErrorCode::Cancelled
    );
    canceller.join().unwrap();
}

#[test]
fn suspend_and_resume_between_reads_costs_no_retry() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 23, 3 * 1024 * 1024);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    // No retries at all: the reconnect after a suspension must not count as one.
    let opts = SourceOptions {
        max_retries: 0,
        ..opts()
    };
    let control = opts.control.clone();
    let mut stream = download::open(&proxy.url("payload.bin"), 0, None, 0, &opts).unwrap();
    let mut head = vec![0u8; 100_000];
    stream.read_exact(&mut head).unwrap();
    control.suspend();
    control.resume();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!([head, rest].concat() == payload, "bytes differ");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 2);
    // Bytes already buffered are still handed out; the resume asks for the ones after them.
    let resumed_at = seen[1].range_start().unwrap();
    assert!(
        (100_000..=100_000 + 64 * 1024).contains(&resumed_at),
        "{resumed_at}"
    );
    let refetched = stream.bytes_fetched() - payload.len() as u64;
    eprintln!("suspend/resume: {refetched} bytes fetched twice");
    assert!(refetched <= 64 * 1024, "{refetched}");
}
