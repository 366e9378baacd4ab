//! snapuserd's control protocol, sans I/O: requests as the bytes libsnapshot's
//! `SnapuserdClient` sends, responses parsed into typed answers.
//!
//! The facts (AOSP `fs_mgr/libsnapshot/snapuserd/`): a `SOCK_STREAM` unix socket
//! (`/dev/socket/snapuserd`); each request is one `send` of the bare text, `<cmd>[,<arg>]`, with
//! no terminator or length; each answer is one `recv` of at most `PACKET_SIZE` (512) bytes,
//! also bare text (`snapuserd_client.cpp` `Sendmsg`/`Receivemsg`,
//! `include/snapuserd/snapuserd_client.h` `PACKET_SIZE`). The server
//! (`user-space-merge/snapuserd_server.cpp` `Receivemsg`) splits a request at `,` and answers:
//! `query` with `active` or `passive`; `initiate_merge,<misc_name>`, `delete,<misc_name>` and
//! `supports,<feature>` with `success` or `fail`; `merge_percent` with C++'s
//! `std::to_string(double)` of the percentage over every partition (`"42.500000"`);
//! `getstatus,<misc_name>` with the handler's state (`snapuserd_transitions.cpp`
//! `GetMergeStatus`); `detach` with nothing (the daemon stops listening). `delete,<misc_name>`
//! is libsnapshot's `WaitForDeviceDelete` (`snapuserd_client.cpp:185-197`, only `success`
//! counts), sent once a merged snapshot's dm-user table is replaced: the server answers
//! `success` once the handler ended, also for a name it has no handler for
//! (`handler_manager.cpp:111-132` `DeleteHandler`).
//!
//! Mapping a snapshot's view (libsnapshot `snapshot.cpp` `MapDmUserCow`, userspace snapshots):
//! `init,<misc_name>,<cow_device>,<backing_device>,<base_path_merge>` (the word is `init`, five
//! fields: `snapuserd_client.cpp` `InitDmUserCow`; the server refuses any other count with
//! `fail`, `snapuserd_server.cpp` `Receivemsg`) is answered `success,<sectors>`, the sectors
//! being the size of `base_path_merge` (`snapuserd_core.cpp` `GetNumSectors`), or `fail` (a
//! handler of that name already exists: `handler_manager.cpp` `AddHandler`; or the COW does
//! not parse); then `start,<misc_name>` (`AttachDmUser`) is answered `success` or `fail`.

use thiserror::Error;

/// The largest answer snapuserd sends (and the one `recv` libsnapshot reads it with).
pub const PACKET_SIZE: usize = 512;

/// What went wrong reading an answer or forming a request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A misc name or device path that would not survive the server's split at `,` (or is
    /// empty, or makes the request too long for one packet).
    #[error("{0:?} is not a name or path snapuserd can be sent")]
    BadName(String),
    /// An answer that is not one this request can have.
    #[error("snapuserd answered {request} with {answer:?}")]
    Unexpected {
        /// The request's command.
        request: &'static str,
        /// The answer, lossily decoded and cut short.
        answer: String,
    },
}

/// A request to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `query`: whether this daemon is the active one.
    Query,
    /// `initiate_merge,<misc_name>`: start (or resume) merging one snapshot.
    InitiateMerge(&'a str),
    /// `merge_percent`: the merge's progress over every partition, 0 to 100.
    MergePercent,
    /// `getstatus,<misc_name>`: one snapshot's merge state.
    GetStatus(&'a str),
    /// `delete,<misc_name>`: wait for the daemon to let go of a handler whose dm-user control
    /// device is gone.
    Delete(&'a str),
    /// `detach`: the daemon stops listening and exits once its handlers are done. No answer.
    Detach,
    /// `init,<misc_name>,<cow>,<backing>,<base_path_merge>`: make a handler serving the
    /// dm-user device `misc_name` from the COW device `cow` over the source device `backing`,
    /// merging into `base_path_merge`.
    Init {
        /// The dm-user control device's name (`/dev/dm-user/<misc_name>`).
        misc_name: &'a str,
        /// The COW device's path.
        cow: &'a str,
        /// The source device: what the COW's copy ops and unchanged blocks read.
        backing: &'a str,
        /// The device the merge writes (the snapshot's base).
        base_merge: &'a str,
    },
    /// `start,<misc_name>`: the handler attaches to its dm-user control device and serves it.
    Start(&'a str),
}

impl Request<'_> {
    /// The command word, for messages.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Query => "query",
            Request::InitiateMerge(_) => "initiate_merge",
            Request::MergePercent => "merge_percent",
            Request::GetStatus(_) => "getstatus",
            Request::Delete(_) => "delete",
            Request::Detach => "detach",
            Request::Init { .. } => "init",
            Request::Start(_) => "start",
        }
    }

    /// The bytes sent for this request.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let fields: Vec<&str> = match *self {
            Request::InitiateMerge(n)
            | Request::GetStatus(n)
            | Request::Delete(n)
            | Request::Start(n) => vec![n],
            Request::Init {
                misc_name,
                cow,
                backing,
                base_merge,
            } => vec![misc_name, cow, backing, base_merge],
            Request::Query | Request::MergePercent | Request::Detach => Vec::new(),
        };
        let mut out = self.command().as_bytes().to_vec();
        for field in fields {
            // The server splits at ','; a field with one (or a NUL, or nothing) would shift
            // the others or name another handler.
            if field.is_empty() || field.bytes().any(|b| b == b',' || b == 0) {
                return Err(ProtocolError::BadName(field.to_owned()));
            }
            out.push(b',');
            out.extend_from_slice(field.as_bytes());
            // The server reads one recv of at most PACKET_SIZE bytes: the rest would be cut.
            if out.len() > PACKET_SIZE {
                return Err(ProtocolError::BadName(field.to_owned()));
            }
        }
        Ok(out)
    }

    /// Whether the daemon answers this request.
    pub fn answered(&self) -> bool {
        !matches!(self, Request::Detach)
    }
}

