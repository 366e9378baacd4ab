//! Fleet reports: one record per phase end and at completion, kept in a bounded queue in the
//! state directory until the report URL took it, so that reports survive restarts and reboots.
//!
//! The queue is one state file replaced atomically ([`crate::state_file`]) on every change,
//! each change made under the queue's lock (records are queued while others are sent).
//! Sending is behind [`ReportSink`]; a failed send is retried on the next flush after an
//! exponential backoff (1 s doubling to 1 h) kept in the same file. An answer that says the
//! record itself is bad (400, 413 and other 4xx except 401, 408 and 429) drops that record:
//! sending it again cannot succeed. The device token is never stored: flushes are given it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::state_file;

/// The most records kept; beyond it the oldest are dropped (and counted).
pub const MAX_QUEUED: usize = 64;
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// A message is cut to this many bytes: the service takes 16 KiB bodies.
const MAX_MESSAGE: usize = 1024;

/// One report, as `POST /v1/report` takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting device's id.
    pub device_id: String,
    /// The offer being installed.
    pub offer_id: String,
    /// `download`, `verify`, `install`, `postinstall` or `complete`.
    pub phase: String,
    /// The status code (0 on success).
    pub code: i32,
    /// The code's name (`PAYLOAD_SIGNATURE`), `OK` on success.
    pub reason: String,
    /// The error message, cut to 1 KiB; empty on success.
    pub message: String,
    /// Payload bytes of the phase (the payload's size once it was written or verified; 0 after an
    /// early failure).
    pub bytes: u64,
    /// The running build's fingerprint (empty when unknown).
    pub from_build: String,
    /// The offer's build fingerprint.
    pub to_build: String,
    /// Milliseconds since the apply started.
    pub duration_ms: u64,
    /// The target slot.
    pub slot: String,
    /// Unix seconds.
    pub at: i64,
}

impl Report {
    /// Fills code, reason and message from an outcome.
    pub fn set_outcome(&mut self, outcome: Result<(), &Error>) {
        let (code, message) = match outcome {
            Ok(()) => (ErrorCode::Ok, String::new()),
            Err(e) => (e.code, e.message.clone()),
        };
        self.code = code.as_i32();
        self.reason = code.name().to_owned();
        let mut cut = message;
        if cut.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !cut.is_char_boundary(end) {
                end -= 1;
            }
            cut.truncate(end);
        }
        self.message = cut;
    }
}

/// What became of one send.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The service took the record.
    Delivered,
    /// The service refused the record itself: drop it.
    Refused(String),
    /// Try again later.
    Retry(String),
}

/// Where reports go: the HTTP(S) client on devices, anything in tests.
pub trait ReportSink {
    /// Posts `body` to `url`.
    fn send(&mut self, url: &str, body: &[u8]) -> Sent;
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct QueueFile {
    entries: Vec<Entry>,
    /// Consecutive failed sends.
    failures: u32,
    /// Unix seconds before which no send is tried (unless forced).
    not_before: i64,
    /// Records dropped because the queue was full or the service refused them.
    dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    url: String,
    report: Report,
}

/// The result of a flush.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Records the service took.
    pub delivered: usize,
    /// Records the service refused, now dropped.
    pub refused: usize,
    /// Records still queued.
    pub left: usize,
    /// Why sending stopped, when it stopped early.
    pub stopped: Option<String>,
}

/// The queue in `state_dir`.
pub struct ReportQueue {
    path: PathBuf,
    lock: Mutex<()>,
}

