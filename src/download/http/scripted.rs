//! The HTTP source over a script instead of the network: every connection it dials reads the
//! next part of one byte string (parts are separated by [`CUT`]; the end of a part is the server
//! closing the connection), and what it sends is recorded. The read loop, response heads,
//! the answer policy (ranges, sizes, identity, redirects), body framing and retries run exactly
//! as they do over sockets. This is what the `http_response` fuzz target and its seed replay
//! (`tests/fuzz_seeds_http.rs`) drive; it is not part of the API.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::conn::Transport;
use super::{Dial, Fault, HttpSource, HttpUrl};
use crate::download::{check_span, SourceOptions};
use crate::error::Result;

/// Separates the script's connections.
pub const CUT: &[u8] = b"\n\0\n";

/// What one scripted download did.
#[derive(Debug)]
pub struct Run {
    /// Each request as sent, one per connection.
    pub requests: Vec<Vec<u8>>,
    /// The payload bytes read, in order.
    pub payload: Vec<u8>,
    /// `Ok` once the payload ended, or the download's error.
    pub result: Result<()>,
    /// The payload size the source ended up knowing.
    pub total_size: Option<u64>,
}

/// Downloads the payload at `url` (`base`, `size` and `start` as for `download::open`) from
/// responses scripted in `script`, delivered at most `step` bytes per socket read. Retries are
/// immediate and at most three in a row; the script running out is a refused connection.
pub fn run(url: &str, base: u64, size: Option<u64>, start: u64, script: &[u8], step: usize) -> Run {
    let shared = Rc::new(RefCell::new(Shared {
        script: script.to_vec(),
        next: 0,
        requests: Vec::new(),
    }));
    let dialer = Script {
        shared: Rc::clone(&shared),
        step: step.max(1),
    };
    let mut run = Run {
        requests: Vec::new(),
        payload: Vec::new(),
        result: Ok(()),
        total_size: None,
    };
    run.result = download(&mut run, url, (base, size, start), dialer);
    run.requests = std::mem::take(&mut shared.borrow_mut().requests);
    run
}

fn download(run: &mut Run, url: &str, span: (u64, Option<u64>, u64), dialer: Script) -> Result<()> {
    let (base, size, start) = span;
    check_span(base, size, start)?;
    let url = HttpUrl::parse(url).map_err(|e| crate::err!(DownloadFailed, "{e}"))?;
    let opts = SourceOptions {
        max_retries: 3,
        backoff_initial: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..SourceOptions::default()
    };
    let mut source = HttpSource::with_dialer(url, base, size, start, &opts, dialer)?;
    let mut buf = [0u8; 4096];
    loop {
        run.total_size = source.total_size();
        let n = source.read(&mut buf)?;
        if n == 0 {
            run.total_size = source.total_size();
            return Ok(());
        }
        run.payload.extend_from_slice(&buf[..n]);
    }
}

struct Shared {
    script: Vec<u8>,
    /// Where the next connection's part starts.
    next: usize,
    requests: Vec<Vec<u8>>,
}

/// Dials connections that read on in the script.
struct Script {
    shared: Rc<RefCell<Shared>>,
    step: usize,
}

impl Dial for Script {
    type Wire = ScriptWire;

    fn dial(&mut self, _: &HttpUrl, _: &SourceOptions) -> std::result::Result<ScriptWire, Fault> {
        let mut shared = self.shared.borrow_mut();
        let start = shared.next;
        let Some(rest) = shared.script.get(start..).filter(|rest| !rest.is_empty()) else {
            return Err(Fault::retry("the script has ended: connection refused"));
        };
        let (end, next) = match rest.windows(CUT.len()).position(|w| w == CUT) {
            Some(cut) => (start + cut, start + cut + CUT.len()),
            None => (shared.script.len(), shared.script.len()),
        };
        shared.next = next;
        Ok(ScriptWire {
            shared: Rc::clone(&self.shared),
            at: start,
            end,
            step: self.step,
        })
    }
}

/// One connection: the part `at..end` of the script.
struct ScriptWire {
    shared: Rc<RefCell<Shared>>,
    at: usize,
    end: usize,
    step: usize,
}

impl Transport for ScriptWire {
    fn read(&mut self, buf: &mut [u8]) -> std::result::Result<usize, Fault> {
        let shared = self.shared.borrow();
        let n = self.step.min(buf.len()).min(self.end - self.at);
        buf[..n].copy_from_slice(&shared.script[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    fn write_all(&mut self, data: &[u8]) -> std::result::Result<(), Fault> {
        self.shared.borrow_mut().requests.push(data.to_vec());
        Ok(())
    }
}
