//! A fault-injecting TCP proxy between the downloader and nginx: each accepted connection
//! follows the next queued [`Plan`] (or the default one): cut the response after N bytes with
//! a FIN or a RST, stall it, strip request headers, or answer with canned bytes instead of
//! nginx. It records every request head and whether the client went away during a stall.

use std::collections::VecDeque;
use std::io::{Cursor, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

/// How the proxy treats the bytes it relays.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Parse the request head (record, strip headers, canned answers).
    Http,
    /// Relay both directions untouched (TLS); only cuts apply.
    Raw,
}

/// What one connection does.
#[derive(Default)]
pub struct Plan {
    /// Request headers removed before forwarding (lower case names).
    pub strip: Vec<&'static str>,
    /// Bytes sent instead of nginx's answer.
    pub respond: Option<Vec<u8>>,
    /// Close the connection after this many response bytes (head included).
    pub cut_after: Option<u64>,
    /// Close with a RST instead of a FIN.
    pub reset: bool,
    /// Run right before the cut, e.g. to replace the served file.
    pub before_cut: Option<Box<dyn FnOnce() + Send>>,
    /// After this many response bytes, send nothing for this long, then close.
    pub stall: Option<(u64, Duration)>,
}

impl Plan {
    pub fn cut(after: u64, reset: bool) -> Plan {
        Plan {
            cut_after: Some(after),
            reset,
            ..Plan::default()
        }
    }

    pub fn stall(after: u64, hold: Duration) -> Plan {
        Plan {
            stall: Some((after, hold)),
            ..Plan::default()
        }
    }

    pub fn respond(bytes: impl Into<Vec<u8>>) -> Plan {
        Plan {
            respond: Some(bytes.into()),
            ..Plan::default()
        }
    }

    pub fn strip(headers: &[&'static str]) -> Plan {
        Plan {
            strip: headers.to_vec(),
            ..Plan::default()
        }
    }
}

/// One connection as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request head as received from the client (before stripping).
    pub request: String,
    /// Response bytes passed to the client.
    pub sent: u64,
    /// When the proxy noticed the client had closed, if it did while stalled.
    pub client_gone: Option<Instant>,
}

impl Seen {
    /// The value of a request header, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.request.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The first byte asked for by `Range: bytes=N-...`.
    pub fn range_start(&self) -> Option<u64> {
        let range = self.header("range")?;
        range
            .strip_prefix("bytes=")?
            .split('-')
            .next()?
            .parse()
            .ok()
    }
}

type DefaultPlan = Box<dyn Fn() -> Plan + Send + Sync>;

struct Shared {
    upstream: u16,
    mode: Mode,
    plans: Mutex<VecDeque<Plan>>,
    default: Mutex<DefaultPlan>,
    seen: Mutex<Vec<Seen>>,
}

impl Proxy {
    pub fn start(upstream: u16, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            mode,
            plans: Mutex::new(VecDeque::new()),
            default: Mutex::new(Box::new(Plan::default)),
            seen: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        // The accept thread lives as long as the test process; it only ever blocks in accept.
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let plan = accepting.plans.lock().unwrap().pop_front();
                let plan = plan.unwrap_or_else(|| (accepting.default.lock().unwrap())());
                let index = {
                    let mut seen = accepting.seen.lock().unwrap();
                    seen.push(Seen {
                        request: String::new(),
                        sent: 0,
                        client_gone: None,
                    });
                    seen.len() - 1
                };
                let shared = Arc::clone(&accepting);
                thread::spawn(move || serve(client, plan, &shared, index));
            }
        });
        Proxy { port, shared }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    pub fn tls_url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }

    pub fn push(&self, plan: Plan) {
        self.shared.plans.lock().unwrap().push_back(plan);
    }

    pub fn set_default(&self, make: impl Fn() -> Plan + Send + Sync + 'static) {
        *self.shared.default.lock().unwrap() = Box::new(make);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

fn serve(mut client: TcpStream, mut plan: Plan, shared: &Shared, index: usize) {
    let mut source: Box<dyn Read> = if shared.mode == Mode::Raw {
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
            return;
        };
        let (Ok(mut from_client), Ok(mut to_upstream)) = (client.try_clone(), upstream.try_clone())
        else {
            return;
        };
        thread::spawn(move || {
            let _ = std::io::copy(&mut from_client, &mut to_upstream);
            let _ = to_upstream.shutdown(Shutdown::Write);
        });
        Box::new(upstream)
    } else {
        let Some(request) = read_head(&mut client) else {
            return;
        };
        shared.seen.lock().unwrap()[index].request = request.clone();
        let forwarded: String = request
            .split_inclusive("\r\n")
            .filter(|line| {
                let name = line
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                !plan.strip.contains(&name.as_str())
            })
            .collect();
        match plan.respond.take() {
            Some(bytes) => Box::new(Cursor::new(bytes)),
            None => {
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
                    return;
                };
                if upstream.write_all(forwarded.as_bytes()).is_err() {
                    return;
                }
                Box::new(upstream)
            }
        }
    };
    let mut sent = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if plan.cut_after == Some(sent) {
            if let Some(hook) = plan.before_cut.take() {
                hook();
            }
            if plan.reset {
                // Linger 0: the last close sends a RST instead of a FIN. Shutting the read side
                // ends the relay thread, which holds the other handle.
                let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                let _ = client.shutdown(Shutdown::Read);
            } else {
                let _ = client.shutdown(Shutdown::Both);
            }
            return;
        }
        if let Some((after, hold)) = plan.stall {
            if after == sent {
                hold_silent(&mut client, hold, shared, index);
                return;
            }
        }
        let mut limit = buf.len() as u64;
        for event in [plan.cut_after, plan.stall.map(|(after, _)| after)]
            .into_iter()
            .flatten()
        {
            if event > sent {
                limit = limit.min(event - sent);
            }
        }
        let n = match source.read(&mut buf[..limit as usize]) {
            Ok(0) | Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            return;
        }
        sent += n as u64;
        shared.seen.lock().unwrap()[index].sent = sent;
    }
}

/// Sends nothing for `hold`, watching for the client to close its end.
fn hold_silent(client: &mut TcpStream, hold: Duration, shared: &Shared, index: usize) {
    let until = Instant::now() + hold;
    let _ = client.set_read_timeout(Some(Duration::from_millis(20)));
    let mut byte = [0u8; 1];
    while Instant::now() < until {
        let gone = match client.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        if gone {
            shared.seen.lock().unwrap()[index].client_gone = Some(Instant::now());
            return;
        }
    }
}

fn read_head(client: &mut TcpStream) -> Option<String> {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let _ = client.set_read_timeout(None);
    String::from_utf8(head).ok()
}
