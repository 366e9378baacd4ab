//! One HTTP/1.1 exchange on a connection: send the request, read the response head, then hand
//! out the body through its framing (length, chunked, or until close) with one fixed buffer.
//!
//! A body that ends early is a [`Fault::Retry`]: the caller asks again from where it stopped.

use super::head::{malformed, Head};
use super::Fault;

/// A byte stream with the download's timing rules applied (see `wire.rs`).
pub(crate) trait Transport {
    /// Reads some bytes; `Ok(0)` means the peer closed the connection.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault>;
    fn write_all(&mut self, data: &[u8]) -> Result<(), Fault>;
}

/// The fixed receive buffer, which also bounds the response head and chunk lines.
pub(crate) const BUFFER_SIZE: usize = 64 * 1024;

pub(crate) struct Conn<T> {
    wire: T,
    buf: Box<[u8]>,
    lo: usize,
    hi: usize,
    framing: Framing,
    in_body: bool,
    received: u64,
}

/// How the end of the body is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

impl<T: Transport> Conn<T> {
    pub fn new(wire: T) -> Self {
        Conn {
            wire,
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            lo: 0,
            hi: 0,
            framing: Framing::UntilClose,
            in_body: false,
            received: 0,
        }
    }

    pub fn send(&mut self, request: &[u8]) -> Result<(), Fault> {
        self.wire.write_all(request)
    }

