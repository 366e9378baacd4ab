//! The payload over HTTP(S): one ranged GET after another, each resuming at the exact byte
//! where the previous connection stopped.
//!
//! Policy, in the order the code applies it:
//! - every request asks for `bytes=(base+pos)-(base+size-1)` (open-ended when the size is
//!   unknown) and, once a first response named the file, carries `If-Range` with its strong
//!   ETag or else its Last-Modified;
//! - each response's ETag, Last-Modified and total size must equal the first response's, else
//!   the file was replaced: `DownloadChanged` (12);
//! - `206` must start at the byte asked for and not run past the payload, else
//!   `DownloadProtocol` (11); the total must leave room for the payload, and when the payload
//!   starts the file (`base == 0`) equal it, else `SizeMismatch` (14);
//! - `200` means the server ignores Range. We read through up to [`MAX_DISCARD`] bytes to reach
//!   the wanted one (so a payload near the start of a zip still works) and otherwise fail with
//!   11: re-downloading a gigabyte to resume would cost the user more than a clear failure;
//! - connection errors, stalls (no byte for `read_timeout`), truncated bodies, 5xx, 408 and 429
//!   are retried after an exponential backoff (honouring `Retry-After` up to `backoff_max`);
//!   `max_retries` bounds consecutive attempts that brought no payload byte, so a long
//!   download on a flaky network survives any number of drops as long as each one progresses;
//! - other 4xx fail at once with 11; 416 says the file is shorter than the payload: 14;
//! - redirects are followed (5 at most) from the original URL on every attempt, so expiring
//!   signed CDN links are fetched fresh; never from https to http, and the `Authorization`
//!   header is not sent to another origin.

mod conn;
mod head;
mod tls;
mod url;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

pub(crate) use self::url::{strip_prefix_ci, HttpUrl};
use crate::download::SourceOptions;
use crate::error::{Error, Result};
use conn::{Chunk, Conn, Framing};
use head::Head;
use wire::{Timing, Wire};

/// The most bytes read and thrown away when a server answers a ranged request with the whole
/// file (`200`): enough for the local headers before `payload.bin` in an OTA zip.
pub(crate) const MAX_DISCARD: u64 = 256 * 1024;

const MAX_REDIRECTS: usize = 5;

/// Request headers the client manages itself.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "range",
    "if-range",
    "connection",
    "accept-encoding",
    "content-length",
    "transfer-encoding",
    "te",
];

/// Why an attempt stopped.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Worth another attempt after a backoff.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Stop with this error.
    Fatal(Error),
    /// The transfer was suspended: drop the connection and wait.
    Suspended,
}

impl Fault {
    pub fn retry(why: impl Into<String>) -> Fault {
        Fault::Retry {
            why: why.into(),
            after: None,
        }
    }
}

pub(crate) struct HttpSource {
    url: HttpUrl,
    base: u64,
    /// The payload size: given, or learned from the first response's total.
    size: Option<u64>,
    pos: u64,
    opts: SourceOptions,
    tls: Option<Arc<ClientConfig>>,
    identity: Option<Identity>,
    conn: Option<Conn<Wire>>,
    /// Bytes still to be dropped from the current response to reach `pos`.
    discard: u64,
    /// Whether the current response delivered payload bytes.
    progressed: bool,
    fetched: u64,
    failures: u32,
}

/// What names the file on the server; it must not change while we download it.
struct Identity {
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
}

impl HttpSource {
    /// Connects and checks the first response, retrying as reads do.
    pub fn open(
        url: HttpUrl,
        base: u64,
        size: Option<u64>,
        start: u64,
        opts: &SourceOptions,
    ) -> Result<HttpSource> {
        check_headers(&opts.headers)?;
        let mut source = HttpSource {
            url,
            base,
            size,
            pos: start,
            opts: opts.clone(),
            tls: None,
            identity: None,
            conn: None,
            discard: 0,
            progressed: false,
            fetched: 0,
            failures: 0,
        };
        while let Err(fault) = source.ensure_conn() {
            source.recover(fault)?;
        }
        Ok(source)
    }

    pub fn read(&mut self, out: &mut [u8]) -> Result<usize> {
        loop {
            match self.attempt(out) {
                Ok(n) => return Ok(n),
                Err(fault) => self.recover(fault)?,
            }
        }
    }

    pub fn total_size(&self) -> Option<u64> {
        self.size
    }

