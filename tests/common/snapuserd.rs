//! A stand-in for snapuserd: a host has no dm-user, so no real snapuserd runs here. It speaks
//! AOSP's control protocol (AOSP system/core `fs_mgr/libsnapshot/snapuserd/`):
//!
//! - a `SOCK_STREAM` unix socket; each request is read with one `recv` of at most 512 bytes
//!   and split at `,` (`user-space-merge/snapuserd_server.cpp:100-107` `Recv`, `:114-118`
//!   `Receivemsg`/`Parsemsg`; `include/snapuserd/snapuserd_client.h:27` `PACKET_SIZE`);
//! - `query` → `active` (`snapuserd_server.cpp:163-173`); `initiate_merge,<name>` →
//!   `success`/`fail` (`:198-209`); `merge_percent` → `std::to_string(double)`, the mean over
//!   the partitions (`:210-212`, `handler_manager.cpp:273-293`); `getstatus,<name>` → the
//!   handler's state, `snapshot-merge-failed` for an unknown name (`:213-224`,
//!   `snapuserd_transitions.cpp:430-497` `GetMergeStatus`); `delete,<name>` → `success` once
//!   the handler is gone, also for a name without one, `fail` for a malformed message
//!   (`:174-184`, `handler_manager.cpp:111-132` `DeleteHandler`: the handler removed and
//!   joined; a merged one still counts as 100% in `merge_percent`, `:273-302`);
//!   `detach` → no answer, the daemon stops (`:185-188`);
//!   `init,<misc>,<cow>,<backing>,<base>` (exactly five fields) → `success,<sectors>`, the
//!   sectors being the size of `<base>` (`snapuserd_core.cpp` `GetNumSectors`: the size of
//!   `base_path_merge`), `fail` for a name that already has a handler (`handler_manager.cpp`
//!   `AddHandler`); `start,<misc>` → `success`, `fail` for an unknown or started handler
//!   (`StartHandler`), after which the dm-user device serves the view: here the stand-in
//!   writes it, computed by AOSP's `applycow --mode merge` from the COW device over the base
//!   device, into the file the test's mapper made as the device (`serve_views_at`);
//!   anything else → `fail` and the connection closed (`:236-239`).
//!
//! And it really merges: when asked to, it runs AOSP's `applycow --mode merge` (libsnapshot_cow's
//! reader, ops in merge order) over the base as it reads through the partition's extents in
//! `super.img`, then writes the result back over those extents in steps, the percentage going
//! up with each. Stopped and started again (a daemon restart), it reports `snapshot` for a
//! merge it had not finished, as snapuserd does until it is asked to resume.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One snapshot the stand-in serves: its base as extents (byte offset, length) of `file`, its
/// COW as a file, its size once merged.
#[derive(Clone, Debug)]
pub struct Handler {
    pub name: String,
    pub file: PathBuf,
    pub extents: Vec<(u64, u64)>,
    pub cow: PathBuf,
    pub size: u64,
}

/// How the stand-in misbehaves, for the failure tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As snapuserd.
    Normal,
    /// `initiate_merge` answers `success`, then the merge fails at once (nothing written):
    /// `getstatus` says `snapshot-merge-failed`.
    MergeFails,
    /// `initiate_merge` answers `fail`.
    Refuses,
    /// Every answer after `query` is garbage.
    Garbage,
    /// Answers `query`, then closes every connection at the next request.
    Disconnects,
    /// Answers `query`, then never again.
    Hangs,
    /// `init` answers `fail` (a COW it cannot parse).
    RefusesInit,
}

/// A dm-user device's handler made by `init`.
#[derive(Clone, Debug)]
struct View {
    cow: PathBuf,
    base: PathBuf,
    started: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum State {
    #[default]
    Snapshot,
    Merging(f64),
    Complete,
    Failed,
}

/// What the stand-in does on `delete,<name>` before it drops the handler (a VM's stand-in
/// stops serving the device); `false` answers `fail`.
pub type DeleteHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Default)]
struct Shared {
    states: HashMap<String, State>,
    /// Handlers deleted after their merge completed (`num_partitions_merge_complete_`).
    gone_merged: u32,
    on_delete: Option<DeleteHook>,
    /// `initiate_merge` requests per name.
    initiated: HashMap<String, u32>,
    deleted: Vec<String>,
    detached: bool,
    /// `initiate <name>`, `complete <name>`, `delete <name>`, `init ...`, `start <name>` and
    /// `detach`, in order.
    events: Vec<String>,
    /// The handlers `init` made, by misc name.
    views: HashMap<String, View>,
    /// Where the dm-user devices are, as files named by misc name.
    serve_dir: Option<PathBuf>,
}

