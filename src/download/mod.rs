//! Payload sources: the payload as a sequential byte stream from a given payload position,
//! fetched over HTTP(S) with ranged requests, or read from a file or an inherited descriptor.
//!
//! Devices cannot store the payload, so the stream is consumed as it arrives and a broken
//! connection resumes at the exact byte where it stopped (see `http/mod.rs` for the policy).
//! Memory stays bounded: one 64 KiB buffer per connection, nothing accumulates.
//!
//! Errors surface through [`Read`] as `io::Error::other(Error)`, so that the engine recovers the
//! structured code with [`error_of`]: 10 `DownloadFailed`, 11 `DownloadProtocol`, 12
//! `DownloadChanged`, 14 `SizeMismatch`, 38 `Cancelled`. After an error the stream stays failed.

mod control;
mod file;
mod http;
mod network;

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

pub use control::TransferControl;
#[doc(hidden)]
pub use http::scripted;

use crate::error::{Error, ErrorCode, Result};
use file::{FileSource, Origin};
use http::{HttpSource, HttpUrl};

/// How a payload is fetched.
#[derive(Clone)]
pub struct SourceOptions {
    /// Extra request headers, sent verbatim (see [`header_for_property`]). `Authorization` is
    /// not sent after a redirect to another origin.
    pub headers: Vec<(String, String)>,
    /// Name resolution plus TCP connect, per attempt.
    pub connect_timeout: Duration,
    /// The longest a connection may go without moving a byte before it counts as stalled.
    pub read_timeout: Duration,
    /// Consecutive attempts without progress allowed before failing with `DownloadFailed`.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub backoff_initial: Duration,
    /// The longest wait between retries.
    pub backoff_max: Duration,
    /// Extra PEM CA certificate(s) trusted besides the system store.
    pub pinned_ca: Option<PathBuf>,
    /// `NETWORK_ID`: the Android network handle to download over; `None`, the default one.
    pub network: Option<u64>,
    /// Suspends and cancels the transfer.
    pub control: TransferControl,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            max_retries: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            pinned_ca: None,
            network: None,
            control: TransferControl::new(),
        }
    }
}

/// The HTTP header a `payload_properties.txt` key stands for, if it is one.
pub fn header_for_property(key: &str) -> Option<&'static str> {
    match key {
        "USER_AGENT" => Some("User-Agent"),
        "AUTHORIZATION" => Some("Authorization"),
        _ => None,
    }
}

/// Opens the payload at `location` (`http://`, `https://`, `file://`, a plain path, or `fd://N`
/// for an inherited descriptor), which lies at `base_offset` in that file (an OTA zip holds it
/// stored), so that reading yields the payload's bytes from payload position `start` on.
///
/// A known `payload_size` (`FILE_SIZE`) bounds the stream and is checked against the file;
/// unknown, it is learned from the server or file. For HTTP the first request is made here, so
/// protocol, size and certificate errors show at once, with the same retries as reads.
///
/// A path (`file://` or plain) must name a regular file or a block device; a descriptor may
/// also be a pipe or socket. Reads and skips of those wait in slices and honour cancel.
pub fn open(
    location: &str,
    base_offset: u64,
    payload_size: Option<u64>,
    start: u64,
    opts: &SourceOptions,
) -> Result<PayloadStream> {
    check_span(base_offset, payload_size, start)?;
    let local = |file, name, origin| {
        FileSource::open(
            file,
            name,
            origin,
            (base_offset, payload_size, start),
            opts.control.clone(),
        )
        .map(Source::File)
    };
    let source = match Location::parse(location)? {
        Location::Http(url) => {
            network::bind_process(opts.network)?;
            Source::Http(Box::new(HttpSource::open(
                url,
                base_offset,
                payload_size,
                start,
                opts,
            )?))
        }
        Location::File(path) => {
            let name = path.display().to_string();
            // Without O_NONBLOCK, opening a FIFO waits for a writer, and nothing can cancel
            // that; regular files and block devices ignore the flag.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(&path)
                .map_err(|e| crate::err!(DownloadFailed, "opening {name}: {e}"))?;
            local(file, name, Origin::Path)?
        }
        Location::Fd(fd) => local(
            FileSource::inherited(fd)?,
            format!("descriptor {fd}"),
            Origin::Descriptor,
        )?,
    };
    Ok(PayloadStream {
        source,
        failed: None,
    })
}

/// Reads the whole (small) file at `location`, refusing (14) one longer than `max` bytes
/// before reading it: a feed, its signature, a key file.
pub fn fetch_bounded(location: &str, max: u64, opts: &SourceOptions) -> Result<Vec<u8>> {
    let mut stream = open(location, 0, None, 0, opts)?;
    if let Some(total) = stream.total_size().filter(|total| *total > max) {
        crate::bail!(
            SizeMismatch,
            "{location} is {total} bytes, more than the {max} allowed"
        );
    }
    let mut out = Vec::new();
    let mut limited = (&mut stream).take(max.saturating_add(1));
    limited
        .read_to_end(&mut out)
        .map_err(|e| match error_of(&e) {
            Some(error) => Error::new(error.code, error.message.clone()),
            None => crate::err!(DownloadFailed, "reading {location}: {e}"),
        })?;
    if out.len() as u64 > max {
        crate::bail!(
            SizeMismatch,
            "{location} is longer than the {max} bytes allowed"
        );
    }
    Ok(out)
}

