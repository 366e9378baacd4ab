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

mod answer;
mod conn;
mod head;
pub(crate) mod post;
pub mod scripted;
mod session;
#[cfg(not(soong))]
mod tls;
// Hosts compile (and test) the Soong backend too.
#[cfg_attr(not(soong), allow(dead_code))]
mod tls_boringssl;
mod url;
mod wire;

use std::time::Duration;

pub(crate) use self::url::{strip_prefix_ci, HttpUrl};
use crate::download::SourceOptions;
use crate::error::{Error, Result};
use answer::Answer;
use conn::{Conn, Transport};
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

/// Opens the connection a request goes over: the network, or a script (`scripted.rs`).
pub(crate) trait Dial {
    type Wire: Transport;
    fn dial(
        &mut self,
        url: &HttpUrl,
        opts: &SourceOptions,
    ) -> std::result::Result<Self::Wire, Fault>;
}

/// The TLS client configuration of this build's backend.
type TlsConfig = <session::Backend as session::TlsBackend>::Config;

/// TCP, and TLS for `https` with the configuration built once per download.
#[derive(Default)]
pub(crate) struct Network {
    tls: Option<TlsConfig>,
}

impl Dial for Network {
    type Wire = Wire;

    fn dial(&mut self, url: &HttpUrl, opts: &SourceOptions) -> std::result::Result<Wire, Fault> {
        let tls = if url.tls {
            Some(self.tls_config(opts)?)
        } else {
            None
        };
        let timing = Timing {
            connect: opts.connect_timeout,
            stall: opts.read_timeout,
        };
        Wire::connect(&url.host, url.port, tls, &timing, &opts.control)
    }
}

impl Network {
    fn tls_config(&mut self, opts: &SourceOptions) -> std::result::Result<TlsConfig, Fault> {
        if let Some(config) = &self.tls {
            return Ok(config.clone());
        }
        let config =
            <session::Backend as session::TlsBackend>::client_config(opts.pinned_ca.as_deref())
                .map_err(Fault::Fatal)?;
        self.tls = Some(config.clone());
        Ok(config)
    }
}

pub(crate) struct HttpSource<D: Dial = Network> {
    url: HttpUrl,
    base: u64,
    /// The payload size: given, or learned from the first response's total.
    size: Option<u64>,
    pos: u64,
    opts: SourceOptions,
    dialer: D,
    identity: Option<Identity>,
    conn: Option<Conn<D::Wire>>,
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
        HttpSource::with_dialer(url, base, size, start, opts, Network::default())
    }
}

impl<D: Dial> HttpSource<D> {
    /// `open` over any dialer. `base`, `size` and `start` are as `download::open` checked them.
    fn with_dialer(
        url: HttpUrl,
        base: u64,
        size: Option<u64>,
        start: u64,
        opts: &SourceOptions,
        dialer: D,
    ) -> Result<HttpSource<D>> {
        check_headers(&opts.headers)?;
        let mut source = HttpSource {
            url,
            base,
            size,
            pos: start,
            opts: opts.clone(),
            dialer,
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
            let want = match self.size.map(|size| size.saturating_sub(self.pos)) {
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
    fn request(&mut self) -> std::result::Result<Option<Conn<D::Wire>>, Fault> {
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut conn = Conn::new(self.dialer.dial(&url, &self.opts)?);
            conn.send(self.request_head(&url).as_bytes())?;
            let head = conn.read_head()?;
            let answer = self.answer(&url, &head);
            if !matches!(answer, Ok(Answer::Body(_))) {
                self.fetched += conn.received();
            }
            match answer? {
                Answer::Body(framing) => {
                    conn.set_framing(framing);
                    return Ok(Some(conn));
                }
                Answer::End => return Ok(None),
                Answer::Redirect(next) => url = next,
            }
        }
        Err(protocol(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            self.url
        )))
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
        // `download::open` checked that `base + size` fits, and a request is made only while
        // `pos < size`; saturating keeps an impossible overflow a refused range, not a crash.
        let first = self.base.saturating_add(self.pos);
        match self.size {
            Some(size) => {
                let last = self.base.saturating_add(size).saturating_sub(1);
                head += &format!("Range: bytes={first}-{last}\r\n");
            }
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

fn protocol(message: String) -> Fault {
    Fault::Fatal(crate::err!(DownloadProtocol, "{message}"))
}

#[cfg(test)]
mod tests;
