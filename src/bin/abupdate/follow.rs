//! Following an update through the service's callbacks: a progress bar on a terminal, a
//! line per phase and per tenth of progress otherwise, until the update completes.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::Result;

use abupdate::service::client::{Event, UpdateClient, Watch};
use abupdate::service::{State, Status};

/// How long to wait for a callback before checking that the service is still there.
const LIVENESS: Duration = Duration::from_secs(2);

/// A registered callback and how its events are shown.
pub struct Follow<'a> {
    client: &'a UpdateClient,
    _watch: Watch,
    events: Receiver<Event>,
    display: Display,
}

impl<'a> Follow<'a> {
    /// Registers a callback; the service answers with the current status at once.
    pub fn start(client: &'a UpdateClient, terminal: bool) -> Result<Follow<'a>> {
        let (tx, events) = mpsc::channel();
        let watch = client.watch(move |event| {
            // The receiver is gone only once we stopped following.
            let _ = tx.send(event);
        })?;
        Ok(Follow {
            client,
            _watch: watch,
            events,
            display: Display::new(terminal),
        })
    }

    /// Shows events until an update completes: `Ok` if it succeeded, its error (and code)
    /// otherwise. With `idle_ends`, a first status with no update running ends at once,
    /// with the last update's result.
    pub fn until_complete(mut self, idle_ends: bool) -> Result<()> {
        let mut first = true;
        loop {
            let event = match self.events.recv_timeout(LIVENESS) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    // Quiet for a while (suspended, or a slow network): is the service alive?
                    self.client.status()?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(abupdate::err!(DeviceError, "the callback went away").into())
                }
            };
            match event {
                Event::Status(status) => {
                    if first && idle_ends && !status.state.is_running() {
                        self.display.finish();
                        println!("{status}");
                        return match status.error() {
                            Some(e) => Err(e.into()),
                            None => Ok(()),
                        };
                    }
                    self.display.show(&status);
                }
                Event::Complete(result) => {
                    self.display.finish();
                    return match result {
                        Ok(()) => {
                            if !self.display.showed(State::UpdatedNeedReboot) {
                                println!("{}", State::UpdatedNeedReboot);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    };
                }
            }
            first = false;
        }
    }
}

enum Display {
    /// A progress bar on a terminal (indicatif: host builds; AOSP has no indicatif).
    #[cfg(feature = "host-tools")]
    Bar {
        bar: indicatif::ProgressBar,
        state: Option<State>,
    },
    Lines {
        state: Option<State>,
        tenth: u64,
    },
}

impl Display {
    fn new(terminal: bool) -> Display {
        #[cfg(feature = "host-tools")]
        if terminal {
            return Display::Bar {
                bar: crate::progress_bar::new(19),
                state: None,
            };
        }
        let _ = terminal;
        Display::Lines {
            state: None,
            tenth: 0,
        }
    }

    fn show(&mut self, status: &Status) {
        match self {
            #[cfg(feature = "host-tools")]
            Display::Bar { bar, state } => {
                if *state != Some(status.state) {
                    *state = Some(status.state);
                    bar.set_message(status.state.name());
                    bar.reset();
                }
                bar.set_length(status.total);
                bar.set_position(status.done);
            }
            Display::Lines { state, tenth } => {
                let now = (status.progress() * 10.0) as u64;
                if *state != Some(status.state) || now > *tenth {
                    *state = Some(status.state);
                    *tenth = now;
                    println!("{status}");
                }
            }
        }
    }

    /// Whether the last line printed was about `state`.
    fn showed(&self, state: State) -> bool {
        matches!(self, Display::Lines { state: Some(s), .. } if *s == state)
    }

    fn finish(&self) {
        #[cfg(feature = "host-tools")]
        if let Display::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}