/// `reference` (absolute, or relative as in an HTML link) resolved against the `http(s)://`
/// URL `base`.
pub fn resolve_url(base: &str, reference: &str) -> Result<String> {
    let base = HttpUrl::parse(base).map_err(|e| crate::err!(DownloadFailed, "{e}"))?;
    base.join(reference)
        .map(|url| url.to_string())
        .map_err(|e| crate::err!(DownloadFailed, "{e}"))
}

pub use http::post::Answer as PostAnswer;

/// POSTs `body` to the `http(s)://` URL `url` once (no retries, no redirects) and returns the
/// answer, at most `max_answer` bytes of it.
pub fn post(
    url: &str,
    content_type: &str,
    body: &[u8],
    max_answer: usize,
    opts: &SourceOptions,
) -> Result<PostAnswer> {
    let parsed = HttpUrl::parse(url).map_err(|e| crate::err!(DownloadFailed, "{e}"))?;
    http::post::post(&parsed, content_type, body, max_answer, opts)
}

/// The sources rely on `base + start` and `base + size` fitting a u64, and `start <= size`.
fn check_span(base_offset: u64, payload_size: Option<u64>, start: u64) -> Result<()> {
    if base_offset.checked_add(start).is_none() {
        crate::bail!(
            SizeMismatch,
            "start {start} at offset {base_offset} lies past any file"
        );
    }
    if let Some(size) = payload_size {
        if base_offset.checked_add(size).is_none() || start > size {
            crate::bail!(
                SizeMismatch,
                "start {start} and offset {base_offset} do not fit a payload of {size} bytes"
            );
        }
    }
    Ok(())
}

/// The structured error inside an `io::Error` from [`PayloadStream`]'s `Read`.
pub fn error_of(error: &io::Error) -> Option<&Error> {
    error.get_ref()?.downcast_ref::<Error>()
}

/// The payload's bytes in order, from the `start` given to [`open`].
pub struct PayloadStream {
    source: Source,
    failed: Option<(ErrorCode, String)>,
}

enum Source {
    Http(Box<HttpSource>),
    File(FileSource),
}

impl PayloadStream {
    /// The payload size, once known (given, or from the server or file).
    pub fn total_size(&self) -> Option<u64> {
        match &self.source {
            Source::Http(source) => source.total_size(),
            Source::File(source) => source.total_size(),
        }
    }

    /// Response body bytes received so far, as they came off the connection: including bytes
    /// fetched again after a broken connection, bytes dropped to reach the start, redirect
    /// pages and chunk framing. For files, the bytes read.
    pub fn bytes_fetched(&self) -> u64 {
        match &self.source {
            Source::Http(source) => source.bytes_fetched(),
            Source::File(source) => source.bytes_fetched(),
        }
    }
}

impl Read for PayloadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((code, message)) = &self.failed {
            return Err(io::Error::other(Error::new(*code, message.clone())));
        }
        let result = match &mut self.source {
            Source::Http(source) => source.read(buf),
            Source::File(source) => source.read(buf),
        };
        result.map_err(|error| {
            self.failed = Some((error.code, error.message.clone()));
            io::Error::other(error)
        })
    }
}

enum Location {
    Http(HttpUrl),
    File(PathBuf),
    Fd(i32),
}

impl Location {
    fn parse(text: &str) -> Result<Location> {
        let scheme_is = |scheme: &str| http::strip_prefix_ci(text, scheme);
        if scheme_is("http://").is_some() || scheme_is("https://").is_some() {
            let url = HttpUrl::parse(text).map_err(|e| crate::err!(DownloadFailed, "{e}"))?;
            return Ok(Location::Http(url));
        }
        if let Some(rest) = scheme_is("file://") {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                crate::bail!(DownloadFailed, "file URL {text:?} has no absolute path");
            }
            return Ok(Location::File(PathBuf::from(path)));
        }
        if let Some(number) = scheme_is("fd://") {
            let fd = number
                .parse::<i32>()
                .ok()
                .filter(|fd| *fd >= 0 && number.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| crate::err!(DownloadFailed, "bad descriptor in {text:?}"))?;
            return Ok(Location::Fd(fd));
        }
        if text.contains("://") {
            crate::bail!(DownloadFailed, "unsupported payload location {text:?}");
        }
        if text.is_empty() {
            crate::bail!(DownloadFailed, "empty payload location");
        }
        Ok(Location::File(PathBuf::from(text)))
    }
}

#[cfg(test)]
mod tests;