    pub fn bytes_fetched(&self) -> u64 {
        self.fetched + self.conn.as_ref().map_or(0, |conn| conn.received())
    }

    fn attempt(&mut self, out: &mut [u8]) -> std::result::Result<usize, Fault> {
        loop {
            self.ensure_conn()?;
            let want = match self.size.map(|size| size - self.pos) {
                Some(0) => {
                    self.drop_conn();
                    return Ok(0);
                }
                Some(left) => out.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
                None => out.len(),
            };
            let Some(conn) = self.conn.as_mut() else {
                return Ok(0);
            };
            if want == 0 {
                return Ok(0);
            }
            if self.discard > 0 {
                conn.skip_body(self.discard)?;
                self.discard = 0;
            }
            let n = conn.read_body(&mut out[..want])?;
            if n > 0 {
                self.pos += n as u64;
                self.progressed = true;
                self.failures = 0;
                return Ok(n);
            }
            // The response is complete.
            let progressed = self.progressed;
            self.drop_conn();
            if self.size.is_none() {
                // Neither the caller nor the server named a size: the body's end is the end.
                self.size = Some(self.pos);
                return Ok(0);
            }
            if !progressed {
                return Err(Fault::retry("the response ended without payload bytes"));
            }
            // The server sent a shorter range than asked for; ask for the rest.
        }
    }

    fn recover(&mut self, fault: Fault) -> Result<()> {
        self.drop_conn();
        match fault {
            Fault::Fatal(error) => Err(error),
            Fault::Suspended => {
                log::info!("download suspended at payload byte {}", self.pos);
                self.opts.control.wait_resumed()
            }
            Fault::Retry { why, after } => {
                self.failures += 1;
                if self.failures > self.opts.max_retries {
                    crate::bail!(
                        DownloadFailed,
                        "downloading {} failed at payload byte {} after {} attempts: {why}",
                        self.url,
                        self.pos,
                        self.failures
                    );
                }
                let delay = self.backoff(after);
                log::warn!(
                    "download of {} interrupted at payload byte {}: {why}; retry {}/{} in {delay:?}",
                    self.url,
                    self.pos,
                    self.failures,
                    self.opts.max_retries
                );
                self.opts.control.sleep(delay)
            }
        }
    }

