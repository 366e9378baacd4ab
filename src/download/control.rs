//! Suspending, resuming and cancelling a transfer from another thread.
//!
//! The service holds a clone of the [`TransferControl`] while the engine reads the payload
//! stream. Besides flipping a state the reader polls, suspending or cancelling shuts the live
//! socket down at once: the reader wakes immediately and the server is not held while the
//! transfer waits.

use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode};

/// A handle shared between the reader of a payload stream and whoever steers the transfer.
/// Cloning is cheap; all clones steer the same transfer. Cancelling is final.
#[derive(Clone, Default)]
pub struct TransferControl(Arc<Shared>);

impl TransferControl {
    /// A control for a transfer that is running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pauses the transfer: the connection is closed and the next `read` blocks until
    /// [`resume`](Self::resume) or [`cancel`](Self::cancel).
    pub fn suspend(&self) {
        let mut state = self.0.lock();
        if !state.cancelled {
            state.suspended = true;
            state.shut_socket();
        }
        self.0.changed.notify_all();
    }

    /// Lets a suspended transfer go on; it asks the server for the bytes from where it stopped.
    pub fn resume(&self) {
        self.0.lock().suspended = false;
        self.0.changed.notify_all();
    }

    /// Stops the transfer for good: the pending or next `read` fails with `Cancelled` (38).
    pub fn cancel(&self) {
        let mut state = self.0.lock();
        state.cancelled = true;
        state.shut_socket();
        self.0.changed.notify_all();
    }

    /// Whether the transfer was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.lock().cancelled
    }

    /// Whether the transfer is suspended now.
    pub fn is_suspended(&self) -> bool {
        self.0.lock().suspended
    }

    /// Where the transfer stands: `Err(Interrupt)` when it must not move on now.
    pub(crate) fn check(&self) -> Result<(), Interrupt> {
        let state = self.0.lock();
        if state.cancelled {
            Err(Interrupt::Cancelled)
        } else if state.suspended {
            Err(Interrupt::Suspended)
        } else {
            Ok(())
        }
    }

    /// Blocks while the transfer is suspended; fails once it is cancelled.
    pub(crate) fn wait_resumed(&self) -> Result<(), Error> {
        let mut state = self.0.lock();
        while state.suspended && !state.cancelled {
            state = self
                .0
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.cancelled {
            return Err(cancelled());
        }
        Ok(())
    }

    /// Sleeps for `duration` unless the transfer is cancelled first.
    pub(crate) fn sleep(&self, duration: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + duration;
        let mut state = self.0.lock();
        loop {
            if state.cancelled {
                return Err(cancelled());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            state = match self.0.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Registers the socket a transfer reads from, so that suspend and cancel can close it.
    /// Returns a ticket for [`detach`](Self::detach).
    pub(crate) fn attach(&self, socket: &TcpStream) -> Result<u64, Interrupt> {
        let mut state = self.0.lock();
        if state.cancelled {
            return Err(Interrupt::Cancelled);
        }
        if state.suspended {
            return Err(Interrupt::Suspended);
        }
        state.ticket += 1;
        let ticket = state.ticket;
        // Without a clone, suspend and cancel still work, only after the next read slice.
        state.socket = socket.try_clone().ok().map(|s| (ticket, s));
        Ok(ticket)
    }

    /// Whether suspend or cancel shut the socket registered under `ticket`: its end of stream
    /// is then no server failure, even when the transfer was resumed since.
    pub(crate) fn was_shut(&self, ticket: u64) -> bool {
        self.0.lock().shut == Some(ticket)
    }

    /// Forgets the socket registered under `ticket`, if it is still the registered one.
    pub(crate) fn detach(&self, ticket: u64) {
        let mut state = self.0.lock();
        if state.socket.as_ref().is_some_and(|(t, _)| *t == ticket) {
            state.socket = None;
        }
    }
}

/// Why a transfer may not proceed right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interrupt {
    Suspended,
    Cancelled,
}

pub(crate) fn cancelled() -> Error {
    Error::new(ErrorCode::Cancelled, "the download was cancelled")
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under any panic (plain flag stores), so poisoning is moot.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    suspended: bool,
    cancelled: bool,
    ticket: u64,
    socket: Option<(u64, TcpStream)>,
    shut: Option<u64>,
}

impl State {
    fn shut_socket(&mut self) {
        if let Some((ticket, socket)) = self.socket.take() {
            // Failing means the socket is already closed, which is what we want.
            let _ = socket.shutdown(Shutdown::Both);
            self.shut = Some(ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn suspend_blocks_until_resume() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let control = TransferControl::new();
        control.suspend();
        assert_eq!(control.check(), Err(Interrupt::Suspended));
        let other = control.clone();
        // Set just before resuming: a waiter that returns and finds it unset returned early.
        // (No timing: a waiter scheduled late may start after the resume, which is fine.)
        let resumed = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&resumed);
        let waiter =
            thread::spawn(move || other.wait_resumed().map(|()| seen.load(Ordering::SeqCst)));
        thread::sleep(Duration::from_millis(100));
        resumed.store(true, Ordering::SeqCst);
        control.resume();
        assert!(waiter.join().unwrap().unwrap(), "returned while suspended");
        assert_eq!(control.check(), Ok(()));
    }

    #[test]
    fn cancel_wakes_sleepers_and_waiters() {
        let control = TransferControl::new();
        let sleeper = control.clone();
        let sleeping = thread::spawn(move || {
            let started = Instant::now();
            (sleeper.sleep(Duration::from_secs(30)), started.elapsed())
        });
        control.suspend();
        let waiter = control.clone();
        let waiting = thread::spawn(move || waiter.wait_resumed());
        thread::sleep(Duration::from_millis(50));
        control.cancel();
        let (slept, took) = sleeping.join().unwrap();
        assert_eq!(slept.unwrap_err().code, ErrorCode::Cancelled);
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(
            waiting.join().unwrap().unwrap_err().code,
            ErrorCode::Cancelled
        );
        assert!(control.is_cancelled());
        // Cancelling is final: resume does not undo it.
        control.resume();
        assert_eq!(control.check(), Err(Interrupt::Cancelled));
    }

    #[test]
    fn suspend_shuts_the_attached_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let control = TransferControl::new();
        let ticket = control.attach(&client).unwrap();
        let other = control.clone();
        let suspender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            other.suspend();
        });
        // Blocks until the shutdown: the peer never writes.
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).unwrap(), 0);
        suspender.join().unwrap();
        assert!(control.was_shut(ticket));
        control.detach(ticket);
        assert_eq!(control.attach(&client), Err(Interrupt::Suspended));
        control.resume();
        let next = control.attach(&client).unwrap();
        assert!(control.was_shut(ticket) && !control.was_shut(next));
    }
}
