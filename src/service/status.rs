//! What the service reports: its state, progress, the last error and the slots.

use std::fmt;

use crate::error::{Error, ErrorCode};
use crate::service::backend::ApplyPhase;

/// The service's state; the numbers are `IUpdateService.STATE_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum State {
    /// `STATE_IDLE`: no update running.
    #[default]
    Idle = 0,
    /// `STATE_DOWNLOADING`: fetching the payload and writing the target slot.
    Downloading = 1,
    /// `STATE_VERIFYING`: checking what was written (partition hashes, verity).
    Verifying = 2,
    /// `STATE_FINALIZING`: computing verity/FEC, switching the active slot.
    Finalizing = 3,
    /// `STATE_UPDATED_NEED_REBOOT`: applied; the next boot runs the new slot.
    UpdatedNeedReboot = 4,
    /// `STATE_SUSPENDED`: paused by `suspend`.
    Suspended = 5,
    /// `STATE_INTERRUPTED`: the service stopped while an update ran; `resume` continues it.
    Interrupted = 6,
}

/// A snapshot of the service, as `getStatus` returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The state.
    pub state: State,
    /// Bytes of the current phase done.
    pub done: u64,
    /// Bytes of the current phase in all; 0 while unknown.
    pub total: u64,
    /// How the last update ended; `Ok` if it did not fail.
    pub error_code: ErrorCode,
    /// The last error's message; empty without one.
    pub error_message: String,
    /// The running slot, when known.
    pub current_slot: Option<u32>,
    /// The slot being (or last) written, when there is one.
    pub target_slot: Option<u32>,
}

impl State {
    /// Every state, in number order.
    pub const ALL: [State; 7] = [
        Self::Idle,
        Self::Downloading,
        Self::Verifying,
        Self::Finalizing,
        Self::UpdatedNeedReboot,
        Self::Suspended,
        Self::Interrupted,
    ];

    /// `IUpdateService.STATE_*` number.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The state of a `STATE_*` number.
    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_i32() == value)
    }

    /// The stable name used in `dump`, the state file and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "IDLE",
            Self::Downloading => "DOWNLOADING",
            Self::Verifying => "VERIFYING",
            Self::Finalizing => "FINALIZING",
            Self::UpdatedNeedReboot => "UPDATED_NEED_REBOOT",
            Self::Suspended => "SUSPENDED",
            Self::Interrupted => "INTERRUPTED",
        }
    }

    /// The state named `name` (see [`State::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether an update job runs (possibly paused) in this state.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Self::Downloading | Self::Verifying | Self::Finalizing | Self::Suspended
        )
    }

    pub(crate) fn of_phase(phase: ApplyPhase) -> Self {
        match phase {
            ApplyPhase::Downloading => Self::Downloading,
            ApplyPhase::Verifying => Self::Verifying,
            ApplyPhase::Finalizing => Self::Finalizing,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for Status {
    /// Idle, no error, slots unknown.
    fn default() -> Self {
        Status {
            state: State::Idle,
            done: 0,
            total: 0,
            error_code: ErrorCode::Ok,
            error_message: String::new(),
            current_slot: None,
            target_slot: None,
        }
    }
}

impl Status {
    /// Fraction of the current phase done, 0 to 1.
    pub fn progress(&self) -> f32 {
        if self.total == 0 {
            return 0.0;
        }
        // Precision is irrelevant here: this is a progress bar.
        (self.done.min(self.total) as f64 / self.total as f64) as f32
    }

    /// The last error as an [`Error`], if the last update failed.
    pub fn error(&self) -> Option<Error> {
        (self.error_code != ErrorCode::Ok)
            .then(|| Error::new(self.error_code, self.error_message.clone()))
    }

    pub(crate) fn set_error(&mut self, error: Option<&Error>) {
        match error {
            Some(e) => {
                self.error_code = e.code;
                self.error_message.clone_from(&e.message);
            }
            None => {
                self.error_code = ErrorCode::Ok;
                self.error_message.clear();
            }
        }
    }
}

impl fmt::Display for Status {
    /// One line, as the CLI's `status` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.state)?;
        if self.state.is_running() || self.state == State::Interrupted {
            write!(
                f,
                " {:.1}% ({}/{} bytes)",
                self.progress() * 100.0,
                self.done,
                self.total
            )?;
        }
        if let Some(e) = self.error() {
            write!(f, ", last error {}: {}", e.code, e.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for state in State::ALL {
            assert_eq!(State::from_i32(state.as_i32()), Some(state));
            assert_eq!(State::from_name(state.name()), Some(state));
        }
        assert_eq!(State::from_i32(7), None);
    }

    #[test]
    fn progress_is_a_fraction() {
        let mut status = Status {
            done: 50,
            total: 200,
            ..Status::default()
        };
        assert_eq!(status.progress(), 0.25);
        status.total = 0;
        assert_eq!(status.progress(), 0.0);
        status.total = 10;
        assert_eq!(status.progress(), 1.0, "done beyond total is clamped");
    }
}
