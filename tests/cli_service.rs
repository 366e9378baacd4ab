//! The `abupdate` CLI as a client of a real `abupdated` process serving RPC Binder on a unix
//! socket, over a device directory: exit codes are the status codes, files go over as
//! descriptors, and an update survives the daemon being killed half-way.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::engine::checkpoint::CheckpointStore;
use common::nginx::Nginx;
use common::ota::Ota;
use common::service::{eventually, my_uid};

const WAIT: Duration = Duration::from_secs(60);

/// A running `abupdated`, killed when dropped.
struct Daemon {
    child: Child,
    uri: String,
}

impl Daemon {
    fn start(dir: &Path, ota: &Ota, allowed_uid: u32) -> Daemon {
        Self::start_with(dir, ota, &["--allowed-uids", &allowed_uid.to_string()])
    }

    /// Starts `abupdated` on `ota`'s device with `extra` arguments.
    fn start_with(dir: &Path, ota: &Ota, extra: &[&str]) -> Daemon {
        let socket = dir.join("abupdate.sock");
        let _ = std::fs::remove_file(&socket);
        let uri = format!("unix://{}?profile=android13plus", socket.display());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("abupdated.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_abupdated"))
            .arg("--binder")
            .arg(&uri)
            .arg("--device")
            .arg(&ota.device)
            .arg("--key")
            .arg(&ota.cert)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Daemon { child, uri };
        eventually(WAIT, "abupdated serving", || {
            std::fs::read_to_string(dir.join("abupdated.log"))
                .is_ok_and(|log| log.matches("serving abupdate").count() > 0)
                && socket.exists()
        });
        daemon
    }

    /// Runs `abupdate ARGS` against this daemon.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_abupdate"))
            .args(args)
            .env("ABUPDATE_BINDER", &self.uri)
            .output()
            .unwrap()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exit code and stdout of a CLI run.
fn result(out: &Output) -> (i32, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    eprintln!("exit {code}\n{stdout}{stderr}");
    (code, stdout)
}

fn code(out: Output) -> i32 {
    result(&out).0
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_cli_drives_an_update_and_exits_with_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let daemon = Daemon::start(dir.path(), &ota, my_uid());
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"PK\x03\x04 this is no payload, nor an OTA zip").unwrap();

    let (status, out) = result(&daemon.cli(&["status"]));
    assert_eq!((status, out.trim()), (0, "IDLE"));
    assert_eq!(code(daemon.cli(&["cancel"])), 35, "nothing to cancel: busy");
    assert_eq!(code(daemon.cli(&["suspend"])), 35);
    assert_eq!(code(daemon.cli(&["verify", path(&junk)])), 21);
    assert_eq!(code(daemon.cli(&["verify", path(&ota.payload)])), 0);
    let old = ota.old_payload();
    assert_eq!(code(daemon.cli(&["verify", path(&old)])), 26, "downgrade");
    assert_eq!(
        code(daemon.cli(&["apply", "/nonexistent/payload.bin"])),
        10,
        "no such file"
    );
    assert_eq!(
        code(daemon.cli(&["apply", "--wait", "file:///nonexistent/payload.bin"])),
        10
    );
    assert_eq!(
        code(daemon.cli(&[
            "apply",
            "--wait",
            path(&ota.payload),
            "--header",
            "FILE_SIZE=1"
        ])),
        14,
        "FILE_SIZE says otherwise"
    );

    // A file goes over as a descriptor; --wait follows it to the end.
    let (status, out) = result(&daemon.cli(&[
        "apply",
        "--wait",
        "--properties",
        path(&ota.properties),
        path(&ota.payload),
    ]));
    assert_eq!(status, 0);
    assert!(out.contains("UPDATED_NEED_REBOOT"), "{out}");
    assert!(ota.slot_holds('b', "v2"));
    let (status, slots) = result(&daemon.cli(&["slots"]));
    assert_eq!(status, 0);
    assert!(slots.contains("_a: current=true active=false"), "{slots}");
    assert!(slots.contains("_b: current=false active=true bootable=true successful=false"));
    assert!(slots.contains("rollback floors: 0=1"), "{slots}");
    // The host view of the same device agrees.
    let (_, host) = result(
        &Command::new(env!("CARGO_BIN_EXE_abupdate"))
            .args(["slots", "--device", path(&ota.device)])
            .output()
            .unwrap(),
    );
    assert_eq!(host, slots);
    assert_eq!(
        code(daemon.cli(&["apply", path(&ota.payload)])),
        35,
        "applied: busy"
    );
    let (_, watched) = result(&daemon.cli(&["watch"]));
    assert_eq!(
        watched.trim(),
        "UPDATED_NEED_REBOOT",
        "nothing runs: watch returns"
    );

    assert_eq!(code(daemon.cli(&["reset"])), 0);
    let (_, slots) = result(&daemon.cli(&["slots"]));
    assert!(slots.contains("_a: current=true active=true"), "{slots}");
    assert_eq!(code(daemon.cli(&["mark-successful"])), 0);
    let (_, status) = result(&daemon.cli(&["status"]));
    assert_eq!(status.trim(), "IDLE");
}

