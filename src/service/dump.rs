//! The `dumpsys abupdate` text.

use std::fmt::Write;
use std::path::Path;

use crate::error::Result;
use crate::service::backend::{RollbackFloor, SlotInfo};
use crate::service::status::Status;

/// Everything the dump shows, gathered by the service.
pub(crate) struct DumpInput<'a> {
    pub status: &'a Status,
    pub url: Option<&'a str>,
    pub slots: Result<SlotInfo>,
    pub floors: Result<Vec<RollbackFloor>>,
    pub listeners: usize,
    pub allowed_uids: &'a [u32],
    pub state_file: &'a Path,
    pub boot_id: &'a str,
}

pub(crate) fn render(d: &DumpInput<'_>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_dump(&mut out, d);
    out
}

fn write_dump(out: &mut String, d: &DumpInput<'_>) -> std::fmt::Result {
    let s = d.status;
    writeln!(out, "abupdated")?;
    writeln!(out, "  state: {} ({})", s.state, s.state.as_i32())?;
    writeln!(
        out,
        "  progress: {:.1}% ({} of {} bytes)",
        s.progress() * 100.0,
        s.done,
        s.total
    )?;
    match s.error() {
        Some(e) => writeln!(out, "  last error: {}: {}", e.code, e.message)?,
        None => writeln!(out, "  last error: none")?,
    }
    if let Some(url) = d.url {
        writeln!(out, "  payload: {url}")?;
    }
    let slot = |n: Option<u32>| n.map_or("unknown".to_owned(), |n| n.to_string());
    writeln!(
        out,
        "  current slot: {}, target slot: {}",
        slot(s.current_slot),
        slot(s.target_slot)
    )?;
    match &d.slots {
        Ok(info) => {
            writeln!(out, "  slots (active {}):", info.active)?;
            for st in &info.slots {
                writeln!(
                    out,
                    "    {} {}: bootable={} successful={} tries={}",
                    st.slot, st.suffix, st.bootable, st.successful, st.tries_remaining
                )?;
            }
        }
        Err(e) => writeln!(out, "  slots: unavailable: {e}")?,
    }
    match &d.floors {
        Ok(floors) => {
            let list: Vec<String> = floors
                .iter()
                .map(|f| format!("{}={}", f.location, f.index))
                .collect();
            writeln!(out, "  rollback floors: {}", list.join(" "))?;
        }
        Err(e) => writeln!(out, "  rollback floors: unavailable: {e}")?,
    }
    writeln!(out, "  callbacks: {}", d.listeners)?;
    let uids: Vec<String> = d.allowed_uids.iter().map(u32::to_string).collect();
    writeln!(out, "  allowed uids: {}", uids.join(" "))?;
    writeln!(out, "  state file: {}", d.state_file.display())?;
    writeln!(out, "  boot id: {}", d.boot_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::backend::SlotState;
    use crate::service::status::State;

    #[test]
    fn dump_names_state_slots_and_error() {
        let status = Status {
            state: State::Idle,
            error_code: crate::ErrorCode::SourceHash,
            error_message: "system differs".to_owned(),
            current_slot: Some(0),
            ..Status::default()
        };
        let slots = SlotInfo {
            current: 0,
            active: 0,
            slots: vec![SlotState {
                slot: 0,
                suffix: "_a".to_owned(),
                bootable: true,
                successful: true,
                tries_remaining: 0,
            }],
        };
        let text = render(&DumpInput {
            status: &status,
            url: None,
            slots: Ok(slots),
            floors: Err(crate::err!(Unsupported, "no AVB")),
            listeners: 2,
            allowed_uids: &[0, 1000],
            state_file: Path::new("/data/misc/abupdate/status"),
            boot_id: "b1",
        });
        for want in [
            "state: IDLE (0)",
            "last error: 25 (SOURCE_HASH, verification failed): system differs",
            "0 _a: bootable=true successful=true tries=0",
            "rollback floors: unavailable: no AVB",
            "callbacks: 2",
            "allowed uids: 0 1000",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
    }
}
