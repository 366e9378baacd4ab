//! The connection under one request: TCP, optionally TLS, with the download's timing rules.
//!
//! Sockets use a short read timeout (a "slice") so that a blocked read regularly checks the
//! transfer control and the stall clock; the stall timeout counts from the last byte that moved,
//! not from the start of the request, so a 2 GiB body may take hours as long as it keeps moving.
//! Name resolution and connecting run on a helper thread because neither can be interrupted:
//! the reader waits for it in slices and walks away on cancel or timeout.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::conn::Transport;
use super::session::{Backend, TlsBackend, TlsSession};
use super::Fault;
use crate::download::control::{Interrupt, TransferControl};

/// The longest a blocked read goes without looking at the transfer control.
const SLICE: Duration = Duration::from_millis(100);

pub(crate) struct Wire {
    socket: TcpStream,
    tls: Option<Box<dyn TlsSession>>,
    pacer: Pacer,
}

pub(crate) struct Timing {
    pub connect: Duration,
    pub stall: Duration,
}

impl Wire {
    /// Connects to `host:port`, with a TLS handshake when `tls` is given.
    pub fn connect(
        host: &str,
        port: u16,
        tls: Option<<Backend as TlsBackend>::Config>,
        timing: &Timing,
        control: &TransferControl,
    ) -> Result<Wire, Fault> {
        let socket = connect_tcp(host, port, timing.connect, control)?;
        let slice = SLICE.min(timing.stall).max(Duration::from_millis(1));
        let configure = socket
            .set_read_timeout(Some(slice))
            .and_then(|()| socket.set_write_timeout(Some(slice)))
            .and_then(|()| socket.set_nodelay(true));
        configure.map_err(|e| Fault::retry(format!("configuring the socket to {host}: {e}")))?;
        let ticket = control.attach(&socket).map_err(Fault::from)?;
        let pacer = Pacer {
            control: control.clone(),
            ticket,
            stall: timing.stall,
            last_progress: Instant::now(),
        };
        let mut wire = Wire {
            socket,
            tls: None,
            pacer,
        };
        if let Some(config) = tls {
            wire.tls = Some(Backend::start(&config, host)?);
            wire.handshake(host)?;
        }
        Ok(wire)
    }

    fn handshake(&mut self, host: &str) -> Result<(), Fault> {
        loop {
            self.flush_tls()?;
            let handshaking = self.tls.as_ref().is_some_and(|t| t.is_handshaking());
            if !handshaking {
                return Ok(());
            }
            if self.receive_tls()? == 0 {
                return Err(Fault::retry(format!(
                    "{host} closed the connection during the TLS handshake"
                )));
            }
        }
    }

    /// Moves TLS bytes from the socket into rustls; `Ok(0)` at end of stream.
    fn receive_tls(&mut self) -> Result<usize, Fault> {
        let Wire {
            socket,
            tls: Some(tls),
            pacer,
            ..
        } = self
        else {
            return Ok(0);
        };
        let n = pacer.run(|| tls.read_tls(socket))?;
        // Even when a fatal error is reported, the session may want to send an alert; best
        // effort.
        if let Err(fault) = tls.process_new_packets() {
            let _ = tls.write_tls(socket);
            return Err(fault);
        }
        Ok(n)
    }

    fn flush_tls(&mut self) -> Result<(), Fault> {
        let Wire {
            socket,
            tls: Some(tls),
            pacer,
            ..
        } = self
        else {
            return Ok(());
        };
        while tls.wants_write() {
            pacer.run(|| tls.write_tls(socket))?;
        }
        Ok(())
    }
}

