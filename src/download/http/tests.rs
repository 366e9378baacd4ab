//! The pure parts of the HTTP source: request heads, backoff, size and identity checks.

use super::answer::weak;
use super::head::Head;
use super::*;
use crate::ErrorCode;

#[test]
fn header_options_are_checked() {
    let ok = [("User-Agent".to_owned(), "abupdate-test/1".to_owned())];
    assert!(check_headers(&ok).is_ok());
    for (name, value) in [
        ("Bad Name", "x"),
        ("", "x"),
        ("X-Evil", "a\r\nRange: bytes=0-"),
        ("Range", "bytes=0-1"),
        ("if-range", "x"),
    ] {
        let e = check_headers(&[(name.to_owned(), value.to_owned())]).unwrap_err();
        assert_eq!(e.code, ErrorCode::DownloadFailed, "{name}");
    }
}

fn source(url: &str, base: u64, size: Option<u64>, pos: u64) -> HttpSource {
    let opts = SourceOptions {
        headers: vec![
            ("Authorization".into(), "Bearer t".into()),
            ("X-Id".into(), "7".into()),
        ],
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..SourceOptions::default()
    };
    HttpSource {
        url: HttpUrl::parse(url).unwrap(),
        base,
        size,
        pos,
        opts,
        dialer: Network::default(),
        identity: None,
        conn: None,
        discard: 0,
        progressed: false,
        fetched: 0,
        failures: 0,
    }
}

fn head(etag: Option<&str>, last_modified: Option<&str>) -> Head {
    Head {
        status: 206,
        etag: etag.map(str::to_owned),
        last_modified: last_modified.map(str::to_owned),
        ..Head::default()
    }
}

fn code(result: std::result::Result<(), Fault>) -> Option<ErrorCode> {
    match result {
        Ok(()) => None,
        Err(Fault::Fatal(e)) => Some(e.code),
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn request_heads() {
    let mut s = source("http://h:8080/ota/p.bin?x", 100, Some(1000), 250);
    let text = s.request_head(&s.url.clone());
    assert_eq!(
        text,
        format!(
            "GET /ota/p.bin?x HTTP/1.1\r\nHost: h:8080\r\nUser-Agent: abupdate/{}\r\n\
             Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\
             Range: bytes=350-1099\r\nAuthorization: Bearer t\r\nX-Id: 7\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    // Once the file is known, resumes carry If-Range: the strong ETag, else Last-Modified.
    s.identity = Some(Identity {
        etag: Some("\"e1\"".into()),
        last_modified: Some("D".into()),
        total: None,
    });
    assert!(s
        .request_head(&s.url.clone())
        .contains("If-Range: \"e1\"\r\n"));
    s.identity = Some(Identity {
        etag: Some("W/\"e1\"".into()),
        last_modified: Some("D".into()),
        total: None,
    });
    assert!(s.request_head(&s.url.clone()).contains("If-Range: D\r\n"));
    // Credentials stay with their origin.
    let elsewhere = HttpUrl::parse("https://cdn/p.bin").unwrap();
    let text = s.request_head(&elsewhere);
    assert!(
        !text.contains("Authorization") && text.contains("X-Id: 7"),
        "{text}"
    );
    assert!(text.contains("Host: cdn\r\n"), "{text}");

    let s = source("http://h/p", 0, None, 0);
    assert!(s
        .request_head(&s.url.clone())
        .contains("Range: bytes=0-\r\n"));
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut s = source("http://h/p", 0, None, 0);
    let mut delays = Vec::new();
    for failures in 1..=6 {
        s.failures = failures;
        delays.push(s.backoff(None).as_millis());
    }
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    s.failures = 1;
    assert_eq!(
        s.backoff(Some(Duration::from_millis(500))),
        Duration::from_millis(500)
    );
    assert_eq!(
        s.backoff(Some(Duration::from_secs(3600))),
        Duration::from_secs(1)
    );
}

#[test]
fn totals_against_the_payload_size() {
    let mut whole = source("http://h/p", 0, Some(1000), 0);
    assert_eq!(code(whole.check_total(1000)), None);
    assert_eq!(code(whole.check_total(1001)), Some(ErrorCode::SizeMismatch));
    let mut inner = source("http://h/p", 50, Some(1000), 0);
    assert_eq!(code(inner.check_total(1050)), None);
    assert_eq!(code(inner.check_total(2000)), None);
    assert_eq!(code(inner.check_total(1049)), Some(ErrorCode::SizeMismatch));
    let mut unknown = source("http://h/p", 50, None, 10);
    assert_eq!(code(unknown.check_total(59)), Some(ErrorCode::SizeMismatch));
    assert_eq!(code(unknown.check_total(1050)), None);
    assert_eq!(unknown.size, Some(1000));
}

#[test]
fn identity_must_not_change() {
    let mut s = source("http://h/p", 0, None, 0);
    assert_eq!(
        code(s.check_identity(&head(Some("\"a\""), Some("D1")), Some(10))),
        None
    );
    assert_eq!(
        code(s.check_identity(&head(Some("W/\"a\""), Some("D1")), Some(10))),
        None
    );
    // A response without validators says nothing against the first one.
    assert_eq!(code(s.check_identity(&head(None, None), None)), None);
    for (etag, date, total) in [
        (Some("\"b\""), Some("D1"), Some(10)),
        (Some("\"a\""), Some("D2"), Some(10)),
        (None, None, Some(11)),
    ] {
        let changed = s.check_identity(&head(etag, date), total);
        assert_eq!(
            code(changed),
            Some(ErrorCode::DownloadChanged),
            "{etag:?} {date:?} {total:?}"
        );
    }
}

#[test]
fn payload_stream_can_move_to_the_engine_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<crate::download::PayloadStream>();
    assert_send::<SourceOptions>();
}

#[test]
fn weak_etags_compare_equal() {
    assert_eq!(weak("W/\"abc\""), weak("\"abc\""));
    assert_ne!(weak("\"abc\""), weak("\"abd\""));
}
