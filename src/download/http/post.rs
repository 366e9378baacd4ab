//! One POST with a small body and a small answer (fleet check-ins and reports), over the same
//! connections, TLS configuration and header rules as the payload download.
//!
//! One attempt, no redirects followed (a report must not be re-sent to wherever a redirect
//! points): the caller's queue owns retries and backoff.

use super::conn::{Conn, Framing};
use super::{check_headers, Dial, Fault, HttpUrl, Network};
use crate::download::SourceOptions;
use crate::error::Result;

/// The status and body of the answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: Vec<u8>,
}

/// Sends `body` to `url` and reads an answer of at most `max_answer` bytes.
pub(crate) fn post(
    url: &HttpUrl,
    content_type: &str,
    body: &[u8],
    max_answer: usize,
    opts: &SourceOptions,
) -> Result<Answer> {
    check_headers(&opts.headers)?;
    let fault = |fault: Fault| match fault {
        Fault::Fatal(error) => error,
        Fault::Retry { why, .. } => crate::err!(DownloadFailed, "POST {url}: {why}"),
        Fault::Suspended => crate::err!(DownloadFailed, "POST {url}: suspended"),
    };
    let mut conn = Conn::new(Network::default().dial(url, opts).map_err(fault)?);
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n",
        url.target,
        url.authority(),
        body.len()
    );
    if !opts
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        head += concat!("User-Agent: abupdate/", env!("CARGO_PKG_VERSION"), "\r\n");
    }
    for (name, value) in &opts.headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    conn.send(&request).map_err(fault)?;
    let answer = conn.read_head().map_err(fault)?;
    if answer.encoding.is_some() {
        crate::bail!(DownloadProtocol, "POST {url}: the answer is encoded");
    }
    conn.set_framing(match (answer.chunked, answer.content_length) {
        (true, _) => Framing::Chunked(super::conn::Chunk::Size),
        (false, Some(length)) => Framing::Length(length),
        (false, None) if answer.status == 204 => Framing::Length(0),
        (false, None) => Framing::UntilClose,
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read_body(&mut buf).map_err(fault)?;
        if n == 0 {
            break;
        }
        if out.len().saturating_add(n) > max_answer {
            crate::bail!(
                DownloadProtocol,
                "POST {url}: the answer is longer than {max_answer} bytes"
            );
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(Answer {
        status: answer.status,
        body: out,
    })
}
