//! The HTTP payload source against a real nginx (Debian `nginx-light`), with TLS certificates
//! made by the `openssl` tool and faults injected by a proxy of ours.

#[path = "../common/mod.rs"]
mod common;
mod control;
mod faults;

use std::io::{self, Read};
use std::time::Duration;

use abupdate::download::{self, PayloadStream, SourceOptions};
use abupdate::ErrorCode;

use common::nginx::Nginx;
use common::pki::Pki;
use common::proxy::{Mode, Plan, Proxy};

/// splitmix64: reproducible test data and fault positions without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Short timeouts keep fault tests fast.
pub fn opts() -> SourceOptions {
    SourceOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        max_retries: 8,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        ..SourceOptions::default()
    }
}

pub fn code_of(error: &io::Error) -> ErrorCode {
    download::error_of(error)
        .map(|e| e.code)
        .unwrap_or_else(|| panic!("unstructured error: {error}"))
}

/// Reads the rest of the stream, or the code it failed with.
pub fn drain(stream: &mut PayloadStream) -> Result<Vec<u8>, ErrorCode> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).map_err(|e| code_of(&e))?;
    Ok(out)
}

/// Opens and reads to the end: the bytes and the re-fetched count, or the code.
pub fn fetch(
    url: &str,
    base: u64,
    size: Option<u64>,
    start: u64,
    opts: &SourceOptions,
) -> Result<(Vec<u8>, u64), ErrorCode> {
    let mut stream = download::open(url, base, size, start, opts).map_err(|e| e.code)?;
    let bytes = drain(&mut stream)?;
    let refetched = stream.bytes_fetched() - bytes.len() as u64;
    Ok((bytes, refetched))
}

/// A payload of an odd size, and an "OTA zip" holding it stored at `ZIP_OFFSET`.
pub const ZIP_OFFSET: u64 = 4321;

pub fn serve_payload(nginx: &Nginx, seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let payload = rng.bytes(len);
    let zip = [
        rng.bytes(ZIP_OFFSET as usize),
        payload.clone(),
        rng.bytes(1000),
    ]
    .concat();
    nginx.put("payload.bin", &payload, 0);
    nginx.put("ota.zip", &zip, 0);
    payload
}

#[test]
fn reads_from_any_start_and_offset() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 1, 6 * 1024 * 1024 + 3);
    let len = payload.len() as u64;
    let opts = opts();
    let cases = [
        ("payload.bin", 0, Some(len), 0),
        ("payload.bin", 0, Some(len), len / 2 + 1),
        ("payload.bin", 0, None, 12_345),
        ("payload.bin", 0, Some(len), len),
        ("ota.zip", ZIP_OFFSET, Some(len), 0),
        ("ota.zip", ZIP_OFFSET, Some(len), 3_000_001),
    ];
    for (name, base, size, start) in cases {
        let mut stream = download::open(&nginx.url(name), base, size, start, &opts).unwrap();
        assert_eq!(stream.total_size(), Some(len), "{name} {start}");
        let bytes = drain(&mut stream).unwrap();
        assert!(
            bytes == payload[start as usize..],
            "{name} from {start}: bytes differ"
        );
        assert_eq!(
            stream.bytes_fetched(),
            len - start,
            "{name} from {start}: nothing fetched twice"
        );
    }
    // Without a size, a payload inside a zip runs to the end of the file.
    let (bytes, _) = fetch(&nginx.url("ota.zip"), ZIP_OFFSET, None, 0, &opts).unwrap();
    assert_eq!(bytes.len() as u64, len + 1000);
    assert!(bytes[..len as usize] == payload[..]);
}

#[test]
fn follows_relative_and_absolute_redirects() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 2, 300_000);
    let len = payload.len() as u64;
    for path in ["redirect/payload.bin", "absolute/payload.bin"] {
        let (bytes, refetched) = fetch(&nginx.url(path), 0, Some(len), 1000, &opts()).unwrap();
        assert!(bytes == payload[1000..], "{path}");
        // Only the redirects' small HTML bodies.
        assert!(refetched < 1024, "{path}: {refetched}");
    }
}

