//! TLS through the `openssl` crate: BoringSSL in AOSP (which has no usable rustls), the
//! system OpenSSL in Cargo builds. The session runs over in-memory buffers ([`Pipe`]) so
//! `wire.rs` drives it sans-I/O, exactly like rustls. Roots: the system store, Android's
//! `/system/etc/security/cacerts` (one PEM per CA), and the pinned CA.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use openssl::ssl::{ErrorCode, SslConnector, SslMethod, SslStream, SslVersion};
use openssl::x509::X509;

use super::session::{fatal_tls, TlsBackend, TlsSession, ANDROID_CA_DIR};
use super::Fault;
use crate::crypto::pem;

/// BoringSSL (or OpenSSL) through the `openssl` crate.
pub(crate) struct BoringSsl;

impl TlsBackend for BoringSsl {
    type Config = Arc<SslConnector>;

    fn client_config(pinned_ca: Option<&Path>) -> crate::Result<Self::Config> {
        let setup = |e: openssl::error::ErrorStack| crate::err!(DownloadFailed, "TLS setup: {e}");
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(setup)?;
        // Unreadable stores or odd certificates are skipped: other CAs may still do, and a
        // missing one shows as a clear certificate error at the handshake.
        let _ = builder.set_default_verify_paths();
        if let Ok(dir) = std::fs::read_dir(ANDROID_CA_DIR) {
            for entry in dir.flatten() {
                let Ok(text) = std::fs::read(entry.path()) else {
                    continue;
                };
                for cert in X509::stack_from_pem(&text).unwrap_or_default() {
                    let _ = builder.cert_store_mut().add_cert(cert);
                }
            }
        }
        if let Some(path) = pinned_ca {
            let text = std::fs::read(path).map_err(|e| {
                crate::err!(DownloadFailed, "reading pinned CA {}: {e}", path.display())
            })?;
            let blocks = pem::parse_many(&text).map_err(|e| {
                crate::err!(DownloadFailed, "pinned CA {}: bad PEM: {e}", path.display())
            })?;
            let mut any = false;
            for block in blocks.into_iter().filter(|b| b.tag == "CERTIFICATE") {
                let cert = X509::from_der(&block.contents).map_err(|e| {
                    crate::err!(
                        DownloadFailed,
                        "pinned CA {}: unusable certificate: {e}",
                        path.display()
                    )
                })?;
                builder.cert_store_mut().add_cert(cert).map_err(|e| {
                    crate::err!(
                        DownloadFailed,
                        "pinned CA {}: unusable certificate: {e}",
                        path.display()
                    )
                })?;
                any = true;
            }
            if !any {
                crate::bail!(
                    DownloadFailed,
                    "pinned CA {} holds no PEM certificate",
                    path.display()
                );
            }
        }
        Ok(Arc::new(builder.build()))
    }

    fn start(config: &Self::Config, host: &str) -> Result<Box<dyn TlsSession>, Fault> {
        // Sets SNI and host name verification.
        let ssl = config
            .configure()
            .and_then(|c| c.into_ssl(host))
            .map_err(|e| fatal_tls(format!("starting TLS with {host}: {e}")))?;
        let stream = SslStream::new(ssl, Pipe::default())
            .map_err(|e| fatal_tls(format!("starting TLS with {host}: {e}")))?;
        let mut session = Session {
            stream,
            handshaking: true,
        };
        // Writes the ClientHello into the pipe, for the first flush to send.
        session.process_new_packets()?;
        Ok(Box::new(session))
    }
}

/// The session's transport: TLS bytes received (`incoming`) and to send (`outgoing`).
/// Reading an empty `incoming` is `WouldBlock` until the socket closed (`eof`).
#[derive(Default)]
struct Pipe {
    incoming: VecDeque<u8>,
    outgoing: Vec<u8>,
    eof: bool,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        self.incoming.read(buf)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Session {
    stream: SslStream<Pipe>,
    handshaking: bool,
}

impl TlsSession for Session {
    fn is_handshaking(&self) -> bool {
        self.handshaking
    }

    fn wants_write(&self) -> bool {
        !self.stream.get_ref().outgoing.is_empty()
    }

    fn read_tls(&mut self, socket: &mut dyn Read) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = socket.read(&mut chunk)?;
        let pipe = self.stream.get_mut();
        pipe.incoming.extend(&chunk[..n]);
        pipe.eof |= n == 0;
        Ok(n)
    }