impl ReportQueue {
    /// The queue file in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        ReportQueue {
            path: state_dir.join("report-queue.json"),
            lock: Mutex::new(()),
        }
    }

    fn load(&self) -> Result<QueueFile> {
        match state_file::read(&self.path)? {
            None => Ok(QueueFile::default()),
            Some(bytes) => serde_json::from_slice(&bytes).or_else(|e| {
                // A damaged queue must not stop updates: start afresh, say so.
                log::warn!(
                    "{}: unreadable report queue, dropped: {e}",
                    self.path.display()
                );
                Ok(QueueFile::default())
            }),
        }
    }

    fn store(&self, file: &QueueFile) -> Result<()> {
        let bytes = serde_json::to_vec(file)
            .map_err(|e| crate::err!(DeviceError, "serialising the report queue: {e}"))?;
        state_file::replace(&self.path, &bytes)
    }

    /// Queues `report` for `url`, dropping the oldest record if the queue is full.
    pub fn push(&self, url: &str, report: Report) -> Result<()> {
        let _file_lock = self.lock();
        let mut file = self.load()?;
        while file.entries.len() >= MAX_QUEUED {
            file.entries.remove(0);
            file.dropped = file.dropped.saturating_add(1);
        }
        file.entries.push(Entry {
            url: url.to_owned(),
            report,
        });
        self.store(&file)
    }

    /// The queued records, oldest first.
    pub fn pending(&self) -> Result<Vec<Report>> {
        Ok(self.load()?.entries.into_iter().map(|e| e.report).collect())
    }

    /// When the next send should be tried: `None` with nothing queued, else the Unix second
    /// the backoff ends (0 when there is none).
    pub fn next_attempt(&self) -> Result<Option<i64>> {
        let file = self.load()?;
        Ok((!file.entries.is_empty()).then_some(file.not_before))
    }

    /// Sends queued records in order until one fails. Waits for the backoff unless `force`.
    pub fn flush(&self, sink: &mut dyn ReportSink, now: i64, force: bool) -> Result<Flushed> {
        let mut done = Flushed::default();
        {
            let _file_lock = self.lock();
            let file = self.load()?;
            if !force && now < file.not_before {
                done.left = file.entries.len();
                done.stopped = Some(format!("backing off until {}", file.not_before));
                return Ok(done);
            }
        }
        loop {
            // The file is not locked while a record is sent: the worker may queue more then.
            let entry = {
                let _file_lock = self.lock();
                match self.load()?.entries.into_iter().next() {
                    Some(entry) => entry,
                    None => break,
                }
            };
            let body = serde_json::to_vec(&entry.report)
                .map_err(|e| crate::err!(DeviceError, "serialising a report: {e}"))?;
            let sent = sink.send(&entry.url, &body);
            let _file_lock = self.lock();
            let mut file = self.load()?;
            match sent {
                Sent::Delivered => done.delivered += 1,
                Sent::Refused(why) => {
                    log::warn!("report refused, dropped: {why}");
                    file.dropped = file.dropped.saturating_add(1);
                    done.refused += 1;
                }
                Sent::Retry(why) => {
                    file.failures = file.failures.saturating_add(1);
                    let delay = backoff(file.failures);
                    file.not_before = now.saturating_add(delay.as_secs() as i64);
                    done.stopped = Some(why);
                    self.store(&file)?;
                    break;
                }
            }
            // The record sent, unless a full queue dropped it meanwhile.
            if let Some(at) = file.entries.iter().position(|e| *e == entry) {
                file.entries.remove(at);
            }
            file.failures = 0;
            file.not_before = 0;
            // Each delivered record is durable at once: a crash does not send it twice.
            self.store(&file)?;
        }
        let _file_lock = self.lock();
        done.left = self.load()?.entries.len();
        Ok(done)
    }

    /// Held across each read-change-write of the file: the service's worker queues while
    /// its report thread sends.
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wait after `failures` consecutive failed sends.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    BACKOFF_INITIAL
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(i: u64) -> Report {
        let mut r = Report {
            device_id: "dev".into(),
            offer_id: "o".into(),
            phase: "complete".into(),
            code: 0,
            reason: String::new(),
            message: String::new(),
            bytes: i,
            from_build: "a".into(),
            to_build: "b".into(),
            duration_ms: 1,
            slot: "b".into(),
            at: 0,
        };
        r.set_outcome(Err(&crate::err!(PayloadHash, "{}", "x".repeat(5000))));
        r
    }

    struct Script(Vec<Sent>, Vec<Vec<u8>>);
    impl ReportSink for Script {
        fn send(&mut self, _url: &str, body: &[u8]) -> Sent {
            self.1.push(body.to_vec());
            if self.0.is_empty() {
                Sent::Delivered
            } else {
                self.0.remove(0)
            }
        }
    }

    #[test]
    fn queue_survives_reopen_backs_off_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ReportQueue::new(dir.path());
        for i in 0..(MAX_QUEUED as u64 + 3) {
            queue.push("https://x/v1/report", report(i)).unwrap();
        }
        let queue = ReportQueue::new(dir.path());
        let pending = queue.pending().unwrap();
        assert_eq!(pending.len(), MAX_QUEUED);
        assert_eq!(pending[0].bytes, 3, "the oldest were dropped");
        assert_eq!(pending[0].code, 24);
        assert_eq!(pending[0].reason, "PAYLOAD_HASH");
        assert_eq!(pending[0].message.len(), MAX_MESSAGE);

        let mut sink = Script(
            vec![
                Sent::Delivered,
                Sent::Refused("400".into()),
                Sent::Retry("503".into()),
            ],
            Vec::new(),
        );
        let done = queue.flush(&mut sink, 1000, false).unwrap();
        assert_eq!(
            (done.delivered, done.refused, done.left),
            (1, 1, MAX_QUEUED - 2)
        );
        let sent: Report = serde_json::from_slice(&sink.1[0]).unwrap();
        assert_eq!(sent.bytes, 3);
        // Backing off: nothing is sent before the time, unless forced.
        let done = queue.flush(&mut sink, 1000, false).unwrap();
        assert_eq!(done.delivered, 0);
        assert_eq!(sink.1.len(), 3);
        let mut sink = Script(vec![Sent::Retry("down".into())], Vec::new());
        queue.flush(&mut sink, 1001, false).unwrap();
        let file = queue.load().unwrap();
        assert_eq!((file.failures, file.not_before), (2, 1003));
        assert_eq!(queue.next_attempt().unwrap(), Some(1003));
        let done = queue.flush(&mut sink, 1001, true).unwrap();
        assert_eq!((done.delivered, done.left), (MAX_QUEUED - 2, 0));
        assert_eq!(queue.next_attempt().unwrap(), None);
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
