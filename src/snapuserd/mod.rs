//! Platform adapter: a client of snapuserd, Android's userspace snapshot daemon, over its
//! control socket (`/dev/socket/snapuserd`), as libsnapshot's `SnapuserdClient` talks to it.
//! On a device whose update uses userspace snapshots, first-stage init started snapuserd and
//! the running slot's partitions are its dm-user devices (base plus COW): only snapuserd may
//! merge them. [`protocol`] makes and reads the messages; this module only moves them.
//!
//! A daemon that hangs, disconnects or answers garbage gives an error, never a hang: every
//! exchange has a timeout, every answer is one read of at most [`protocol::PACKET_SIZE`]
//! bytes. After any error the connection may be out of step (a long answer's rest still
//! queued): drop the client and connect again.

pub mod protocol;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use thiserror::Error;

pub use protocol::{DaemonState, ProtocolError, Request, SnapshotMergeStatus};

/// Android's snapuserd socket (init's `socket snapuserd stream 0660 system system`, in the
/// reserved namespace `/dev/socket`).
pub const ANDROID_SOCKET: &str = "/dev/socket/snapuserd";

/// Where the daemon is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct Config {
    /// The control socket.
    pub socket: PathBuf,
    /// How long to keep trying to connect while the socket is missing or refuses (a daemon
    /// restarting); libsnapshot waits 10 s.
    pub connect_timeout: Duration,
    /// How long one answer may take.
    pub reply_timeout: Duration,
    /// How often a merge asks how far it got (libsnapshot: `kUpdateStateCheckInterval`, 2 s).
    pub poll_interval: Duration,
}

impl Config {
    /// The daemon at `socket`, with libsnapshot's connect timeout.
    pub fn at(socket: impl Into<PathBuf>) -> Config {
        Config {
            socket: socket.into(),
            connect_timeout: Duration::from_secs(10),
            reply_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }

    /// Android's daemon ([`ANDROID_SOCKET`]).
    pub fn android() -> Config {
        Config::at(ANDROID_SOCKET)
    }
}

/// What went wrong talking to snapuserd.
#[derive(Debug, Error)]
pub enum SnapuserdError {
    /// No daemon could be reached at the socket within the connect timeout.
    #[error("cannot connect to snapuserd at {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The last failure.
        source: io::Error,
    },
    /// The daemon that answered is a first-stage one being replaced.
    #[error("snapuserd at {0} is passive (terminating)")]
    Passive(PathBuf),
    /// Sending or receiving failed.
    #[error("snapuserd {request}: {source}")]
    Io {
        /// The request's command.
        request: &'static str,
        /// The failure.
        source: io::Error,
    },
    /// The daemon did not answer in time.
    #[error("snapuserd did not answer {request} within {after:?}")]
    Timeout {
        /// The request's command.
        request: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The daemon closed the connection instead of answering.
    #[error("snapuserd closed the connection instead of answering {0}")]
    Disconnected(&'static str),
    /// An answer that is not one the request can have, or a request that cannot be made.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl From<SnapuserdError> for crate::error::Error {
    fn from(e: SnapuserdError) -> Self {
        crate::err!(DeviceError, "{e}").caused_by(e)
    }
}

type Result<T> = std::result::Result<T, SnapuserdError>;

/// A connection to snapuserd.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    reply_timeout: Duration,
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
    )
}

impl Client {
    /// Connects to the daemon of `config`, retrying every 100 ms while its socket is missing
    /// or refuses (as libsnapshot's `Connect`), then checks it is the active daemon (`query`).
    pub fn connect(config: &Config) -> Result<Client> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(&config.socket) {
                Ok(s) => break s,
                Err(e) if retryable(&e) && start.elapsed() < config.connect_timeout => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(source) => {
                    return Err(SnapuserdError::Connect {
                        path: config.socket.clone(),
                        source,
                    })
                }
            }
        };
        // A zero timeout would mean none to set_*_timeout: never wait forever.
        let timeout = config.reply_timeout.max(Duration::from_millis(1));
        let io = |source| SnapuserdError::Io {
            request: "connect",
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let mut client = Client {
            stream,
            reply_timeout: timeout,
        };
        let answer = client.exchange(&Request::Query)?;
        match protocol::parse_query(&answer)? {
            DaemonState::Active => Ok(client),
            DaemonState::Passive => Err(SnapuserdError::Passive(config.socket.clone())),
        }
    }

    /// Sends `request` and reads its answer (empty for one without).
    fn exchange(&mut self, request: &Request) -> Result<Vec<u8>> {
        let bytes = request.encode()?;
        let command = request.command();
        let io = |source| SnapuserdError::Io {
            request: command,
            source,
        };
        // One write of the whole request: the server reads each request with one recv.
        // (A closed peer gives EPIPE: Rust programs ignore SIGPIPE.)
        self.stream.write_all(&bytes).map_err(io)?;
        if !request.answered() {
            return Ok(Vec::new());
        }
        let mut buf = [0u8; protocol::PACKET_SIZE];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(SnapuserdError::Disconnected(command)),
                Ok(n) => return Ok(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(SnapuserdError::Timeout {
                        request: command,
                        after: self.reply_timeout,
                    })
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Starts (or resumes) the merge of snapshot `name`: whether the daemon took it.
    pub fn initiate_merge(&mut self, name: &str) -> Result<bool> {
        let request = Request::InitiateMerge(name);
        let answer = self.exchange(&request)?;
        Ok(protocol::parse_ack(&request, &answer)?)
    }

    /// The merge's progress over every partition the daemon serves, 0 to 100.
    pub fn merge_percent(&mut self) -> Result<f64> {
        let answer = self.exchange(&Request::MergePercent)?;
        Ok(protocol::parse_percent(&answer)?)
    }

    /// Snapshot `name`'s merge state.
    pub fn status(&mut self, name: &str) -> Result<SnapshotMergeStatus> {
        let answer = self.exchange(&Request::GetStatus(name))?;
        Ok(protocol::parse_status(&answer)?)
    }

    /// Waits for the daemon to let go of snapshot `name`, whose dm-user device is gone.
    pub fn delete(&mut self, name: &str) -> Result<bool> {
        let request = Request::Delete(name);
        let answer = self.exchange(&request)?;
        Ok(protocol::parse_ack(&request, &answer)?)
    }

    /// Makes the handler of the dm-user device `misc_name` (`init`): served from the COW
    /// device `cow` over `backing`, merging into `base_merge`. The sectors it serves, or
    /// `None` when the daemon refused.
    pub fn init(
        &mut self,
        misc_name: &str,
        cow: &str,
        backing: &str,
        base_merge: &str,
    ) -> Result<Option<u64>> {
        let answer = self.exchange(&Request::Init {
            misc_name,
            cow,
            backing,
            base_merge,
        })?;
        Ok(protocol::parse_init(&answer)?)
    }

    /// Has the handler of `misc_name` attach to its dm-user control device (`start`): whether
    /// the daemon took it.
    pub fn start(&mut self, misc_name: &str) -> Result<bool> {
        let request = Request::Start(misc_name);
        let answer = self.exchange(&request)?;
        Ok(protocol::parse_ack(&request, &answer)?)
    }

    /// Tells the daemon to stop listening and exit once its handlers end (after the merge).
    pub fn detach(mut self) -> Result<()> {
        self.exchange(&Request::Detach).map(|_| ())
    }
}