impl Transport for Wire {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let n = match &mut self.tls {
            None => {
                let Wire { socket, pacer, .. } = self;
                pacer.run(|| socket.read(buf))?
            }
            Some(_) => {
                let mut closed = false;
                loop {
                    let plaintext = self.tls.as_mut().map(|tls| tls.read_plaintext(buf));
                    match plaintext {
                        Some(Ok(n)) => break n,
                        // A close without close_notify ends the stream too: the body framing
                        // tells whether the response was complete.
                        Some(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break 0,
                        Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock && !closed => {}
                        Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                        Some(Err(e)) => return Err(Fault::retry(format!("TLS receive: {e}"))),
                        None => break 0,
                    }
                    self.flush_tls()?;
                    closed = self.receive_tls()? == 0;
                }
            }
        };
        if n == 0 {
            // A shutdown by suspend() or cancel() looks like the peer closing.
            self.pacer.interrupted()?;
        }
        Ok(n)
    }

    fn write_all(&mut self, mut data: &[u8]) -> Result<(), Fault> {
        if let Some(tls) = &mut self.tls {
            tls.write_plaintext(data)
                .map_err(|e| Fault::retry(format!("TLS send: {e}")))?;
            return self.flush_tls();
        }
        let Wire { socket, pacer, .. } = self;
        while !data.is_empty() {
            let n = pacer.run(|| socket.write(data))?;
            if n == 0 {
                return Err(Fault::retry(
                    "the connection closed while sending the request",
                ));
            }
            data = &data[n..];
        }
        Ok(())
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.pacer.control.detach(self.pacer.ticket);
    }
}

/// Runs socket operations in slices, checking the control and the stall clock between them.
struct Pacer {
    control: TransferControl,
    /// This connection's registration with the control.
    ticket: u64,
    stall: Duration,
    last_progress: Instant,
}

impl Pacer {
    fn run(&mut self, mut op: impl FnMut() -> io::Result<usize>) -> Result<usize, Fault> {
        loop {
            self.interrupted()?;
            match op() {
                Ok(n) => {
                    if n > 0 {
                        self.last_progress = Instant::now();
                    }
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let idle = self.last_progress.elapsed();
                    if idle >= self.stall {
                        self.interrupted()?;
                        return Err(Fault::retry(format!("no data for {idle:.1?} (stalled)")));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.interrupted()?;
                    return Err(Fault::retry(format!("connection error: {e}")));
                }
            }
        }
    }

    fn interrupted(&self) -> Result<(), Fault> {
        self.control.check().map_err(Fault::from)?;
        if self.control.was_shut(self.ticket) {
            // Suspended and resumed while nobody was reading: reconnect, no failure to count.
            return Err(Fault::Suspended);
        }
        Ok(())
    }
}

fn connect_tcp(
    host: &str,
    port: u16,
    timeout: Duration,
    control: &TransferControl,
) -> Result<TcpStream, Fault> {
    let (sender, receiver) = mpsc::sync_channel(1);
    let name = host.to_owned();
    thread::Builder::new()
        .name("abupdate-connect".into())
        .spawn(move || {
            // The receiver may have given up; the stream then closes with this thread.
            let _ = sender.send(dial(&name, port, timeout));
        })
        .map_err(|e| Fault::retry(format!("starting the connect thread: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        control.check().map_err(Fault::from)?;
        let now = Instant::now();
        if now >= deadline {
            return Err(Fault::retry(format!(
                "connecting to {host}:{port} timed out after {timeout:?}"
            )));
        }
        match receiver.recv_timeout(SLICE.min(deadline - now)) {
            Ok(result) => return result.map_err(Fault::retry),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Fault::retry(format!(
                    "connecting to {host}:{port}: the connect thread died"
                )))
            }
        }
    }
}

fn dial(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addresses = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?;
    let mut last = format!("{host} resolved to no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connecting to {address}: {e}"),
        }
    }
    Err(last)
}

impl From<Interrupt> for Fault {
    fn from(interrupt: Interrupt) -> Fault {
        match interrupt {
            Interrupt::Suspended => Fault::Suspended,
            Interrupt::Cancelled => Fault::Fatal(crate::download::control::cancelled()),
        }
    }
}