#[test]
fn client_errors_fail_at_once() {
    let nginx = Nginx::start(None);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let e = download::open(&proxy.url("missing.bin"), 0, None, 0, &opts())
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadProtocol, "{e}");
    assert!(e.message.contains("404"), "{e}");
    assert_eq!(proxy.seen().len(), 1, "a 404 is not retried");
}

#[test]
fn sizes_must_match() {
    let nginx = Nginx::start(None);
    let payload = serve_payload(&nginx, 3, 100_000);
    let len = payload.len() as u64;
    let opts = opts();
    // payload.bin is the payload itself: its size must be FILE_SIZE exactly.
    for size in [len - 1, len + 1] {
        assert_eq!(
            fetch(&nginx.url("payload.bin"), 0, Some(size), 0, &opts).err(),
            Some(ErrorCode::SizeMismatch)
        );
    }
    // A payload said to run past the end of the zip.
    let too_long = Some(len + 1001);
    assert_eq!(
        fetch(&nginx.url("ota.zip"), ZIP_OFFSET, too_long, 0, &opts).err(),
        Some(ErrorCode::SizeMismatch)
    );
    // Resuming past the end of a file of unknown size: nginx answers 416.
    assert_eq!(
        fetch(&nginx.url("payload.bin"), 0, None, len + 5, &opts).err(),
        Some(ErrorCode::SizeMismatch)
    );
    // Resuming exactly at the end is the end.
    assert_eq!(
        fetch(&nginx.url("payload.bin"), 0, None, len, &opts)
            .unwrap()
            .0,
        b""
    );
}

#[test]
fn tls_trusts_the_pinned_ca_only() {
    let pki = Pki::generate();
    let nginx = Nginx::start(Some(&pki));
    let payload = serve_payload(&nginx, 4, 1024 * 1024 + 17);
    let len = payload.len() as u64;
    let pinned = SourceOptions {
        pinned_ca: Some(pki.ca_cert.clone()),
        ..opts()
    };
    for host in ["127.0.0.1", "localhost"] {
        let (bytes, refetched) = fetch(
            &nginx.tls_url(host, "payload.bin"),
            0,
            Some(len),
            777,
            &pinned,
        )
        .unwrap();
        assert!(bytes == payload[777..], "{host}");
        assert_eq!(refetched, 0);
    }

    let proxy = Proxy::start(nginx.tls_port, Mode::Raw);
    let e = download::open(&proxy.tls_url("payload.bin"), 0, Some(len), 0, &opts())
        .err()
        .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed, "{e}");
    assert!(e.message.contains("certificate was rejected"), "{e}");
    assert!(e.message.contains("UnknownIssuer"), "{e}");
    assert_eq!(
        proxy.seen().len(),
        1,
        "an untrusted certificate is not retried"
    );

    // A pinned CA that did not sign the server's certificate does not help either.
    let other = Pki::generate();
    let wrong = SourceOptions {
        pinned_ca: Some(other.ca_cert.clone()),
        ..opts()
    };
    let e = download::open(
        &nginx.tls_url("localhost", "payload.bin"),
        0,
        None,
        0,
        &wrong,
    )
    .err()
    .unwrap();
    assert_eq!(e.code, ErrorCode::DownloadFailed, "{e}");
}

#[test]
fn chunked_and_canned_answers() {
    let nginx = Nginx::start(None);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut chunked = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4999/5000\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for piece in body.chunks(1500) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    proxy.push(Plan::respond(chunked));
    let (bytes, _) = fetch(&proxy.url("chunked.bin"), 0, Some(5000), 0, &opts()).unwrap();
    assert_eq!(bytes, body);
}