pub struct StandIn {
    socket: PathBuf,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Reads the partition's bytes through its extents.
fn read_extents(h: &Handler) -> Vec<u8> {
    let f = std::fs::File::open(&h.file).unwrap();
    let mut out = Vec::new();
    for &(offset, len) in &h.extents {
        let mut b = vec![0u8; len as usize];
        f.read_exact_at(&mut b, offset).unwrap();
        out.extend_from_slice(&b);
    }
    out
}

/// Writes `data[at..at + len]` of the partition through its extents.
fn write_extents(h: &Handler, data: &[u8], at: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&h.file)
        .unwrap();
    let (mut pos, end) = (0u64, at + data.len() as u64);
    for &(offset, len) in &h.extents {
        let (lo, hi) = (pos.max(at), (pos + len).min(end));
        if lo < hi {
            let slice = &data[(lo - at) as usize..(hi - at) as usize];
            f.write_all_at(slice, offset + (lo - pos)).unwrap();
        }
        pos += len;
    }
    f.sync_all().unwrap();
}

/// The merged partition: AOSP's `applycow --mode merge` over the base, computed once and
/// kept beside the socket (snapuserd keeps its progress in the COW: a restarted daemon
/// resumes, it does not merge over a half-merged base).
fn merged(h: &Handler, scratch: &Path) -> Vec<u8> {
    let kept = scratch.join(format!("{}.merged", h.name));
    if let Ok(b) = std::fs::read(&kept) {
        return b;
    }
    let base = scratch.join(format!("{}.base", h.name));
    let out = scratch.join(format!("{}.merged.tmp", h.name));
    let mut bytes = read_extents(h);
    bytes.truncate(h.size as usize);
    std::fs::write(&base, &bytes).unwrap();
    let tool = super::shared::aosp_tool("applycow");
    let result = Command::new(tool)
        .args(["--mode", "merge", "--size", &h.size.to_string()])
        .arg(&base)
        .arg(&h.cow)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "applycow: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&out, &kept).unwrap();
    std::fs::read(&kept).unwrap()
}

impl StandIn {
    /// Listens at `socket` for `handlers`, keeping its files in `scratch`; `merged` says
    /// which were merged before a restart (snapuserd reads that from the COW's header).
    pub fn start(
        socket: &Path,
        scratch: &Path,
        handlers: Vec<Handler>,
        mode: Mode,
        merged: &[&str],
    ) -> StandIn {
        StandIn::start_with(
            socket,
            scratch,
            handlers,
            mode,
            merged,
            Duration::from_millis(30),
        )
    }