    fn backoff(&self, server_asked: Option<Duration>) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(30);
        let delay = self
            .opts
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.opts.backoff_max);
        server_asked.map_or(delay, |asked| asked.max(delay).min(self.opts.backoff_max))
    }

    fn drop_conn(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.fetched += conn.received();
        }
        self.discard = 0;
        self.progressed = false;
    }

    fn ensure_conn(&mut self) -> std::result::Result<(), Fault> {
        self.opts.control.check()?;
        if self.conn.is_none() && self.size != Some(self.pos) {
            self.conn = self.request()?;
        }
        Ok(())
    }

    /// One request, following redirects. `None` when the server says nothing is left.
    fn request(&mut self) -> std::result::Result<Option<Conn<Wire>>, Fault> {
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let tls = if url.tls {
                Some(self.tls_config()?)
            } else {
                None
            };
            let timing = Timing {
                connect: self.opts.connect_timeout,
                stall: self.opts.read_timeout,
            };
            let mut conn = Conn::new(Wire::connect(
                &url.host,
                url.port,
                tls,
                &timing,
                &self.opts.control,
            )?);
            conn.send(self.request_head(&url).as_bytes())?;
            let head = conn.read_head()?;
            let answer = self.answer(&url, &head, &mut conn);
            if !matches!(answer, Ok(Answer::Body)) {
                self.fetched += conn.received();
            }
            match answer? {
                Answer::Body => return Ok(Some(conn)),
                Answer::End => return Ok(None),
                Answer::Redirect(next) => url = next,
            }
        }
        Err(protocol(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            self.url
        )))
    }

    fn answer(
        &mut self,
        url: &HttpUrl,
        head: &Head,
        conn: &mut Conn<Wire>,
    ) -> std::result::Result<Answer, Fault> {
        match head.status {
            206 => self.accept_partial(head, conn).map(|()| Answer::Body),
            200 => self.accept_full(head, conn).map(|()| Answer::Body),
            301 | 302 | 303 | 307 | 308 => self.redirect(url, head).map(Answer::Redirect),
            416 => self.unsatisfiable(head).map(|()| Answer::End),
            408 | 429 | 500..=599 => Err(Fault::Retry {
                why: format!("{url} answered {} {}", head.status, head.reason),
                after: head.retry_after.map(Duration::from_secs),
            }),
            status => Err(protocol(format!("{url} answered {status} {}", head.reason))),
        }
    }

    fn accept_partial(
        &mut self,
        head: &Head,
        conn: &mut Conn<Wire>,
    ) -> std::result::Result<(), Fault> {
        check_encoding(head)?;
        let range = head
            .content_range
            .ok_or_else(|| protocol("206 response without Content-Range".into()))?;
        let (first, last) = range
            .span
            .ok_or_else(|| protocol("206 response with an unsatisfied Content-Range".into()))?;
        self.check_identity(head, range.total)?;
        let wanted = self.base + self.pos;
        if first != wanted {
            return Err(protocol(format!(
                "asked for bytes from {wanted}, the server sent bytes from {first}"
            )));
        }
        if let Some(size) = self.size {
            let end = self.base + size - 1;
            if last > end {
                return Err(protocol(format!(
                    "asked for bytes up to {end}, the server sent up to {last}"
                )));
            }
        }
        if let Some(total) = range.total {
            self.check_total(total)?;
        }
        let length = last - first + 1;
        if head.chunked {
            conn.set_framing(Framing::Chunked(Chunk::Size));
        } else {
            if head
                .content_length
                .is_some_and(|declared| declared != length)
            {
                return Err(protocol(format!(
                    "Content-Length differs from the {length} bytes of Content-Range"
                )));
            }
            conn.set_framing(Framing::Length(length));
        }
        Ok(())
    }

    fn accept_full(
        &mut self,
        head: &Head,
        conn: &mut Conn<Wire>,
    ) -> std::result::Result<(), Fault> {
        check_encoding(head)?;
        let total = if head.chunked {
            None
        } else {
            head.content_length
        };
        self.check_identity(head, total)?;
        let skip = self.base + self.pos;
        if skip > MAX_DISCARD {
            return Err(protocol(format!(
                "the server ignores Range requests (it answered 200 to a request for bytes from {skip}); \
                 resuming would mean downloading those {skip} bytes again"
            )));
        }
        if let Some(total) = total {
            self.check_total(total)?;
        }
        conn.set_framing(match (head.chunked, head.content_length) {
            (true, _) => Framing::Chunked(Chunk::Size),
            (false, Some(length)) => Framing::Length(length),
            (false, None) => Framing::UntilClose,
        });
        self.discard = skip;
        Ok(())
    }

    fn redirect(&mut self, url: &HttpUrl, head: &Head) -> std::result::Result<HttpUrl, Fault> {
        let location = head
            .location
            .as_deref()
            .ok_or_else(|| protocol(format!("{url} answered {} without Location", head.status)))?;
        let next = url.join(location).map_err(protocol)?;
        if url.tls && !next.tls {
            return Err(protocol(format!(
                "refusing the redirect from {url} to plain-text {next}"
            )));
        }
        log::debug!("{url} redirects to {next}");
        Ok(next)
    }

    fn unsatisfiable(&mut self, head: &Head) -> std::result::Result<(), Fault> {
        let total = head.content_range.and_then(|range| range.total);
        self.check_identity(head, total)?;
        let wanted = self.base + self.pos;
        match total {
            Some(total) if self.size.is_none() && total == wanted => {
                self.size = Some(self.pos);
                Ok(())
            }
            Some(total) => Err(Fault::Fatal(crate::err!(
                SizeMismatch,
                "the file on the server has {total} bytes, too few for payload byte {} at {wanted}",
                self.pos
            ))),
            None => Err(Fault::Fatal(crate::err!(
                SizeMismatch,
                "the server has no bytes from {wanted} (416 Range Not Satisfiable)"
            ))),
        }
    }

    /// The file must stay the one the first response described.
    fn check_identity(
        &mut self,
        head: &Head,
        total: Option<u64>,
    ) -> std::result::Result<(), Fault> {
        let seen = Identity {
            etag: head.etag.clone(),
            last_modified: head.last_modified.clone(),
            total,
        };
        let Some(first) = &self.identity else {
            self.identity = Some(seen);
            return Ok(());
        };
        let changed = |what: &str, before: &dyn std::fmt::Display, now: &dyn std::fmt::Display| {
            Err(Fault::Fatal(crate::err!(
                DownloadChanged,
                "the payload on the server changed during the download: {what} was {before}, now {now}"
            )))
        };
        if let (Some(before), Some(now)) = (&first.etag, &seen.etag) {
            if weak(before) != weak(now) {
                return changed("ETag", before, now);
            }
        }
        if let (Some(before), Some(now)) = (&first.last_modified, &seen.last_modified) {
            if before != now {
                return changed("Last-Modified", before, now);
            }
        }
        if let (Some(before), Some(now)) = (first.total, seen.total) {
            if before != now {
                return changed("the file size", &before, &now);
            }
        }
        Ok(())
    }

    fn check_total(&mut self, total: u64) -> std::result::Result<(), Fault> {
        let mismatch = |message: String| Err(Fault::Fatal(crate::err!(SizeMismatch, "{message}")));
        match self.size {
            Some(size) if self.base == 0 && total != size => mismatch(format!(
                "the file on the server has {total} bytes, the payload {size}"
            )),
            Some(size) if total < self.base + size => mismatch(format!(
                "the file on the server has {total} bytes, the payload needs bytes up to {}",
                self.base + size
            )),
            Some(_) => Ok(()),
            None if total < self.base + self.pos => mismatch(format!(
                "the file on the server has {total} bytes, the download starts at {}",
                self.base + self.pos
            )),
            None => {
                self.size = Some(total - self.base);
                Ok(())
            }
        }
    }

    fn request_head(&self, url: &HttpUrl) -> String {
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            url.target,
            url.authority()
        );
        let has = |name: &str| {
            self.opts
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("user-agent") {
            head += concat!("User-Agent: abupdate/", env!("CARGO_PKG_VERSION"), "\r\n");
        }
        if !has("accept") {
            head += "Accept: */*\r\n";
        }
        head += "Accept-Encoding: identity\r\nConnection: close\r\n";
        let first = self.base + self.pos;
        match self.size {
            Some(size) => head += &format!("Range: bytes={first}-{}\r\n", self.base + size - 1),
            None => head += &format!("Range: bytes={first}-\r\n"),
        }
        if let Some(identity) = &self.identity {
            let strong_etag = identity
                .etag
                .as_ref()
                .filter(|etag| !etag.starts_with("W/"));
            if let Some(validator) = strong_etag.or(identity.last_modified.as_ref()) {
                head += &format!("If-Range: {validator}\r\n");
            }
        }
        for (name, value) in &self.opts.headers {
            if name.eq_ignore_ascii_case("authorization") && !url.same_origin(&self.url) {
                continue;
            }
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        head
    }

    fn tls_config(&mut self) -> std::result::Result<Arc<ClientConfig>, Fault> {
        if let Some(config) = &self.tls {
            return Ok(Arc::clone(config));
        }
        let config = tls::client_config(self.opts.pinned_ca.as_deref()).map_err(Fault::Fatal)?;
        self.tls = Some(Arc::clone(&config));
        Ok(config)
    }
}

