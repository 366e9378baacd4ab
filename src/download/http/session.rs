//! One TLS client session, driven sans-I/O by the connection in `wire.rs`: TLS bytes move
//! between the socket and the session, plaintext between the session and the HTTP layer.
//! [`TlsBackend`] has two implementations, selected by `cfg(soong)`:
//! - [`Rustls`] (hosts): rustls with ring, configured in `tls.rs`;
//! - [`BoringSsl`](super::tls_boringssl::BoringSsl) (AOSP, where rustls is absent): the
//!   `openssl` crate over BoringSSL, with the platform's CA store.

use std::io::{self, Read, Write};

use super::Fault;

/// A TLS client session.
pub(crate) trait TlsSession: Send {
    /// Whether the handshake is still running.
    fn is_handshaking(&self) -> bool;
    /// Whether TLS bytes wait to be sent.
    fn wants_write(&self) -> bool;
    /// Moves TLS bytes from `socket` into the session; `Ok(0)` at end of stream.
    fn read_tls(&mut self, socket: &mut dyn Read) -> io::Result<usize>;
    /// Moves waiting TLS bytes from the session to `socket`.
    fn write_tls(&mut self, socket: &mut dyn Write) -> io::Result<usize>;
    /// Processes what [`TlsSession::read_tls`] brought (the handshake, records). A rejected
    /// certificate is fatal; other failures may be retried.
    fn process_new_packets(&mut self) -> Result<(), Fault>;
    /// Plaintext received so far: [`io::ErrorKind::WouldBlock`] when more TLS bytes are
    /// needed, `Ok(0)` after close_notify, [`io::ErrorKind::UnexpectedEof`] after a close
    /// without it.
    fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Queues plaintext to send (TLS bytes then wait for [`TlsSession::write_tls`]).
    fn write_plaintext(&mut self, data: &[u8]) -> io::Result<()>;
}

/// A TLS library: its client configuration (built once per download) and its sessions.
pub(crate) trait TlsBackend {
    /// The client configuration: trusted roots and protocol settings.
    type Config: Clone;
    /// The configuration with the system's CAs (and Android's store) plus `pinned_ca`.
    fn client_config(pinned_ca: Option<&std::path::Path>) -> crate::Result<Self::Config>;
    /// A session to `host`, its handshake not yet started.
    fn start(config: &Self::Config, host: &str) -> Result<Box<dyn TlsSession>, Fault>;
}

/// The TLS backend this build uses.
#[cfg(not(soong))]
pub(crate) type Backend = Rustls;
/// The TLS backend this build uses.
#[cfg(soong)]
pub(crate) type Backend = super::tls_boringssl::BoringSsl;

/// Android keeps its system CAs here, one PEM file per CA; generic Linux probing does not look
/// there.
pub(crate) const ANDROID_CA_DIR: &str = "/system/etc/security/cacerts";

pub(crate) fn fatal_tls(message: String) -> Fault {
    Fault::Fatal(crate::err!(DownloadFailed, "{message}"))
}

/// rustls with ring.
#[cfg(not(soong))]
pub(crate) struct Rustls;

#[cfg(not(soong))]
impl TlsBackend for Rustls {
    type Config = std::sync::Arc<rustls::ClientConfig>;

    fn client_config(pinned_ca: Option<&std::path::Path>) -> crate::Result<Self::Config> {
        super::tls::client_config(pinned_ca)
    }

    fn start(config: &Self::Config, host: &str) -> Result<Box<dyn TlsSession>, Fault> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| fatal_tls(format!("{host:?} is not a valid TLS server name: {e}")))?;
        let connection = rustls::ClientConnection::new(std::sync::Arc::clone(config), name)
            .map_err(|e| fatal_tls(format!("starting TLS with {host}: {e}")))?;
        Ok(Box::new(RustlsSession(connection)))
    }
}

/// A rustls client connection as a [`TlsSession`].
#[cfg(not(soong))]
struct RustlsSession(rustls::ClientConnection);

#[cfg(not(soong))]
impl TlsSession for RustlsSession {
    fn is_handshaking(&self) -> bool {
        self.0.is_handshaking()
    }

    fn wants_write(&self) -> bool {
        self.0.wants_write()
    }

    fn read_tls(&mut self, socket: &mut dyn Read) -> io::Result<usize> {
        self.0.read_tls(socket)
    }

    fn write_tls(&mut self, socket: &mut dyn Write) -> io::Result<usize> {
        self.0.write_tls(socket)
    }

    fn process_new_packets(&mut self) -> Result<(), Fault> {
        self.0
            .process_new_packets()
            .map(|_| ())
            .map_err(|error| match error {
                // Not something a retry fixes: the server presents a certificate we do not
                // trust.
                rustls::Error::InvalidCertificate(reason) => fatal_tls(format!(
                    "the server's TLS certificate was rejected ({reason:?}); if it is signed by a \
                     private CA, pass that CA as the pinned CA"
                )),
                other => Fault::retry(format!("TLS error: {other}")),
            })
    }

    fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.reader().read(buf)
    }

    fn write_plaintext(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.writer().write_all(data)
    }
}