    /// [`StandIn::start`] merging in 20 steps of `step` each.
    pub fn start_with(
        socket: &Path,
        scratch: &Path,
        handlers: Vec<Handler>,
        mode: Mode,
        merged: &[&str],
        step: Duration,
    ) -> StandIn {
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut shared = Shared::default();
        for h in &handlers {
            let st = if merged.contains(&h.name.as_str()) {
                State::Complete
            } else {
                State::Snapshot
            };
            shared.states.insert(h.name.clone(), st);
        }
        let shared = Arc::new(Mutex::new(shared));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        std::fs::create_dir_all(scratch).unwrap();
        let scratch = scratch.to_owned();
        let accept = std::thread::spawn(move || {
            let handlers = Arc::new(handlers);
            let mut threads = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (sh, st, hs) = (sh.clone(), st.clone(), handlers.clone());
                        let scratch = scratch.clone();
                        threads.push(std::thread::spawn(move || {
                            serve(conn, &sh, &st, &hs, mode, &scratch, step)
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
                if sh.lock().unwrap().detached {
                    break;
                }
            }
            st.store(true, Ordering::SeqCst);
            for t in threads {
                let _ = t.join();
            }
        });
        StandIn {
            socket: socket.to_owned(),
            shared,
            stop,
            threads: vec![accept],
        }
    }

    /// How often `initiate_merge` named `name`.
    pub fn initiated(&self, name: &str) -> u32 {
        *self
            .shared
            .lock()
            .unwrap()
            .initiated
            .get(name)
            .unwrap_or(&0)
    }

    /// Whether a client sent `detach`.
    pub fn detached(&self) -> bool {
        self.shared.lock().unwrap().detached
    }

    /// The names `delete` was sent for.
    pub fn deleted(&self) -> Vec<String> {
        self.shared.lock().unwrap().deleted.clone()
    }

    /// Runs `hook` at each `delete,<name>` before the handler goes.
    pub fn on_delete(&self, hook: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.shared.lock().unwrap().on_delete = Some(Arc::new(hook));
    }

    /// What happened, in order: `initiate <name>`, `complete <name>`, `delete <name>`.
    pub fn events(&self) -> Vec<String> {
        self.shared.lock().unwrap().events.clone()
    }

    /// Adds `event` to [`StandIn::events`] (a test's mapper records its steps among ours).
    pub fn note(&self, event: String) {
        self.shared.lock().unwrap().events.push(event);
    }

    /// Serves each started view into the file `dir/<misc_name>` (the test mapper's dm-user
    /// device).
    pub fn serve_views_at(&self, dir: &Path) {
        self.shared.lock().unwrap().serve_dir = Some(dir.to_owned());
    }

    /// The handlers `init` made and `delete` has not removed.
    pub fn views(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.lock().unwrap().views.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether `name` reports its merge complete.
    pub fn complete(&self, name: &str) -> bool {
        self.shared.lock().unwrap().states.get(name) == Some(&State::Complete)
    }

    /// Stops the daemon (its merges stop where they are) and removes its socket.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(
    mut conn: UnixStream,
    shared: &Arc<Mutex<Shared>>,
    stop: &Arc<AtomicBool>,
    handlers: &Arc<Vec<Handler>>,
    mode: Mode,
    scratch: &Path,
    step: Duration,
) {
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut merges = Vec::new();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        let n = match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => continue,
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let parts: Vec<&str> = msg.split(',').collect();
        let cmd = parts[0];
        if cmd != "query" {
            match mode {
                Mode::Garbage => {
                    let _ = conn.write_all(b"\xffgarbage\x00");
                    continue;
                }
                Mode::Disconnects => break,
                Mode::Hangs => continue,
                _ => {}
            }
        }
        if (cmd, parts.len()) == ("delete", 2) {
            let answer = delete(shared, parts[1]);
            if conn.write_all(answer.as_bytes()).is_err() {
                break;
            }
            continue;
        }
        if cmd == "start" && parts.len() == 2 {
            let answer = start_view(shared, parts[1], scratch);
            if conn.write_all(answer.as_bytes()).is_err() {
                break;
            }
            continue;
        }
        let mut sh = shared.lock().unwrap();
        let answer: Option<String> = match (cmd, parts.len()) {
            ("query", _) => Some("active".into()),
            ("init", 5) => {
                let name = parts[1];
                sh.events.push(format!("init {}", parts[1..].join(" ")));
                let size = std::fs::metadata(parts[4]).map(|m| m.len());
                match size {
                    _ if mode == Mode::RefusesInit || sh.views.contains_key(name) => {
                        Some("fail".into())
                    }
                    Ok(size) if size > 0 => {
                        sh.views.insert(
                            name.into(),
                            View {
                                cow: parts[2].into(),
                                base: parts[4].into(),
                                started: false,
                            },
                        );
                        Some(format!("success,{}", size / 512))
                    }
                    _ => Some("fail".into()),
                }
            }
            ("init", _) | ("start", _) => Some("fail".into()),
            ("initiate_merge", 2) => {
                let name = parts[1];
                *sh.initiated.entry(name.into()).or_default() += 1;
                sh.events.push(format!("initiate {name}"));
                match (sh.states.get(name).copied(), mode) {
                    (None, _) | (_, Mode::Refuses) => Some("fail".into()),
                    (Some(State::Snapshot), Mode::MergeFails) => {
                        sh.states.insert(name.into(), State::Failed);
                        Some("success".into())
                    }
                    (Some(State::Snapshot), _) => {
                        sh.states.insert(name.into(), State::Merging(0.0));
                        let h = handlers.iter().find(|h| h.name == name).unwrap().clone();
                        let (sh2, st2) = (shared.clone(), stop.clone());
                        let scratch = scratch.to_owned();
                        merges.push(std::thread::spawn(move || {
                            run_merge(&h, &sh2, &st2, &scratch, step)
                        }));
                        Some("success".into())
                    }
                    // Already merging or merged: the handler takes it as a no-op.
                    (Some(_), _) => Some("success".into()),
                }
            }
            ("merge_percent", _) => {
                let gone = f64::from(sh.gone_merged);
                let n = (sh.states.len() as f64 + gone).max(1.0);
                let sum: f64 = gone * 100.0
                    + sh.states
                        .values()
                        .map(|s| match s {
                            State::Complete => 100.0,
                            State::Merging(p) => *p,
                            _ => 0.0,
                        })
                        .sum::<f64>();
                Some(format!("{:.6}", sum / n))
            }
            ("getstatus", 2) => Some(
                match sh.states.get(parts[1]) {
                    Some(State::Snapshot) => "snapshot",
                    Some(State::Merging(_)) => "snapshot-merge",
                    Some(State::Complete) => "snapshot-merge-complete",
                    Some(State::Failed) | None => "snapshot-merge-failed",
                }
                .into(),
            ),
            ("getstatus", _) => Some("snapshot-merge-failed".into()),
            ("delete", _) => Some("fail".into()),
            ("detach", _) => {
                sh.detached = true;
                sh.events.push("detach".into());
                None
            }
            _ => {
                let _ = conn.write_all(b"fail");
                break;
            }
        };
        drop(sh);
        match answer {
            Some(a) => {
                if conn.write_all(a.as_bytes()).is_err() {
                    break;
                }
            }
            None => break,
        }
    }
    for m in merges {
        let _ = m.join();
    }
}

/// `delete,<name>`: the hook, then the handler removed (a name without one: nothing to do).
fn delete(shared: &Arc<Mutex<Shared>>, name: &str) -> &'static str {
    let hook = {
        let mut sh = shared.lock().unwrap();
        sh.deleted.push(name.into());
        sh.events.push(format!("delete {name}"));
        sh.on_delete.clone()
    };
    if let Some(hook) = hook {
        if !hook(name) {
            return "fail";
        }
    }
    let mut sh = shared.lock().unwrap();
    if sh.states.remove(name) == Some(State::Complete) {
        sh.gone_merged += 1;
    }
    sh.views.remove(name);
    "success"
}

/// `start,<name>`: the view served (written into the dm-user device's file), `fail` for a
/// handler `init` did not make or one started already.
fn start_view(shared: &Arc<Mutex<Shared>>, name: &str, scratch: &Path) -> &'static str {
    let (view, dir) = {
        let mut sh = shared.lock().unwrap();
        sh.events.push(format!("start {name}"));
        let dir = sh.serve_dir.clone();
        match sh.views.get_mut(name) {
            Some(v) if !v.started => {
                v.started = true;
                (v.clone(), dir)
            }
            _ => return "fail",
        }
    };
    let Some(dir) = dir else { return "success" };
    let size = std::fs::metadata(&view.base).unwrap().len();
    let handler = Handler {
        name: format!("view-{name}"),
        file: view.base.clone(),
        extents: vec![(0, size)],
        cow: view.cow.clone(),
        size,
    };
    let _ = std::fs::remove_file(scratch.join(format!("{}.merged", handler.name)));
    std::fs::write(dir.join(name), merged(&handler, scratch)).unwrap();
    "success"
}

/// The merge of one handler: the merged partition computed by applycow, written over the
/// base in 20 steps; stops where it is when the daemon stops.
fn run_merge(
    h: &Handler,
    shared: &Arc<Mutex<Shared>>,
    stop: &Arc<AtomicBool>,
    scratch: &Path,
    step: Duration,
) {
    let new = merged(h, scratch);
    let steps = 20u64;
    let chunk = (new.len() as u64).div_ceil(steps);
    for i in 0..steps {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let at = (i * chunk).min(new.len() as u64);
        let end = ((i + 1) * chunk).min(new.len() as u64);
        write_extents(h, &new[at as usize..end as usize], at);
        let p = (i + 1) as f64 * 100.0 / steps as f64;
        match shared.lock().unwrap().states.get_mut(&h.name) {
            Some(state) => *state = State::Merging(p.min(99.9)),
            // Deleted mid-merge: the handler is gone.
            None => return,
        }
        std::thread::sleep(step);
    }
    let mut sh = shared.lock().unwrap();
    if !sh.states.contains_key(&h.name) {
        return;
    }
    sh.states.insert(h.name.clone(), State::Complete);
    sh.events.push(format!("complete {}", h.name));
}
