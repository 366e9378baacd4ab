//! Faults between the device and nginx, injected by the proxy while the updater applies:
//! connections cut at random offsets, stalls, truncated answers and files, a server that
//! ignores Range, a file replaced mid-download, and applies that give up (a crash, as far as
//! the checkpoint is concerned) followed by a re-run.

use std::time::{Duration, Instant};

use abupdate::download::SourceOptions;
use abupdate::payload::properties::PayloadProperties;
use abupdate::ErrorCode;

use crate::common::nginx::{replace_file, Nginx};
use crate::common::pki::Pki;
use crate::common::proxy::{Mode, Plan, Proxy};
use crate::common::Rng;
use crate::{apply, apply_with, fixture, opts, rerun, seed, serve, Device, BUFFER};
use abupdate::engine::Quiet;

#[test]
fn survives_36_cuts_at_random_offsets_in_one_apply() {
    let fx = fixture();
    let payload = &fx.delta;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let seed = seed();
    let mut rng = Rng(seed | 1);
    let cuts = 36;
    // Each cut counts from its connection's first byte; together they stay within the
    // payload, so every one of them happens.
    let bound = payload.size() / 24;
    let mut points = Vec::new();
    for i in 0..cuts {
        // Every sixth cut falls in or right after the response head.
        let after = match i % 6 {
            0 => rng.below(400),
            _ => rng.below(bound),
        };
        points.push(after);
        proxy.push(Plan::cut(after, rng.below(2) == 1));
    }
    let device = Device::fresh();
    let run = apply(&device, &proxy.url("payload.bin"), payload, opts());
    let (outcome, fetched) = match run.result {
        Ok(outcome) => (outcome, run.fetched),
        Err(e) => panic!("seed {seed}: cuts {points:?}: {e}"),
    };
    device.assert_updated(payload);
    assert_eq!(outcome.report.resumed_at, None);
    let seen = proxy.seen();
    assert_eq!(seen.len(), cuts + 1, "every planned cut happened");
    let refetched = fetched - payload.size();
    eprintln!(
        "{cuts} cuts: {} connections, {refetched} bytes fetched twice",
        seen.len()
    );
    assert!(
        refetched <= BUFFER,
        "seed {seed}: {refetched} bytes fetched twice"
    );
    let starts: Vec<u64> = seen.iter().filter_map(|s| s.range_start()).collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "seed {seed}: ranges went backwards: {starts:?}"
    );
}

#[test]
fn survives_30_cuts_over_tls() {
    let fx = fixture();
    let payload = &fx.full;
    let pki = Pki::generate();
    let nginx = Nginx::start(Some(&pki));
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.tls_port, Mode::Raw);
    let mut rng = Rng(seed() ^ 0x7157);
    let cuts = 30;
    // Raw byte counts include each TLS handshake (a few KiB), and a record (up to 16 KiB) cut
    // short brings nothing: every cut lets at least one record through.
    let bound = payload.size() / 40;
    for _ in 0..cuts {
        proxy.push(Plan::cut(24 * 1024 + rng.below(bound), rng.below(2) == 1));
    }
    let device = Device::fresh();
    let source = SourceOptions {
        pinned_ca: Some(pki.ca_cert.clone()),
        ..opts()
    };
    let (_, fetched) = apply(&device, &proxy.tls_url("payload.bin"), payload, source).unwrap();
    device.assert_updated(payload);
    assert_eq!(proxy.seen().len(), cuts + 1, "every planned cut happened");
    let refetched = fetched - payload.size();
    eprintln!("{cuts} cuts over TLS: {refetched} bytes fetched twice");
    assert!(refetched <= BUFFER, "{refetched} bytes fetched twice");
}