/// Which daemon answered `query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonState {
    /// The daemon that takes requests.
    Active,
    /// A first-stage daemon being replaced by the second-stage one: not to be used.
    Passive,
}

/// One snapshot's merge state, as `getstatus` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMergeStatus {
    /// `snapshot`: served, not merging (not initiated, or the daemon restarted during a merge
    /// and waits to be asked to resume it).
    Snapshot,
    /// `snapshot-merge`: merging, or queued to.
    Merging,
    /// `snapshot-merge-complete`.
    Complete,
    /// `snapshot-merge-failed` (also the answer for a name the daemon has no handler for).
    Failed,
}

fn text(answer: &[u8]) -> String {
    let cut = &answer[..answer.len().min(64)];
    String::from_utf8_lossy(cut).into_owned()
}

fn unexpected(request: &'static str, answer: &[u8]) -> ProtocolError {
    ProtocolError::Unexpected {
        request,
        answer: text(answer),
    }
}

/// The answer to `initiate_merge`, `delete` or `start`: whether it succeeded.
pub fn parse_ack(request: &Request, answer: &[u8]) -> Result<bool, ProtocolError> {
    match answer {
        b"success" => Ok(true),
        b"fail" => Ok(false),
        _ => Err(unexpected(request.command(), answer)),
    }
}

