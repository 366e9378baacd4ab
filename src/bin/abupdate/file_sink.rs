//! A [`CowSink`] over a file for `abupdate cow write` and `cow apply`: sequential writes are
//! gathered into large buffers, which a background thread writes while the caller goes on
//! (compressing, for `cow write`). Copying hundreds of MiB into the page cache costs about as
//! much CPU as compressing them; on the caller's thread it held up everything behind it.
//! Writes reach the file in the order they were made; `sync` and `finish` wait for them all.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use abupdate::cow::CowSink;
use anyhow::{Context, Result};

/// Bytes gathered before they are handed to the writing thread.
const BUFFER: usize = 4 << 20;
/// Buffers queued for the writing thread beyond the one it writes: bounds the memory to
/// about (2 + this) buffers.
const QUEUED: usize = 1;

enum Job {
    Write(u64, Vec<u8>),
    /// Make everything written so far durable, then answer.
    Sync(SyncSender<io::Result<()>>),
}

/// Writes at offsets through a background thread.
pub struct FileSink {
    file: Arc<File>,
    buf: Vec<u8>,
    /// Where `buf` goes in the file.
    at: u64,
    jobs: Option<SyncSender<Job>>,
    /// Written buffers back from the thread, for reuse.
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FileSink {
    pub fn new(file: File) -> FileSink {
        let file = Arc::new(file);
        let (jobs, queue) = sync_channel::<Job>(QUEUED);
        let (give_back, spare) = channel();
        let thread = std::thread::spawn({
            let file = file.clone();
            move || write_jobs(&file, &queue, &give_back)
        });
        FileSink {
            file,
            buf: Vec::with_capacity(BUFFER),
            at: 0,
            jobs: Some(jobs),
            spare,
            thread: Some(thread),
        }
    }

    /// Hands the gathered bytes to the writing thread.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER));
        let full = std::mem::replace(&mut self.buf, next);
        let len = full.len() as u64;
        self.send(Job::Write(self.at, full))?;
        self.at += len;
        Ok(())
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        Err(self
            .stop()
            .err()
            .unwrap_or_else(|| io::Error::other("the writing thread stopped")))
    }

    /// Ends the thread after the writes queued so far; its first error, if any.
    fn stop(&mut self) -> io::Result<()> {
        self.jobs = None;
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked"))),
            None => Ok(()),
        }
    }

    /// Writes everything and makes the file durable.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.stop().context("writing")?;
        self.file.sync_all().context("syncing")?;
        Ok(())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn write_jobs(file: &File, jobs: &Receiver<Job>, give_back: &Sender<Vec<u8>>) -> io::Result<()> {
    for job in jobs {
        match job {
            Job::Write(at, buf) => {
                file.write_all_at(&buf, at)?;
                let mut buf = buf;
                buf.clear();
                // The sink may be gone, and with it the need for buffers.
                let _ = give_back.send(buf);
            }
            Job::Sync(answer) => {
                let _ = answer.send(file.sync_data());
            }
        }
    }
    Ok(())
}

impl CowSink for FileSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.at + self.buf.len() as u64 || self.buf.len() + data.len() > BUFFER {
            self.flush()?;
            self.at = offset;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        let (answer, done) = sync_channel(1);
        self.send(Job::Sync(answer))?;
        match done.recv() {
            Ok(result) => result,
            Err(_) => Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("the writing thread stopped"))),
        }
    }
}