    fn write_tls(&mut self, socket: &mut dyn Write) -> io::Result<usize> {
        let pipe = self.stream.get_mut();
        let n = socket.write(&pipe.outgoing)?;
        pipe.outgoing.drain(..n);
        Ok(n)
    }

    fn process_new_packets(&mut self) -> Result<(), Fault> {
        if !self.handshaking {
            return Ok(());
        }
        match self.stream.connect() {
            Ok(()) => {
                self.handshaking = false;
                Ok(())
            }
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
            Err(e) => {
                let verify = self.stream.ssl().verify_result();
                if verify != openssl::x509::X509VerifyResult::OK {
                    return Err(fatal_tls(format!(
                        "the server's TLS certificate was rejected ({verify}); if it is signed \
                         by a private CA, pass that CA as the pinned CA"
                    )));
                }
                Err(Fault::retry(format!("TLS error: {e}")))
            }
        }
    }

    fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.ssl_read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => Ok(0),
            Err(e) if e.code() == ErrorCode::WANT_READ => {
                if self.stream.get_ref().eof {
                    Err(io::ErrorKind::UnexpectedEof.into())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            Err(e) if e.code() == ErrorCode::SYSCALL && self.stream.get_ref().eof => {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    fn write_plaintext(&mut self, data: &[u8]) -> io::Result<()> {
        // The pipe takes everything, so a write only stops on a TLS error.
        self.stream
            .write_all(data)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::ssl::SslAcceptor;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    use super::*;

    /// A self-signed certificate for `localhost` and its key.
    fn server_identity() -> (X509, PKey<openssl::pkey::Private>) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "localhost").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    /// A TLS server (OpenSSL's own, blocking) that answers one line with "pong".
    fn serve(cert: &X509, key: &PKey<openssl::pkey::Private>) -> u16 {
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor.set_private_key(key).unwrap();
        acceptor.set_certificate(cert).unwrap();
        let acceptor = acceptor.build();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(mut tls) = acceptor.accept(stream) else {
                    continue;
                };
                let mut line = [0u8; 5];
                if tls.read_exact(&mut line).is_ok() && &line == b"ping\n" {
                    let _ = tls.write_all(b"pong\n");
                    let _ = tls.shutdown();
                }
            }
        });
        port
    }

    /// Drives a session over a blocking socket the way `wire.rs` does.
    fn exchange(config: &Arc<SslConnector>, port: u16) -> Result<Vec<u8>, Fault> {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut session = BoringSsl::start(config, "localhost")?;
        let flush = |s: &mut Box<dyn TlsSession>, socket: &mut TcpStream| {
            while s.wants_write() {
                s.write_tls(socket).unwrap();
            }
        };
        while session.is_handshaking() {
            flush(&mut session, &mut socket);
            if session.read_tls(&mut socket).unwrap() == 0 {
                return Err(Fault::retry("closed during the handshake"));
            }
            session.process_new_packets()?;
        }
        session.write_plaintext(b"ping\n").unwrap();
        flush(&mut session, &mut socket);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match session.read_plaintext(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    flush(&mut session, &mut socket);
                    session.read_tls(&mut socket).unwrap();
                    session.process_new_packets()?;
                }
                Err(e) => return Err(Fault::retry(e.to_string())),
            }
        }
    }

    #[test]
    fn talks_to_a_server_it_trusts_and_refuses_one_it_does_not() {
        let (cert, key) = server_identity();
        let port = serve(&cert, &key);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.to_pem().unwrap()).unwrap();

        let pinned = BoringSsl::client_config(Some(&ca)).unwrap();
        assert_eq!(exchange(&pinned, port).ok().unwrap(), b"pong\n");

        let system_only = BoringSsl::client_config(None).unwrap();
        match exchange(&system_only, port) {
            Err(Fault::Fatal(e)) => assert!(e.message.contains("certificate was rejected"), "{e}"),
            _ => panic!("a self-signed server must be refused without its pinned CA"),
        }
    }

    #[test]
    fn pinned_ca_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let key_only = dir.path().join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = BoringSsl::client_config(Some(&key_only)).unwrap_err();
        assert!(e.message.contains("no PEM certificate"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = BoringSsl::client_config(Some(&garbage)).unwrap_err();
        assert!(e.message.contains("unusable certificate"), "{e}");
    }
}