    /// Reads the final response head, skipping interim 1xx ones.
    pub fn read_head(&mut self) -> Result<Head, Fault> {
        loop {
            if let Some((length, head)) = self.parse_head()? {
                self.lo += length;
                if (100..200).contains(&head.status) {
                    continue;
                }
                self.in_body = true;
                self.received += (self.hi - self.lo) as u64;
                return Ok(head);
            }
            if self.lo == 0 && self.hi == self.buf.len() {
                return Err(malformed(format!(
                    "response head larger than {BUFFER_SIZE} bytes"
                )));
            }
            if self.fill()? == 0 {
                return Err(Fault::retry(
                    "the connection closed before the response head was complete",
                ));
            }
        }
    }

    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// Body bytes that arrived on this connection, counting those still buffered.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Reads body bytes; `Ok(0)` only once the body is complete.
    pub fn read_body(&mut self, out: &mut [u8]) -> Result<usize, Fault> {
        if out.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let n = self.take(out, left)?;
                if n == 0 {
                    return Err(Fault::retry(format!(
                        "the connection closed {left} bytes before the end of the response"
                    )));
                }
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::UntilClose => self.take(out, u64::MAX),
            Framing::Chunked(_) => self.read_chunked(out),
        }
    }

    /// Reads and drops `count` body bytes.
    pub fn skip_body(&mut self, mut count: u64) -> Result<(), Fault> {
        let mut scratch = [0u8; 4096];
        while count > 0 {
            let want = scratch
                .len()
                .min(usize::try_from(count).unwrap_or(usize::MAX));
            let n = self.read_body(&mut scratch[..want])?;
            if n == 0 {
                return Err(Fault::retry("the response ended before the skipped bytes"));
            }
            count -= n as u64;
        }
        Ok(())
    }

    fn parse_head(&self) -> Result<Option<(usize, Head)>, Fault> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.buf[self.lo..self.hi]) {
            Ok(httparse::Status::Complete(length)) => {
                Ok(Some((length, Head::from_parsed(&response)?)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(malformed(format!("bad response head: {e}"))),
        }
    }

    fn read_chunked(&mut self, out: &mut [u8]) -> Result<usize, Fault> {
        loop {
            let Framing::Chunked(state) = self.framing else {
                return Ok(0);
            };
            let next = match state {
                Chunk::Size => {
                    let line = self.line()?;
                    let digits = line.split(';').next().unwrap_or("").trim();
                    match u64::from_str_radix(digits, 16) {
                        Ok(0) => Chunk::Trailer,
                        Ok(size) if !digits.starts_with('+') => Chunk::Data(size),
                        _ => {
                            let line = crate::error::shown(&line);
                            return Err(malformed(format!("bad chunk size line {line}")));
                        }
                    }
                }
                Chunk::Data(0) => Chunk::DataEnd,
                Chunk::Data(left) => {
                    let n = self.take(out, left)?;
                    if n == 0 {
                        return Err(Fault::retry("the connection closed inside a chunk"));
                    }
                    self.framing = Framing::Chunked(Chunk::Data(left - n as u64));
                    return Ok(n);
                }
                Chunk::DataEnd => {
                    if !self.line()?.is_empty() {
                        return Err(malformed("chunk data longer than its size".into()));
                    }
                    Chunk::Size
                }
                Chunk::Trailer => {
                    if self.line()?.is_empty() {
                        Chunk::Done
                    } else {
                        Chunk::Trailer
                    }
                }
                Chunk::Done => return Ok(0),
            };
            self.framing = Framing::Chunked(next);
        }
    }

    /// Copies up to `limit` buffered body bytes into `out`, receiving more when none are left.
    fn take(&mut self, out: &mut [u8], limit: u64) -> Result<usize, Fault> {
        if self.lo == self.hi && self.fill()? == 0 {
            return Ok(0);
        }
        let n = (self.hi - self.lo)
            .min(out.len())
            .min(usize::try_from(limit).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.buf[self.lo..self.lo + n]);
        self.lo += n;
        Ok(n)
    }

    /// The next line (chunk size or trailer), without its end.
    fn line(&mut self) -> Result<String, Fault> {
        loop {
            if let Some(end) = self.buf[self.lo..self.hi].iter().position(|b| *b == b'\n') {
                let raw = &self.buf[self.lo..self.lo + end];
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let line = String::from_utf8_lossy(raw).into_owned();
                self.lo += end + 1;
                return Ok(line);
            }
            if self.lo == 0 && self.hi == self.buf.len() {
                return Err(malformed("chunk line too long".into()));
            }
            if self.fill()? == 0 {
                return Err(Fault::retry(
                    "the connection closed inside the chunk framing",
                ));
            }
        }
    }

    /// Receives more bytes after the buffered ones, making room first.
    fn fill(&mut self) -> Result<usize, Fault> {
        if self.lo > 0 {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.hi -= self.lo;
            self.lo = 0;
        }
        if self.hi == self.buf.len() {
            // Callers make room first; an empty read would look like the peer closing.
            return Err(malformed("receive buffer full".into()));
        }
        let n = self.wire.read(&mut self.buf[self.hi..])?;
        self.hi += n;
        if self.in_body {
            self.received += n as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves a byte string a few bytes per read, then closes.
    struct Script {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Transport for Script {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }

        fn write_all(&mut self, _: &[u8]) -> Result<(), Fault> {
            Ok(())
        }
    }

    fn conn(text: &[u8], step: usize) -> Conn<Script> {
        Conn::new(Script {
            data: text.to_vec(),
            at: 0,
            step,
        })
    }

    fn drain(conn: &mut Conn<Script>) -> Result<Vec<u8>, Fault> {
        let mut body = Vec::new();
        let mut chunk = [0u8; 5];
        loop {
            match conn.read_body(&mut chunk)? {
                0 => return Ok(body),
                n => body.extend_from_slice(&chunk[..n]),
            }
        }
    }

    #[test]
    fn length_framed_body_and_interim_heads() {
        for step in [1, 3, 1000] {
            let mut c = conn(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", step);
            let head = c.read_head().unwrap();
            assert_eq!(head.status, 200);
            c.set_framing(Framing::Length(11));
            assert_eq!(drain(&mut c).unwrap(), b"hello world");
            assert_eq!(c.received(), 11);
        }
    }

    #[test]
    fn truncated_body_is_retried() {
        let mut c = conn(
            b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nonly ten b",
            4,
        );
        c.read_head().unwrap();
        c.set_framing(Framing::Length(20));
        match drain(&mut c) {
            Err(Fault::Retry { why, .. }) => {
                assert!(why.contains("10 bytes before the end"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.received(), 10);
        let mut c = conn(b"HTTP/1.1 200 OK\r\nContent-Le", 4);
        assert!(matches!(c.read_head(), Err(Fault::Retry { .. })));
    }

    #[test]
    fn chunked_body() {
        let text = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for step in [1, 2, 7, 4096] {
            let mut c = conn(text, step);
            assert!(c.read_head().unwrap().chunked);
            c.set_framing(Framing::Chunked(Chunk::Size));
            assert_eq!(drain(&mut c).unwrap(), b"Wikipedia in \r\n\r\nchunks.");
        }
    }

    #[test]
    fn chunked_faults() {
        let cut = b"HTTP/1.1 200 OK\r\n\r\n10\r\nabc";
        let mut c = conn(cut, 3);
        c.read_head().unwrap();
        c.set_framing(Framing::Chunked(Chunk::Size));
        assert!(matches!(drain(&mut c), Err(Fault::Retry { .. })));
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        ] {
            let mut c = conn(bad, 64);
            c.read_head().unwrap();
            c.set_framing(Framing::Chunked(Chunk::Size));
            assert!(matches!(drain(&mut c), Err(Fault::Fatal(_))), "{bad:?}");
        }
    }

    #[test]
    fn head_is_bounded() {
        let mut text = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        text.resize(BUFFER_SIZE + 100, b'a');
        let mut c = conn(&text, 10_000);
        match c.read_head() {
            Err(Fault::Fatal(e)) => assert!(e.message.contains("larger than"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn skip_body_drops_bytes() {
        let mut c = conn(b"HTTP/1.1 200 OK\r\n\r\n0123456789", 3);
        c.read_head().unwrap();
        c.skip_body(4).unwrap();
        assert_eq!(drain(&mut c).unwrap(), b"456789");
        assert_eq!(c.received(), 10);
    }
}