#[test]
fn an_update_resumes_after_the_daemon_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = Nginx::start(None);
    nginx.put("payload.bin", &std::fs::read(&ota.payload).unwrap(), 0);
    let daemon = Daemon::start(dir.path(), &ota, my_uid());

    let url = nginx.slow_url("payload.bin");
    let props = path(&ota.properties);
    assert_eq!(code(daemon.cli(&["apply", "--properties", props, &url])), 0);
    eventually(WAIT, "writing", || {
        let (_, status) = result(&daemon.cli(&["status"]));
        status.starts_with("DOWNLOADING") && !status.starts_with("DOWNLOADING 0.0%")
    });
    let watcher = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .arg("watch")
        .env("ABUPDATE_BINDER", &daemon.uri)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once a checkpoint past the start is durable (under load the first one may come
    // well after the first progress report, and a kill before it leaves nothing to resume).
    let checkpoints = FileCheckpointStore::new(dir.path().join("state")).unwrap();
    eventually(WAIT, "a checkpoint past the start", || {
        checkpoints
            .load()
            .unwrap()
            .is_some_and(|cp| cp.next_data_offset > 0)
    });
    std::thread::sleep(Duration::from_millis(300));
    let uri = daemon.uri.clone();
    daemon.kill();
    // A watcher notices that the service is gone.
    let watched = watcher.wait_with_output().unwrap();
    assert_eq!(result(&watched).0, 31, "watch after the daemon died");

    let daemon = Daemon::start(dir.path(), &ota, my_uid());
    assert_eq!(daemon.uri, uri);
    let (_, status) = result(&daemon.cli(&["status"]));
    assert!(status.starts_with("INTERRUPTED"), "{status}");
    assert!(!status.starts_with("INTERRUPTED 0.0%"), "{status}");
    assert_eq!(code(daemon.cli(&["resume"])), 0);
    assert_eq!(code(daemon.cli(&["watch"])), 0);
    assert!(ota.slot_holds('b', "v2"));
    let (_, slots) = result(&daemon.cli(&["slots"]));
    assert!(slots.contains("_b: current=false active=true"), "{slots}");
    // The engine continued from its checkpoint: the server was asked for the rest only.
    let log = nginx.access_log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("206 \"bytes=") && !l.contains("\"bytes=0-")),
        "{log}"
    );
}

#[test]
fn other_uids_are_refused_with_36() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let daemon = Daemon::start(dir.path(), &ota, my_uid().wrapping_add(1));
    for args in [
        &["cancel"][..],
        &["reset"],
        &["mark-successful"],
        &["apply", path(&ota.payload)],
        // It reads partitions and costs the device work: not for everyone.
        &["verify", path(&ota.payload)],
    ] {
        assert_eq!(code(daemon.cli(args)), 36, "{args:?}");
    }
    assert_eq!(code(daemon.cli(&["status"])), 0);
    assert_eq!(code(daemon.cli(&["slots"])), 0);
}

