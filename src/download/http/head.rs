//! The response head, reduced to the fields a ranged download decides on, each parsed once.

use super::Fault;
use crate::error::shown;

/// What a response says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub reason: String,
    pub content_length: Option<u64>,
    pub chunked: bool,
    pub content_range: Option<ContentRange>,
    /// `Content-Encoding` other than `identity`: the body is not the file's bytes.
    pub encoding: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub location: Option<String>,
    /// `Retry-After` in seconds (the HTTP-date form is ignored).
    pub retry_after: Option<u64>,
}

/// A `Content-Range` value: `bytes first-last/total` or, on 416, `bytes */total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContentRange {
    /// `(first, last)`, inclusive; `None` for the unsatisfied form.
    pub span: Option<(u64, u64)>,
    pub total: Option<u64>,
}

impl Head {
    pub fn from_parsed(response: &httparse::Response<'_, '_>) -> Result<Head, Fault> {
        let mut head = Head {
            status: response.code.unwrap_or(0),
            reason: response.reason.unwrap_or("").to_owned(),
            ..Head::default()
        };
        for header in response.headers.iter() {
            let value = std::str::from_utf8(header.value)
                .map_err(|_| malformed(format!("header {} is not UTF-8", shown(header.name))))?
                .trim();
            let name = header.name.to_ascii_lowercase();
            match name.as_str() {
                "content-length" => {
                    let length = parse_decimal(value)
                        .ok_or_else(|| malformed(format!("bad Content-Length {}", shown(value))))?;
                    if head.content_length.is_some_and(|seen| seen != length) {
                        return Err(malformed("conflicting Content-Length headers".into()));
                    }
                    head.content_length = Some(length);
                }
                "transfer-encoding" => {
                    if !value.eq_ignore_ascii_case("chunked") {
                        return Err(malformed(format!(
                            "unsupported Transfer-Encoding {}",
                            shown(value)
                        )));
                    }
                    head.chunked = true;
                }
                "content-range" => {
                    let range = ContentRange::parse(value)
                        .ok_or_else(|| malformed(format!("bad Content-Range {}", shown(value))))?;
                    head.content_range = Some(range);
                }
                "content-encoding" if !value.eq_ignore_ascii_case("identity") => {
                    head.encoding = Some(value.to_owned());
                }
                "etag" => head.etag = Some(value.to_owned()),
                "last-modified" => head.last_modified = Some(value.to_owned()),
                "location" => head.location = Some(value.to_owned()),
                "retry-after" => head.retry_after = parse_decimal(value),
                _ => {}
            }
        }
        Ok(head)
    }
}

impl ContentRange {
    pub fn parse(value: &str) -> Option<ContentRange> {
        let rest = value.trim().strip_prefix("bytes")?;
        let rest = rest.strip_prefix([' ', '='])?.trim_start();
        let (span, total) = rest.split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            digits => Some(parse_decimal(digits)?),
        };
        let span = match span.trim() {
            "*" => None,
            span => {
                let (first, last) = span.split_once('-')?;
                let (first, last) = (parse_decimal(first)?, parse_decimal(last)?);
                if last < first || total.is_some_and(|total| last >= total) {
                    return None;
                }
                Some((first, last))
            }
        };
        if span.is_none() && total.is_none() {
            return None;
        }
        Some(ContentRange { span, total })
    }
}

/// Digits only: no sign, no spaces, no overflow.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A response the client cannot read as HTTP/1.1.
pub(super) fn malformed(message: String) -> Fault {
    Fault::Fatal(crate::err!(
        DownloadProtocol,
        "malformed HTTP response: {message}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Head, Fault> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(text.as_bytes()).unwrap().is_complete());
        Head::from_parsed(&response)
    }

    #[test]
    fn content_range_forms() {
        let range = |first, last, total| ContentRange {
            span: Some((first, last)),
            total,
        };
        assert_eq!(
            ContentRange::parse("bytes 0-9/10"),
            Some(range(0, 9, Some(10)))
        );
        assert_eq!(ContentRange::parse("bytes 5-5/*"), Some(range(5, 5, None)));
        assert_eq!(
            ContentRange::parse(" bytes  7-8/100 "),
            Some(range(7, 8, Some(100)))
        );
        assert_eq!(
            ContentRange::parse("bytes */4096"),
            Some(ContentRange {
                span: None,
                total: Some(4096)
            })
        );
        for bad in [
            "bytes */*",
            "bytes 9-0/10",
            "bytes 0-10/10",
            "bytes -1-5/10",
            "bytes 0-5",
            "items 0-5/10",
            "bytes 0-5/1x",
            "bytes 0-99999999999999999999/1",
            "bytes0-1/2",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn head_fields() {
        let head = parse(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 10-19/100\r\n\
             ETag: \"abc\"\r\nLast-Modified: Tue, 01 Jan 2030 00:00:00 GMT\r\nContent-Encoding: identity\r\n\
             Retry-After: 7\r\ncontent-length: 10\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.status, 206);
        assert_eq!(head.reason, "Partial Content");
        assert_eq!(head.content_length, Some(10));
        assert_eq!(head.content_range, ContentRange::parse("bytes 10-19/100"));
        assert_eq!(head.etag.as_deref(), Some("\"abc\""));
        assert_eq!(
            head.last_modified.as_deref(),
            Some("Tue, 01 Jan 2030 00:00:00 GMT")
        );
        assert_eq!(head.encoding, None);
        assert_eq!(head.retry_after, Some(7));
        assert!(!head.chunked);

        let head = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nContent-Encoding: gzip\r\n\r\n",
        )
        .unwrap();
        assert!(head.chunked);
        assert_eq!(head.encoding.as_deref(), Some("gzip"));
    }

    #[test]
    fn bad_values_are_not_echoed() {
        let value = format!("\x1b[2J{}", "9".repeat(3000));
        let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        // httparse refuses the escape byte itself; a long value shows cut.
        if response.parse(text.as_bytes()).is_ok() {
            match Head::from_parsed(&response) {
                Err(Fault::Fatal(e)) => assert!(!e.message.contains('\x1b'), "{e}"),
                other => panic!("{other:?}"),
            }
        }
        match parse(&format!(
            "HTTP/1.1 206 OK\r\nContent-Range: bytes {}\r\n\r\n",
            "7".repeat(3000)
        )) {
            Err(Fault::Fatal(e)) => {
                assert!(
                    e.message.len() < 200 && e.message.contains("3006 bytes"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_ambiguous_heads() {
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 206 OK\r\nContent-Range: bytes 1-0/5\r\n\r\n",
        ] {
            match parse(bad) {
                Err(Fault::Fatal(e)) => {
                    assert_eq!(e.code, crate::ErrorCode::DownloadProtocol, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
