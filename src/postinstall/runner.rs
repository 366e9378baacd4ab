//! Platform adapter: one postinstall program run as update_engine runs it — argv
//! `<program> <target slot number> 3`, descriptor 3 the write end of a status pipe, stdout and
//! stderr logged — in its own process group, so that a suspend stops (SIGSTOP) and a resume
//! continues (SIGCONT) everything it started, and a cancel or the timeout kills all of it.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{pipe2, Pid};

use super::progress::{parse_line, LineBuffer};
use crate::engine::Observer;
use crate::err;
use crate::error::Result;

/// The status descriptor number the program writes progress to (update_engine's
/// `kPostinstallStatusFd`).
pub const STATUS_FD: i32 = 3;

/// How long the loop waits for output before it looks at the clock, suspend and cancel.
const TICK: Duration = Duration::from_millis(100);

/// The last bytes of the program's output kept for the error message.
const OUTPUT_TAIL: usize = 1024;

/// Runs `program` with `args` until it exits, reporting each `global_progress` fraction
/// through `progress`. Ok only for exit status 0; a kill by the timeout is
/// `PostinstallTimeout` (45), a cancel `Cancelled` (38), anything else `PostinstallFailed`
/// (44). Time spent suspended does not count against `timeout`.
pub fn run(
    program: &Path,
    args: &[String],
    timeout: Duration,
    observer: &dyn Observer,
    progress: &mut dyn FnMut(f64),
) -> Result<()> {
    let shown = program.display().to_string();
    let (status_read, status_write) = pipe(&shown)?;
    let (output_read, output_write) = pipe(&shown)?;
    let output_err = output_write
        .try_clone()
        .map_err(|e| err!(PostinstallFailed, "{shown}: {e}"))?;
    let status_raw = status_write.as_raw_fd();
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(output_write))
        .stderr(Stdio::from(output_err))
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and calls only dup2 and
    // fcntl, which are async-signal-safe; it touches no memory the parent's threads share.
    unsafe {
        command.pre_exec(move || {
            if status_raw == STATUS_FD {
                // dup2 onto itself would leave close-on-exec set.
                let flags = nix::libc::fcntl(STATUS_FD, nix::libc::F_GETFD);
                if flags < 0
                    || nix::libc::fcntl(
                        STATUS_FD,
                        nix::libc::F_SETFD,
                        flags & !nix::libc::FD_CLOEXEC,
                    ) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            } else if nix::libc::dup2(status_raw, STATUS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| err!(PostinstallFailed, "starting {shown}: {e}"))?;
    // The parent's write ends go, so the pipes reach EOF once the program's side closes.
    drop(command);
    drop(status_write);
    let mut watch = Watch {
        child: &mut child,
        group: None,
        status: File::from(status_read),
        output: File::from(output_read),
        lines: LineBuffer::default(),
        output_lines: LineBuffer::default(),
        tail: Vec::new(),
        name: shown.clone(),
    };
    watch.group = Some(Pid::from_raw(
        i32::try_from(watch.child.id()).map_err(|_| err!(PostinstallFailed, "bad pid"))?,
    ));
    let result = watch.wait(timeout, observer, progress);
    // Whatever the program left running in its group would keep the partition busy. (The
    // group outlives its reaped leader only while members remain, so its id is not reused.)
    watch.signal(Signal::SIGKILL);
    watch.drain(progress);
    match result? {
        status if status.success() => Ok(()),
        status => Err(err!(
            PostinstallFailed,
            "{shown} {}{}",
            describe(status),
            watch.tail_text()
        )),
    }
}

fn pipe(what: &str) -> Result<(OwnedFd, OwnedFd)> {
    let (read, write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| err!(PostinstallFailed, "pipe for {what}: {e}"))?;
    set_nonblocking(&read).map_err(|e| err!(PostinstallFailed, "pipe for {what}: {e}"))?;
    Ok((read, write))
}

/// O_NONBLOCK on our end only: the program's end stays blocking, so a chatty program waits
/// for us instead of losing output. Through libc because nix's `fcntl` takes a `RawFd` in
/// AOSP's nix 0.28 and an `AsFd` in 0.30.
fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor `fd` keeps open for the call; no memory is passed.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above, F_SETFL with an integer argument.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended abnormally".to_owned(),
    }
}

struct Watch<'a> {
    child: &'a mut Child,
    group: Option<Pid>,
    status: File,
    output: File,
    lines: LineBuffer,
    output_lines: LineBuffer,
    tail: Vec<u8>,
    name: String,
}

impl Watch<'_> {
    fn wait(
        &mut self,
        timeout: Duration,
        observer: &dyn Observer,
        progress: &mut dyn FnMut(f64),
    ) -> Result<ExitStatus> {
        let start = Instant::now();
        let mut paused = Duration::ZERO;
        loop {
            {
                let mut fds = [
                    PollFd::new(self.status.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.output.as_fd(), PollFlags::POLLIN),
                ];
                let tick = PollTimeout::try_from(TICK).unwrap_or(PollTimeout::NONE);
                match poll(&mut fds, tick) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(err!(PostinstallFailed, "poll: {e}")),
                }
            }
            self.drain(progress);
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| err!(PostinstallFailed, "waiting for {}: {e}", self.name))?
            {
                return Ok(status);
            }
            if observer.is_cancelled_now() {
                self.kill();
                return Err(err!(
                    Cancelled,
                    "the update was cancelled during {}",
                    self.name
                ));
            }
            if observer.is_suspended() {
                let since = Instant::now();
                self.signal(Signal::SIGSTOP);
                log::info!("suspended: stopped {}", self.name);
                // Waits until the update is resumed or cancelled.
                let cancelled = observer.is_cancelled();
                self.signal(Signal::SIGCONT);
                paused += since.elapsed();
                if cancelled {
                    self.kill();
                    return Err(err!(
                        Cancelled,
                        "the update was cancelled during {}",
                        self.name
                    ));
                }
                log::info!("resumed: continued {}", self.name);
            }
            if start.elapsed().saturating_sub(paused) > timeout {
                self.kill();
                return Err(err!(
                    PostinstallTimeout,
                    "{} ran longer than {} s and was killed{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.tail_text()
                ));
            }
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(group) = self.group {
            match killpg(group, signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => log::warn!("{signal} to {}: {e}", self.name),
            }
        }
    }

    fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        // A stopped process dies of SIGKILL too; reap it.
        let _ = self.child.wait();
    }

    /// Reads what is there on both pipes without waiting.
    fn drain(&mut self, progress: &mut dyn FnMut(f64)) {
        let mut buf = [0u8; 4096];
        loop {
            match self.status.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for line in self.lines.push(&buf[..n]) {
                        if let Some(fraction) = parse_line(&line) {
                            progress(fraction);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        loop {
            match self.output.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.tail.extend_from_slice(&buf[..n]);
                    let excess = self.tail.len().saturating_sub(OUTPUT_TAIL);
                    self.tail.drain(..excess);
                    for line in self.output_lines.push(&buf[..n]) {
                        log::info!("{}: {}", self.name, crate::error::shown(&line));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn tail_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.tail);
        let last = text.trim_end().lines().last().unwrap_or("");
        if last.is_empty() {
            String::new()
        } else {
            format!("; its last output: {}", crate::error::shown(last))
        }
    }
}