/// `--boot-control hal` asks for the vendor's boot HAL, which only AOSP builds have a client
/// for: this build says so with 31 and starts nothing, rather than fall back to writing `misc`
/// behind a HAL that keeps its own metadata.
#[test]
fn a_host_build_refuses_the_boot_hal() {
    let dir = tempfile::tempdir().unwrap();
    let by_name = dir.path().join("by-name");
    std::fs::create_dir(&by_name).unwrap();
    let misc = by_name.join("misc");
    abupdate::boot_control::MiscBootControl::create_image(&misc, abupdate::slot::Slot::A).unwrap();
    let before = std::fs::read(&misc).unwrap();
    let socket = dir.path().join("abupdate.sock");
    let uri = format!("unix://{}?profile=android13plus", socket.display());
    for device in [
        ["--by-name", path(&by_name)],
        ["--device", path(dir.path())],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_abupdated"))
            .args(["--binder", &uri, "--boot-control", "hal"])
            .args(device)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(31), "{device:?}: {stderr}");
        assert!(stderr.contains("--boot-control hal"), "{stderr}");
        assert!(!socket.exists(), "it served");
    }
    assert_eq!(std::fs::read(&misc).unwrap(), before, "misc changed");
}

/// Trust fails closed in the daemon: no key without `--allow-unsigned`, a key file it cannot
/// read, and one holding no public key each stop it with 29 before it serves (main served
/// with no keys, accepting unsigned payloads). A host has no build type, so an explicit
/// `--allow-unsigned` is honoured there.
#[test]
fn the_daemon_refuses_to_start_without_a_trusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    abupdate::boot_control::MiscBootControl::create_image(
        &dev.join("misc.img"),
        abupdate::slot::Slot::A,
    )
    .unwrap();
    let private_only = dir.path().join("private-only.pem");
    std::fs::write(
        &private_only,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let socket = dir.path().join("abupdate.sock");
    let uri = format!("unix://{}?profile=android13plus", socket.display());
    let start = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_abupdated"))
            .args(["--binder", &uri, "--device", path(&dev), "--state-dir"])
            .arg(dir.path().join("state"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let cases: [(&[&str], &str); 3] = [
        (&[], "no --key"),
        (&["--key", path(&missing)], "reading key file"),
        (&["--key", path(&private_only)], "holds no public key"),
    ];
    for (args, says) in cases {
        let mut child = start(args);
        let status = exit_within(&mut child, WAIT);
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let status = status.unwrap_or_else(|| panic!("{args:?}: served without a trusted key"));
        assert_eq!(status.code(), Some(29), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!socket.exists(), "{args:?}: it served");
    }
    let mut child = start(&["--allow-unsigned"]);
    eventually(WAIT, "abupdated --allow-unsigned serving", || {
        socket.exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The child's exit status, or `None` if it still runs after `limit` (it is then killed).
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[test]
fn a_host_daemon_takes_orders_from_its_own_uid_only_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let daemon = Daemon::start_with(dir.path(), &ota, &[]);
    let log = std::fs::read_to_string(dir.path().join("abupdated.log")).unwrap();
    // Not root, system and shell as on Android: this process's UID (the daemon's) alone.
    assert!(
        log.contains(&format!("allowed uids: {}\n", my_uid())),
        "{log}"
    );
    assert_eq!(
        code(daemon.cli(&["cancel"])),
        35,
        "allowed, with nothing to cancel (36 would be a refusal)"
    );
}

/// Runs `abupdate ARGS` with no service configured in the environment; exit code and stderr.
fn cli_alone(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(args)
        .env_remove("ABUPDATE_BINDER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{args:?}: exit {:?}\n{stderr}", out.status.code());
    (out.status.code().unwrap_or(-1), stderr)
}

/// The first hour: with no service running, `apply` says that no service is reachable where
/// it looked (spelled as the README spells it) and what to do instead.
#[test]
fn without_a_service_apply_says_where_it_looked_and_what_else_works() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, b"not read: the service is not there").unwrap();
    let uri = format!(
        "unix://{}?profile=android13plus",
        dir.path().join("none.sock").display()
    );
    let (code, stderr) = cli_alone(&["apply", path(&payload), "--binder", &uri]);
    assert_eq!(code, 31, "{stderr}");
    for says in [
        format!("no abupdate service is reachable at {uri}"),
        "--device DIR".to_owned(),
        "--binder URI".to_owned(),
    ] {
        assert!(stderr.contains(&says), "{says:?} not in {stderr}");
    }
    // The default, where the README says it is (this host has no abupdate service there).
    let (_, stderr) = cli_alone(&["slots"]);
    assert!(
        stderr.contains("no abupdate service is reachable at binder:/dev/binder"),
        "{stderr}"
    );
}

/// The first hour: a payload that cannot be read, or a truncated one, is named as such (class
/// "reading the payload failed"), not as a download, and before any service is asked.
#[test]
fn a_payload_that_cannot_be_read_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    let (code, stderr) = cli_alone(&["apply", path(&missing)]);
    assert_eq!(code, 10, "{stderr}");
    assert!(stderr.contains("cannot read the payload"), "{stderr}");
    assert!(stderr.contains("reading the payload failed"), "{stderr}");
    assert!(!stderr.contains("binder"), "the file comes first: {stderr}");

    let (code, stderr) = cli_alone(&["payload", "info", path(&missing)]);
    assert_eq!(code, 10, "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");

    let ota = Ota::build(dir.path());
    let whole = std::fs::read(&ota.payload).unwrap();
    let truncated = dir.path().join("truncated.bin");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let (code, stderr) = cli_alone(&["payload", "info", path(&truncated)]);
    assert_eq!(code, 14, "{stderr}");
    assert!(stderr.contains("reading the payload failed"), "{stderr}");
    assert!(!stderr.contains("download"), "{stderr}");

    let help = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(["payload", "info", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("<PAYLOAD>  The payload file"), "{help}");
}

/// The first hour: after an update that wrote into the target slot and then failed (here its
/// payload signature does not verify), `apply` and `slots` say that the slot stays unbootable
/// by design and what brings it back.
#[test]
fn a_failed_update_says_the_target_stays_unbootable() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let mut bytes = std::fs::read(&ota.payload).unwrap();
    // Inside the RSA signature: the blob ends with the 5 bytes of its unpadded size field.
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    let spoilt = dir.path().join("spoilt.bin");
    std::fs::write(&spoilt, bytes).unwrap();
    let device = path(&ota.device);
    let apply = |payload: &Path| {
        cli_alone(&[
            "apply",
            "--device",
            device,
            "--key",
            path(&ota.cert),
            path(payload),
        ])
    };
    let (code, stderr) = apply(&spoilt);
    assert_eq!(code, 23, "{stderr}");
    let note = "slot _b stays unbootable by design";
    assert!(stderr.contains(note), "{stderr}");
    assert!(
        stderr.contains("when an update into it completes"),
        "{stderr}"
    );

    let slots = slots_of(device);
    assert!(
        slots.contains("_b: current=false active=false bootable=false"),
        "{slots}"
    );
    assert!(slots.contains(note), "{slots}");

    // And the same payload, whole, brings it back.
    let (code, stderr) = apply(&ota.payload);
    assert_eq!(code, 0, "{stderr}");
    let slots = slots_of(device);
    assert!(
        slots.contains("_b: current=false active=true bootable=true"),
        "{slots}"
    );
    assert!(!slots.contains("unbootable"), "{slots}");
}

/// `abupdate slots --device DEVICE`'s output.
fn slots_of(device: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(["slots", "--device", device])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
