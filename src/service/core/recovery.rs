//! What a restarted service reports, from its state file and the engine's checkpoint.

use crate::service::backend::UpdateBackend;
use crate::service::persist::{Record, StoredRequest};
use crate::service::status::{State, Status};

/// What a restarted service reports, from its state file and the engine's checkpoint.
pub(super) fn recover(
    record: Option<Record>,
    boot_id: &str,
    engine: &dyn UpdateBackend,
) -> (Status, Option<StoredRequest>) {
    let Some(Record {
        mut status,
        boot_id: then,
        request,
    }) = record
    else {
        return (Status::default(), None);
    };
    match status.state {
        state if state.is_running() || state == State::Interrupted => {
            status.state = State::Interrupted;
            match engine.resume_point() {
                Ok(Some(point)) => {
                    status.done = point.done;
                    status.total = point.total;
                }
                Ok(None) => {}
                Err(e) => log::warn!("resume point unavailable: {e}"),
            }
            (status, request)
        }
        State::UpdatedNeedReboot if then == boot_id => (status, None),
        State::UpdatedNeedReboot => {
            log::info!("rebooted since the update was applied");
            (Status::default(), None)
        }
        _ => (
            Status {
                done: 0,
                total: 0,
                ..status
            },
            None,
        ),
    }
}
