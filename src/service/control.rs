//! Suspend, resume and cancel of a running update, between the service and the engine.
//!
//! The service flips the state from Binder threads; the engine's worker thread polls it
//! at operation boundaries with [`Control::pause_point`]. Blocking there (rather than
//! failing and restarting) keeps a suspended update's open files and buffers as they were.
//! The payload download is steered too ([`Control::steer`]): a suspend closes its
//! connection at once instead of holding the server until the next operation boundary.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::download::TransferControl;
use crate::error::Result;

/// Shared handle on the run state of one update. Cloning gives another handle on the
/// same state.
#[derive(Clone, Debug, Default)]
pub struct Control {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<RunState>,
    changed: Condvar,
    /// Downloads that follow every change of `state`.
    transfers: Mutex<Vec<TransferControl>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RunState {
    #[default]
    Running,
    Suspended,
    Cancelled,
}

impl Control {
    /// A control in the running state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by the engine between operations: returns at once while running, blocks
    /// while suspended, and fails with `Cancelled` once cancelled (also when the cancel
    /// comes during the suspension).
    pub fn pause_point(&self) -> Result<()> {
        let mut state = self.lock();
        while *state == RunState::Suspended {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match *state {
            RunState::Cancelled => Err(crate::err!(Cancelled, "the update was cancelled")),
            _ => Ok(()),
        }
    }

    /// Whether a cancel was requested; for loops that cannot stop at a pause point.
    pub fn is_cancelled(&self) -> bool {
        *self.lock() == RunState::Cancelled
    }

    /// Whether a suspend is in force now (a running postinstall program is stopped for it).
    pub fn is_suspended(&self) -> bool {
        *self.lock() == RunState::Suspended
    }

    /// Pauses at the next pause point. False if cancelled already.
    pub fn suspend(&self) -> bool {
        self.set(|s| (s != RunState::Cancelled).then_some(RunState::Suspended))
    }

    /// Continues after [`Control::suspend`]. False if cancelled already.
    pub fn resume(&self) -> bool {
        self.set(|s| (s != RunState::Cancelled).then_some(RunState::Running))
    }

    /// Stops at the next pause point, waking a suspended update.
    pub fn cancel(&self) {
        self.set(|_| Some(RunState::Cancelled));
    }

    /// Makes suspend, resume and cancel also steer `transfer`, starting with the state now.
    pub fn steer(&self, transfer: TransferControl) {
        // Under the state lock, so that no change slips between reading and registering.
        let state = self.lock();
        apply(*state, &transfer);
        self.shared
            .transfers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(transfer);
    }

    fn set(&self, next: impl FnOnce(RunState) -> Option<RunState>) -> bool {
        let mut state = self.lock();
        match next(*state) {
            Some(new) => {
                *state = new;
                let transfers = self
                    .shared
                    .transfers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for transfer in transfers.iter() {
                    apply(new, transfer);
                }
                self.shared.changed.notify_all();
                true
            }
            None => false,
        }
    }

    // A panic elsewhere cannot leave a RunState half-written; keep serving.
    fn lock(&self) -> MutexGuard<'_, RunState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn apply(state: RunState, transfer: &TransferControl) {
    match state {
        RunState::Running => transfer.resume(),
        RunState::Suspended => transfer.suspend(),
        RunState::Cancelled => transfer.cancel(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn suspended_pause_point_waits_for_resume() {
        let control = Control::new();
        assert!(control.suspend());
        let worker = {
            let control = control.clone();
            std::thread::spawn(move || control.pause_point())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !worker.is_finished(),
            "pause_point returned while suspended"
        );
        assert!(control.resume());
        assert!(worker.join().unwrap().is_ok());
    }

    #[test]
    fn cancel_wakes_a_suspended_pause_point() {
        let control = Control::new();
        control.suspend();
        let worker = {
            let control = control.clone();
            std::thread::spawn(move || control.pause_point())
        };
        std::thread::sleep(Duration::from_millis(20));
        control.cancel();
        let err = worker.join().unwrap().unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::Cancelled);
        assert!(!control.resume(), "a cancelled update cannot resume");
        assert!(control.is_cancelled());
    }

    #[test]
    fn steered_transfers_follow_the_state() {
        let control = Control::new();
        let early = TransferControl::new();
        control.steer(early.clone());
        assert!(!early.is_suspended());
        control.suspend();
        assert!(early.is_suspended());
        // A transfer steered while suspended starts suspended.
        let late = TransferControl::new();
        control.steer(late.clone());
        assert!(late.is_suspended());
        control.resume();
        assert!(!early.is_suspended() && !late.is_suspended());
        control.cancel();
        assert!(early.is_cancelled() && late.is_cancelled());
    }
}