/// The answer to `init`: the sectors of the device the handler serves (`success,<sectors>`),
/// or `None` for `fail`. libsnapshot's `InitDmUserCow` reads the number with `ParseUint` and
/// takes 0 as a failure: so does this.
pub fn parse_init(answer: &[u8]) -> Result<Option<u64>, ProtocolError> {
    if answer == b"fail" {
        return Ok(None);
    }
    let sectors = answer
        .strip_prefix(b"success,")
        .filter(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
        .filter(|n| *n > 0);
    match sectors {
        Some(n) => Ok(Some(n)),
        None => Err(unexpected("init", answer)),
    }
}

/// The answer to `query`.
pub fn parse_query(answer: &[u8]) -> Result<DaemonState, ProtocolError> {
    match answer {
        b"active" => Ok(DaemonState::Active),
        // libsnapshot looks for "passive" anywhere in the answer.
        a if a.windows(7).any(|w| w == b"passive") => Ok(DaemonState::Passive),
        _ => Err(unexpected("query", answer)),
    }
}

/// The answer to `getstatus`.
pub fn parse_status(answer: &[u8]) -> Result<SnapshotMergeStatus, ProtocolError> {
    match answer {
        b"snapshot" => Ok(SnapshotMergeStatus::Snapshot),
        b"snapshot-merge" => Ok(SnapshotMergeStatus::Merging),
        b"snapshot-merge-complete" => Ok(SnapshotMergeStatus::Complete),
        b"snapshot-merge-failed" => Ok(SnapshotMergeStatus::Failed),
        _ => Err(unexpected("getstatus", answer)),
    }
}

/// The answer to `merge_percent`: a finite percentage from 0 to 100 (`std::to_string` of a
/// double: digits, a point, six decimals; accepted in any plain decimal form).
pub fn parse_percent(answer: &[u8]) -> Result<f64, ProtocolError> {
    let bad = || unexpected("merge_percent", answer);
    let s = std::str::from_utf8(answer).map_err(|_| bad())?;
    // Only digits and one point: no "inf", "nan", exponents or signs slip through `parse`.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let v: f64 = s.parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&v) {
        return Err(bad());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_libsnapshots_strings() {
        let cases = [
            (Request::Query, "query"),
            (
                Request::InitiateMerge("system_b"),
                "initiate_merge,system_b",
            ),
            (Request::MergePercent, "merge_percent"),
            (Request::GetStatus("vendor_b"), "getstatus,vendor_b"),
            (Request::Delete("system_b"), "delete,system_b"),
            (Request::Detach, "detach"),
            (Request::Start("system_b"), "start,system_b"),
            (
                Request::Init {
                    misc_name: "system_b",
                    cow: "/dev/block/mapper/system_b-cow",
                    backing: "/dev/block/mapper/system_b-src",
                    base_merge: "/dev/block/mapper/system_b-base",
                },
                "init,system_b,/dev/block/mapper/system_b-cow,/dev/block/mapper/system_b-src,\
                 /dev/block/mapper/system_b-base",
            ),
        ];
        for (req, want) in cases {
            assert_eq!(req.encode().unwrap(), want.as_bytes());
        }
        assert!(!Request::Detach.answered());
        assert!(Request::Query.answered());
    }

    #[test]
    fn names_the_server_would_split_are_refused() {
        for bad in ["", "system_b,vendor_b", "a\0b"] {
            assert_eq!(
                Request::GetStatus(bad).encode(),
                Err(ProtocolError::BadName(bad.into()))
            );
        }
        let long = "x".repeat(PACKET_SIZE);
        assert!(Request::InitiateMerge(&long).encode().is_err());
        let fits = "x".repeat(PACKET_SIZE - "initiate_merge,".len());
        assert!(Request::InitiateMerge(&fits).encode().is_ok());
        let init = |cow: &'static str, base: &'static str| Request::Init {
            misc_name: "system_b",
            cow,
            backing: "/dev/block/dm-3",
            base_merge: base,
        };
        assert_eq!(
            init("/dev/a,b", "/dev/c").encode(),
            Err(ProtocolError::BadName("/dev/a,b".into()))
        );
        assert_eq!(
            init("/dev/a", "").encode(),
            Err(ProtocolError::BadName(String::new()))
        );
        let long: &'static str = Box::leak("x".repeat(PACKET_SIZE).into_boxed_str());
        assert!(init("/dev/a", long).encode().is_err());
        assert!(Request::Start("a\0").encode().is_err());
    }

    #[test]
    fn init_answers_are_success_and_sectors_or_fail() {
        assert_eq!(parse_init(b"success,2048"), Ok(Some(2048)));
        assert_eq!(parse_init(b"fail"), Ok(None));
        for bad in [
            &b"success"[..],
            b"success,",
            b"success,0",
            b"success,-1",
            b"success,12x",
            b"success,99999999999999999999999",
            b"success,2048\n",
            b"",
        ] {
            assert!(parse_init(bad).is_err(), "{bad:?}");
        }
        let start = Request::Start("system_b");
        assert_eq!(parse_ack(&start, b"success"), Ok(true));
        assert_eq!(parse_ack(&start, b"fail"), Ok(false));
    }

    #[test]
    fn answers_parse_to_their_types() {
        let req = Request::InitiateMerge("system_b");
        assert_eq!(parse_ack(&req, b"success"), Ok(true));
        assert_eq!(parse_ack(&req, b"fail"), Ok(false));
        assert!(parse_ack(&req, b"success\n").is_err());
        assert!(parse_ack(&req, b"").is_err());
        assert_eq!(parse_query(b"active"), Ok(DaemonState::Active));
        assert_eq!(parse_query(b"passive"), Ok(DaemonState::Passive));
        assert!(parse_query(b"fail").is_err());
        for (a, s) in [
            ("snapshot", SnapshotMergeStatus::Snapshot),
            ("snapshot-merge", SnapshotMergeStatus::Merging),
            ("snapshot-merge-complete", SnapshotMergeStatus::Complete),
            ("snapshot-merge-failed", SnapshotMergeStatus::Failed),
        ] {
            assert_eq!(parse_status(a.as_bytes()), Ok(s));
        }
        assert!(parse_status(b"snapshot-merge-completed").is_err());
        assert!(parse_status(&[0xff; 600]).is_err());
    }

    #[test]
    fn percentages_are_cpp_to_string_doubles_from_0_to_100() {
        assert_eq!(parse_percent(b"0.000000"), Ok(0.0));
        assert_eq!(parse_percent(b"42.500000"), Ok(42.5));
        assert_eq!(parse_percent(b"100.000000"), Ok(100.0));
        assert_eq!(parse_percent(b"7"), Ok(7.0));
        for bad in [
            &b""[..],
            b"-1.000000",
            b"100.000001",
            b"nan",
            b"inf",
            b"1e2",
            b"1.2.3",
            b" 5",
            b"\xff",
        ] {
            assert!(parse_percent(bad).is_err(), "{bad:?}");
        }
        let err = parse_percent(b"garbage").unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapuserd answered merge_percent with \"garbage\""
        );
    }
}
