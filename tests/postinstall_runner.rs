//! The postinstall runner against real processes (`/bin/sh` scripts): the argv and status
//! descriptor update_engine gives the program, progress lines, failure, the timeout, suspend
//! (the process group stopped: its output stalls), resume and cancel
//! through the service's own `Control`. Mounting is proven in the VM test (tests/vm), which
//! has the privileges and a kernel of its own.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use abupdate::engine::Observer;
use abupdate::postinstall::runner;
use abupdate::service::control::Control;
use abupdate::ErrorCode;

/// The engine's observer as the service makes it: suspend and cancel from a [`Control`].
struct Controlled(Control);

impl Observer for Controlled {
    fn is_cancelled(&self) -> bool {
        self.0.pause_point().is_err()
    }
    fn is_suspended(&self) -> bool {
        self.0.is_suspended()
    }
    fn is_cancelled_now(&self) -> bool {
        self.0.is_cancelled()
    }
}

fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("postinst");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn args() -> Vec<String> {
    vec!["1".into(), runner::STATUS_FD.to_string()]
}

fn run(program: &Path, timeout: Duration, control: &Control) -> (abupdate::Result<()>, Vec<f64>) {
    let seen = Mutex::new(Vec::new());
    let result = runner::run(
        program,
        &args(),
        timeout,
        &Controlled(control.clone()),
        &mut |f| seen.lock().unwrap().push(f),
    );
    (result, seen.into_inner().unwrap())
}

#[test]
fn progress_lines_and_argv_as_update_engine_passes_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argv");
    let program = script(
        dir.path(),
        &format!(
            "echo \"$@\" > {out}\n\
             echo 'global_progress 0.25' >&$2\n\
             echo 'not progress' >&$2\n\
             printf 'global_progress 0.5\\nglobal_progr' >&$2\n\
             printf 'ess 1\\n' >&$2\n\
             echo 'a line on stdout'; echo 'one on stderr' >&2",
            out = out.display()
        ),
    );
    let (result, seen) = run(&program, Duration::from_secs(30), &Control::new());
    result.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "1 3\n");
    assert_eq!(seen, [0.25, 0.5, 1.0]);
}

#[test]
fn a_failing_program_is_44_with_its_last_output() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(dir.path(), "echo 'cannot compile apps' >&2\nexit 7");
    let (result, _) = run(&program, Duration::from_secs(30), &Control::new());
    let e = result.unwrap_err();
    assert_eq!(e.code, ErrorCode::PostinstallFailed, "{e}");
    assert!(e.message.contains("exited with status 7"), "{e}");
    assert!(e.message.contains("cannot compile apps"), "{e}");
    let missing = dir.path().join("absent");
    let (result, _) = run(&missing, Duration::from_secs(30), &Control::new());
    assert_eq!(result.unwrap_err().code, ErrorCode::PostinstallFailed);
}

/// State letter of /proc/PID/stat (after the command in parentheses).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Whether the program's group is stopped: its tick count does not move for 1 s. `/proc`'s
/// state letter cannot say it alone: dash starts commands with vfork, and a parent whose
/// child was stopped between vfork and exec waits in state `D`, not `T`, until resumed.
fn stalls(tick_file: &Path) -> bool {
    let before = ticks(tick_file);
    std::thread::sleep(Duration::from_secs(1));
    ticks(tick_file) == before
}

fn read_pid(path: &Path) -> u32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hung_program_is_killed_at_the_timeout_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let program = script(
        dir.path(),
        &format!("sleep 60 &\necho $! > {}\nwait", pid_file.display()),
    );
    let start = Instant::now();
    let (result, _) = run(&program, Duration::from_millis(500), &Control::new());
    let took = start.elapsed();
    let e = result.unwrap_err();
    assert_eq!(e.code, ErrorCode::PostinstallTimeout, "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The program's own child died with it (gone, or a zombie awaiting its new parent).
    let sleeper = read_pid(&pid_file);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        matches!(proc_state(sleeper), None | Some('Z')),
        "{:?}",
        proc_state(sleeper)
    );
}

/// A program that appends a line to `ticks` every 50 ms, `n` times, reporting progress.
fn ticking(dir: &Path, n: u32) -> (PathBuf, PathBuf, PathBuf) {
    let ticks = dir.join("ticks");
    let pid_file = dir.join("pid");
    let program = script(
        dir,
        &format!(
            "echo $$ > {pid}\ni=0\nwhile [ $i -lt {n} ]; do\n  i=$((i + 1))\n  echo $i >> {ticks}\n  \
             echo \"global_progress 0.$i\" >&3\n  sleep 0.05\ndone",
            pid = pid_file.display(),
            ticks = ticks.display()
        ),
    );
    (program, ticks, pid_file)
}

fn ticks(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[test]
fn suspend_stops_the_program_and_resume_continues_it_off_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (program, tick_file, pid_file) = ticking(dir.path(), 20);
    let control = Control::new();
    // 20 ticks take about 1 s; the timeout is 3 s and the suspension 3.5 s: time suspended
    // must not count.
    let worker = {
        let control = control.clone();
        std::thread::spawn(move || run(&program, Duration::from_secs(3), &control))
    };
    read_pid(&pid_file); // started
    std::thread::sleep(Duration::from_millis(200));
    assert!(control.suspend());
    std::thread::sleep(Duration::from_millis(500));
    let before = ticks(&tick_file);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        ticks(&tick_file),
        before,
        "the program went on while suspended"
    );
    assert!(before < 20);
    assert!(control.resume());
    let (result, seen) = worker.join().unwrap();
    result.unwrap();
    assert_eq!(ticks(&tick_file), 20);
    assert!(seen.len() >= 2, "{seen:?}");
}

#[test]
fn cancel_kills_the_program_running_or_suspended() {
    for suspend_first in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (program, tick_file, pid_file) = ticking(dir.path(), 200);
        let control = Control::new();
        let worker = {
            let control = control.clone();
            std::thread::spawn(move || run(&program, Duration::from_secs(60), &control))
        };
        let pid = read_pid(&pid_file);
        if suspend_first {
            control.suspend();
            std::thread::sleep(Duration::from_millis(300));
            assert!(stalls(&tick_file), "not stopped while suspended");
        }
        control.cancel();
        let start = Instant::now();
        let (result, _) = worker.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(result.unwrap_err().code, ErrorCode::Cancelled);
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(proc_state(pid), None | Some('Z')), "still running");
    }
}
