//! The thread that calls the listeners.

use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::error::Result;
use crate::service::listeners::{Listener, ListenerId, Listeners, Registry};
use crate::service::status::Status;

/// Delivers changes to the listeners on a thread of its own, so that a client that
/// does not take its callbacks delays only other callbacks, never the service.
pub(crate) struct Notifier {
    queue: Mutex<mpsc::Sender<Message>>,
    registry: Registry,
}

enum Message {
    Add {
        id: ListenerId,
        listener: Arc<dyn Listener>,
        seq: u64,
        status: Status,
    },
    Remove(ListenerId),
    Change {
        seq: u64,
        status: Status,
        complete: bool,
    },
}

impl Notifier {
    /// Starts the delivery thread; it ends when the notifier is dropped.
    pub(crate) fn start() -> std::io::Result<Notifier> {
        let (queue, inbox) = mpsc::channel();
        let listeners = Listeners::default();
        let registry = listeners.registry();
        std::thread::Builder::new()
            .name("abupdate-notify".to_owned())
            .spawn(move || run(listeners, &inbox))?;
        Ok(Notifier {
            queue: Mutex::new(queue),
            registry,
        })
    }

    /// Registers `uid`'s listener and greets it with `status`, change `seq`; refused when
    /// `uid` or the service holds as many listeners as it may.
    pub(crate) fn add(
        &self,
        id: ListenerId,
        uid: u32,
        listener: Arc<dyn Listener>,
        seq: u64,
        status: Status,
    ) -> Result<()> {
        // Reserved here, on the caller's thread, so that a burst of registrations is
        // counted before the delivery thread gets to them.
        self.registry.reserve(id, uid)?;
        self.send(Message::Add {
            id,
            listener,
            seq,
            status,
        });
        Ok(())
    }

    pub(crate) fn remove(&self, id: ListenerId) {
        self.registry.release(id);
        self.send(Message::Remove(id));
    }

    /// Change `seq`; `complete` when it ends an update (never throttled).
    pub(crate) fn change(&self, seq: u64, status: Status, complete: bool) {
        self.send(Message::Change {
            seq,
            status,
            complete,
        });
    }

    /// How many listeners are registered.
    pub(crate) fn count(&self) -> usize {
        self.registry.count()
    }

    fn send(&self, message: Message) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // The thread only ends when this sender is dropped.
        if queue.send(message).is_err() {
            log::error!("the listener delivery thread is gone");
        }
    }
}

fn run(mut listeners: Listeners, inbox: &mpsc::Receiver<Message>) {
    while let Ok(message) = inbox.recv() {
        match message {
            Message::Add {
                id,
                listener,
                seq,
                status,
            } => {
                listeners.insert(id, listener, seq);
                listeners.greet(id, &status);
            }
            Message::Remove(id) => {
                if listeners.remove(id) {
                    log::info!("status listener removed");
                }
            }
            Message::Change {
                seq,
                status,
                complete,
            } => {
                if listeners.admit(seq, &status, Instant::now(), complete) {
                    listeners.send(seq, &status);
                }
                if complete {
                    listeners.complete(status.error_code, &status.error_message);
                }
            }
        }
    }
}