/// Applies that give up after a connection broke for good, one after another, each resuming
/// the last one's checkpoint; then a re-run through a healthy path finishes. Each failed run
/// costs again only the unfinished operation's bytes and the metadata.
#[test]
fn rerun_after_giving_up_fetches_only_what_the_checkpoint_lacks() {
    let fx = fixture();
    let payload = &fx.full;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let device = Device::fresh();
    let data_offset = payload.data_offset();
    let ops: Vec<_> = payload.operations().collect();
    let mut rng = Rng(seed() ^ 0xc4a5);
    let mut covered = 0;
    let mut total = 0;
    for round in 0..4 {
        let proxy = Proxy::start(nginx.port, Mode::Http);
        let cp = device.checkpoint();
        let next = cp.as_ref().map_or(0, |cp| cp.next_operation as usize);
        // A resume fetches the metadata over a connection of its own (left healthy), then the
        // data from the checkpoint on; a fresh start reads everything in one stream.
        let resuming = cp.is_some_and(|cp| cp.next_data_offset > 0);
        if resuming {
            proxy.push(Plan::default());
        }
        let stream_start = if resuming { data_offset + covered } else { 0 };
        // The cut falls inside the blob of the next operation or one of the two after it
        // (give or take the response head's few hundred bytes).
        let target = (next + rng.below(3) as usize).min(ops.len() - 1);
        let blob_start = data_offset + ops[target].data_offset;
        let cut = blob_start - stream_start + 1 + rng.below(ops[target].data_length - 1);
        // A FIN lets the device read what was sent before it; a RST throws away what it had
        // not read yet.
        proxy.push(Plan::cut(cut, round % 2 == 1));
        // After the cut the server is unreachable: every connection closes at once.
        proxy.set_default(|| Plan::cut(0, false));
        let run = apply(&device, &proxy.url("payload.bin"), payload, opts());
        let fetched = run.fetched;
        let error = run.unwrap_err();
        assert_eq!(error.code, ErrorCode::DownloadFailed, "{error}");
        device.assert_failed_safely(&error, payload);
        let cp = device.checkpoint().expect("a checkpoint");
        assert!(
            cp.next_operation as usize <= target,
            "round {round}: the checkpoint claims operations past the cut"
        );
        let progress = cp.next_data_offset - covered;
        let new_metadata = if round == 0 { data_offset } else { 0 };
        let wasted = fetched - progress - new_metadata;
        eprintln!(
            "round {round}: cut in operation {target}'s blob; checkpoint at operation {} (data \
             offset {}); fetched {fetched}, of which {wasted} must be fetched again",
            cp.next_operation, cp.next_data_offset
        );
        assert!(
            wasted <= data_offset + BUFFER + payload.largest_blob(),
            "round {round}: {wasted} bytes fetched for nothing"
        );
        covered = cp.next_data_offset;
        total += fetched;
    }
    total += rerun(&device, &nginx.url("payload.bin"), payload);
    eprintln!(
        "four cuts cost {} bytes beyond the payload's {}",
        total - payload.size(),
        payload.size()
    );
}

#[test]
fn stalls_longer_than_the_read_timeout() {
    let fx = fixture();
    let payload = &fx.delta;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let mut rng = Rng(seed() ^ 0x57a1);
    for _ in 0..3 {
        let at = 500 + rng.below(payload.size() / 4);
        proxy.push(Plan::stall(at, Duration::from_secs(5)));
    }
    let device = Device::fresh();
    let started = Instant::now();
    let (_, fetched) = apply(&device, &proxy.url("payload.bin"), payload, opts()).unwrap();
    let took = started.elapsed();
    device.assert_updated(payload);
    // Three stalls given up after the 300 ms read timeout each, not waited out.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let seen = proxy.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[..3].iter().all(|s| s.client_gone.is_some()),
        "stalled connections are closed"
    );
    assert!(fetched - payload.size() <= BUFFER);

    // A server that stops answering for good: the apply gives up with 10, a re-run resumes.
    let payload = &fx.full;
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.push(Plan::stall(payload.size() / 2, Duration::from_secs(5)));
    proxy.set_default(|| Plan::stall(0, Duration::from_secs(5)));
    let device = Device::fresh();
    let source = SourceOptions {
        max_retries: 2,
        ..opts()
    };
    let error = apply(&device, &proxy.url("payload.bin"), payload, source).unwrap_err();
    assert_eq!(error.code, ErrorCode::DownloadFailed, "{error}");
    device.assert_failed_safely(&error, payload);
    rerun(&device, &nginx.url("payload.bin"), payload);
}

