//! The log of refused calls, paced: a caller hammering a method it may not call must not flood
//! the log (logcat's buffer is shared by the whole device, and a flood hides what matters).
//!
//! Each UID gets at most one line per [`INTERVAL`]; the next line it gets says how many
//! refusals went unlogged in between. The table is bounded: a UID not refused for an interval
//! is forgotten, and while the table is full of recent ones a new UID's refusal goes unlogged.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one line per UID this often.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
/// UIDs tracked at once.
const MAX_TRACKED: usize = 256;

#[derive(Default)]
pub(crate) struct RefusalLog {
    uids: Mutex<HashMap<u32, Pace>>,
}

struct Pace {
    logged_at: Instant,
    /// Refusals since `logged_at` that were not logged.
    suppressed: u64,
}

impl RefusalLog {
    /// Records that `uid` was refused `what` (as in "may not {what}") at `now`; returns the
    /// line to log, if one is due.
    pub(crate) fn note(&self, uid: u32, what: &str, now: Instant) -> Option<String> {
        let mut uids = self.uids.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pace) = uids.get_mut(&uid) {
            if now.saturating_duration_since(pace.logged_at) < INTERVAL {
                pace.suppressed = pace.suppressed.saturating_add(1);
                return None;
            }
            let line = match pace.suppressed {
                0 => format!("uid {uid} may not {what}"),
                n => format!(
                    "uid {uid} may not {what} ({n} more refusals of uid {uid} not logged in the {}s before)",
                    now.saturating_duration_since(pace.logged_at).as_secs()
                ),
            };
            *pace = Pace {
                logged_at: now,
                suppressed: 0,
            };
            return Some(line);
        }
        if uids.len() >= MAX_TRACKED {
            uids.retain(|_, p| now.saturating_duration_since(p.logged_at) < INTERVAL);
            if uids.len() >= MAX_TRACKED {
                return None;
            }
        }
        uids.insert(
            uid,
            Pace {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(format!("uid {uid} may not {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_uid_per_interval_with_the_count_of_the_rest() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.note(2000, "apply a payload", t0).as_deref(),
            Some("uid 2000 may not apply a payload")
        );
        for i in 0..999 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(log.note(2000, "apply a payload", at), None);
        }
        // Another UID is logged on its own pace.
        assert!(log.note(10001, "cancel the update", t0).is_some());
        let later = t0 + INTERVAL;
        let line = log.note(2000, "cancel the update", later).unwrap();
        assert_eq!(
            line,
            "uid 2000 may not cancel the update (999 more refusals of uid 2000 not logged in the 10s before)"
        );
        assert_eq!(log.note(2000, "cancel the update", later), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for uid in 0..MAX_TRACKED as u32 {
            assert!(log.note(uid, "x", t0).is_some());
        }
        assert_eq!(log.note(100_000, "x", t0), None, "full of recent UIDs");
        // Once they are an interval old they make room.
        assert!(log.note(100_000, "x", t0 + INTERVAL).is_some());
        assert!(log.uids.lock().unwrap().len() <= MAX_TRACKED);
    }
}