enum Answer {
    Body,
    End,
    Redirect(HttpUrl),
}

/// Header names must be tokens and values single-line: no request smuggling through options.
fn check_headers(headers: &[(String, String)]) -> Result<()> {
    for (name, value) in headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            crate::bail!(DownloadFailed, "invalid HTTP header name {name:?}");
        }
        if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            crate::bail!(DownloadFailed, "invalid value for HTTP header {name}");
        }
        if RESERVED_HEADERS
            .iter()
            .any(|reserved| name.eq_ignore_ascii_case(reserved))
        {
            crate::bail!(
                DownloadFailed,
                "HTTP header {name} is managed by the downloader"
            );
        }
    }
    Ok(())
}

fn check_encoding(head: &Head) -> std::result::Result<(), Fault> {
    match &head.encoding {
        Some(encoding) => Err(protocol(format!(
            "the server sent the payload with Content-Encoding {encoding}, not as its bytes"
        ))),
        None => Ok(()),
    }
}

/// ETags compared weakly: a `W/` prefix alone does not make a different file.
fn weak(etag: &str) -> &str {
    etag.strip_prefix("W/").unwrap_or(etag)
}

fn protocol(message: String) -> Fault {
    Fault::Fatal(crate::err!(DownloadProtocol, "{message}"))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn weak_etags_compare_equal() {
        assert_eq!(weak("W/\"abc\""), weak("\"abc\""));
        assert_ne!(weak("\"abc\""), weak("\"abd\""));
    }
}