#[test]
fn truncated_answers_and_files() {
    let fx = fixture();
    let payload = &fx.full;
    let len = payload.size();
    let nginx = Nginx::start(None);
    serve(&nginx, payload);

    // A 503, then an answer that promises the whole payload and ends a third of the way in:
    // both retried, the second resumed at the byte where it stopped.
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.push(Plan::respond(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
    ));
    let short = len / 3;
    let mut truncated = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{len}\r\nContent-Length: {len}\r\n\r\n",
        len - 1
    )
    .into_bytes();
    truncated.extend_from_slice(&payload.bytes[..short as usize]);
    proxy.push(Plan::respond(truncated));
    let device = Device::fresh();
    let (_, fetched) = apply(&device, &proxy.url("payload.bin"), payload, opts()).unwrap();
    device.assert_updated(payload);
    assert_eq!(fetched, len, "nothing fetched twice");
    assert_eq!(proxy.seen()[2].range_start(), Some(short));

    // The server's file is cut short, and FILE_SIZE says so before anything is written.
    let cut_file = &payload.bytes[..(len * 2 / 3) as usize];
    nginx.put("short.bin", cut_file, 0);
    let device = Device::fresh();
    let error = apply(&device, &nginx.url("short.bin"), payload, opts()).unwrap_err();
    assert_eq!(error.code, ErrorCode::SizeMismatch, "{error}");
    device.assert_failed_safely(&error, payload);
    assert!(device.checkpoint().is_none(), "nothing was started");

    // Without FILE_SIZE nothing tells until the data runs out inside an operation; what was
    // complete stays applied, and once the whole file is there a re-run finishes.
    let no_size = PayloadProperties {
        file_size: None,
        file_hash: None,
        ..payload.properties.clone()
    };
    let run = apply_with(&device, &nginx.url("short.bin"), &no_size, opts(), &Quiet);
    let error = run.unwrap_err();
    assert_eq!(error.code, ErrorCode::SizeMismatch, "{error}");
    device.assert_failed_safely(&error, payload);
    let cp = device.checkpoint().expect("a checkpoint");
    assert!(
        cp.next_operation > 0,
        "the complete operations were applied"
    );
    nginx.put("short.bin", &payload.bytes, 1);
    rerun(&device, &nginx.url("short.bin"), payload);
}

#[test]
fn server_ignoring_range() {
    let fx = fixture();
    let payload = &fx.full;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    proxy.set_default(|| Plan::strip(&["range", "if-range"]));

    // From the start, one whole-file answer is all a fresh apply needs.
    let device = Device::fresh();
    let (_, fetched) = apply(&device, &proxy.url("payload.bin"), payload, opts()).unwrap();
    device.assert_updated(payload);
    assert_eq!(fetched, payload.size());

    // A break halfway cannot be resumed from such a server: 11, with what was complete kept.
    let device = Device::fresh();
    proxy.push(Plan {
        cut_after: Some(payload.size() / 2),
        ..Plan::strip(&["range", "if-range"])
    });
    let error = apply(&device, &proxy.url("payload.bin"), payload, opts()).unwrap_err();
    assert_eq!(error.code, ErrorCode::DownloadProtocol, "{error}");
    assert!(error.message.contains("ignores Range"), "{error}");
    device.assert_failed_safely(&error, payload);
    let cp = device.checkpoint().expect("a checkpoint");
    assert!(
        cp.next_operation > 0,
        "the complete operations were applied"
    );

    // A re-run through it reads the metadata, then fails the same way asking for the rest,
    // and the checkpoint stays where it was.
    let error = apply(&device, &proxy.url("payload.bin"), payload, opts()).unwrap_err();
    assert_eq!(error.code, ErrorCode::DownloadProtocol, "{error}");
    device.assert_failed_safely(&error, payload);
    let again = device.checkpoint().expect("a checkpoint");
    assert_eq!(
        (again.next_operation, again.next_data_offset),
        (cp.next_operation, cp.next_data_offset)
    );

    // A server that honours Range finishes the job.
    rerun(&device, &nginx.url("payload.bin"), payload);
}

#[test]
fn file_replaced_mid_download() {
    let fx = fixture();
    let nginx = Nginx::start(None);
    serve(&nginx, &fx.full);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let (www, other) = (nginx.www(), fx.other.bytes.clone());
    // While the connection is cut halfway, the server's file becomes another payload.
    proxy.push(Plan {
        before_cut: Some(Box::new(move || {
            replace_file(&www, "payload.bin", &other, 1000)
        })),
        ..Plan::cut(fx.full.size() / 2, false)
    });
    let device = Device::fresh();
    let error = apply(&device, &proxy.url("payload.bin"), &fx.full, opts()).unwrap_err();
    assert_eq!(error.code, ErrorCode::DownloadChanged, "{error}");
    device.assert_failed_safely(&error, &fx.full);
    assert!(device.checkpoint().is_some_and(|cp| cp.next_operation > 0));

    // Applying what the server now offers: another payload, so the engine starts over rather
    // than resume the first one's checkpoint.
    let (outcome, fetched) = apply(&device, &nginx.url("payload.bin"), &fx.other, opts()).unwrap();
    assert_eq!(outcome.report.resumed_at, None);
    assert_eq!(fetched, fx.other.size());
    device.assert_updated(&fx.other);
}
