//! `update_engine_client`'s command lines, as AOSP's update_device.py runs them, against a
//! real `abupdated --update-engine-compat` process serving RPC Binder on a unix socket: the
//! payload inside a larger file served by nginx (offset and size, as update_device.py passes
//! them for payload.bin inside the OTA zip), headers one per line, --follow to the end;
//! --verify, --cancel, --reset_status, --switch_slot, --merge; through a link named
//! update_engine_client and through `abupdate update-engine-client`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::nginx::Nginx;
use common::ota::Ota;
use common::service::{eventually, my_uid};

const WAIT: Duration = Duration::from_secs(60);

/// A running `abupdated --update-engine-compat`, killed when dropped.
struct Daemon {
    child: Child,
    uri: String,
}

impl Daemon {
    fn start(dir: &Path, ota: &Ota) -> Daemon {
        let socket = dir.join("ue.sock");
        let uri = format!("unix://{}?profile=android13plus", socket.display());
        let log = std::fs::File::create(dir.join("abupdated.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_abupdated"))
            .args(["--update-engine-compat", "--binder", &uri, "--device"])
            .arg(&ota.device)
            .arg("--key")
            .arg(&ota.cert)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--allowed-uids", &my_uid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        eventually(WAIT, "abupdated serving", || {
            std::fs::read_to_string(dir.join("abupdated.log"))
                .is_ok_and(|log| log.contains("android.os.UpdateEngineService"))
                && socket.exists()
        });
        Daemon { child, uri }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exit code and stderr (where update_engine_client logs) of a run.
fn run(program: &Path, daemon: &Daemon, args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(program)
        .args(args)
        .env("ABUPDATE_BINDER", &daemon.uri)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    eprintln!("{} {args:?}: exit {code}\n{stderr}", program.display());
    (code, stderr)
}

#[test]
fn update_device_py_command_lines_drive_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let daemon = Daemon::start(dir.path(), &ota);
    let link = dir.path().join("update_engine_client");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_abupdate"), &link).unwrap();
    let client = |args: &[&str]| run(&link, &daemon, args);

    // Nothing given, a positional argument: refused before any call.
    assert_eq!(client(&[]).0, 1);
    assert_eq!(client(&["payload.bin"]).0, 1);
    // Nothing to cancel or suspend: update_engine's kError, exit 1.
    let (code, log) = client(&["--cancel"]);
    assert_eq!(code, 1);
    assert!(log.contains("kError (1)"), "{log}");
    assert_eq!(client(&["--suspend"]).0, 1);
    let metadata = format!("--metadata={}", ota.payload.display());
    let (code, log) = client(&["--verify", &metadata]);
    assert_eq!(code, 0);
    assert!(log.contains("Payload is applicable."), "{log}");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"nothing like a payload header").unwrap();
    let (code, log) = client(&["--verify", &format!("--metadata={}", junk.display())]);
    assert_eq!(code, 1);
    assert!(log.contains("kDownloadManifestParseError (23)"), "{log}");
    assert_eq!(client(&["--allocate", &metadata]).0, 0);

    // The payload 4 KiB into a larger file, as payload.bin sits inside the OTA zip.
    let payload = std::fs::read(&ota.payload).unwrap();
    let mut zip_like = vec![0x5a; 4096];
    zip_like.extend_from_slice(&payload);
    zip_like.extend_from_slice(&[0x5a; 100]);
    let nginx = Nginx::start(None);
    nginx.put("ota.zip", &zip_like, 0);
    let url = format!("--payload={}", nginx.url("ota.zip"));
    let size = format!("--size={}", payload.len());
    let headers = format!("--headers={}", ota.headers.join("\n"));
    let (code, log) = client(&[
        "--update",
        "--follow",
        &url,
        "--offset=4096",
        &size,
        &headers,
    ]);
    assert_eq!(code, 0, "{log}");
    for line in [
        "onStatusUpdate(DOWNLOADING (3)",
        "onStatusUpdate(VERIFYING (4)",
        "onStatusUpdate(FINALIZING (5)",
        "onStatusUpdate(UPDATED_NEED_REBOOT (6), 1)",
        "onPayloadApplicationComplete(kSuccess (0))",
    ] {
        assert!(log.contains(line), "{line} missing:\n{log}");
    }
    assert!(ota.slot_holds('b', "v2"));

    // Applied: a second --update is refused with kUpdateAlreadyInstalled.
    let (code, log) = client(&["--update", &url, "--offset=4096", &size, &headers]);
    assert_eq!(code, 1);
    assert!(log.contains("kUpdateAlreadyInstalled (66)"), "{log}");
    assert_eq!(client(&["--switch_slot=true", &metadata]).0, 0);
    // The subcommand form; --switch_slot=false keeps the running slot active.
    let abupdate = Path::new(env!("CARGO_BIN_EXE_abupdate"));
    let (code, _) = run(
        abupdate,
        &daemon,
        &["update-engine-client", "--switch_slot=false"],
    );
    assert_eq!(code, 0);
    assert_eq!(client(&["--reset_status"]).0, 0);

    // The previous update's cleanup: no boot to wait for on a host device directory, the
    // running slot is marked successful.
    let (code, log) = client(&["--merge"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("onPayloadApplicationComplete(kSuccess (0))"),
        "{log}"
    );

    // Ours: --stable sends the update to UpdateEngineStableService.applyPayloadFd.
    let file = format!("--payload=file://{}", ota.payload.display());
    let (code, log) = client(&["--stable", "--update", "--follow", &file, &headers]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("onStatusUpdate(UPDATED_NEED_REBOOT (6), 1)"),
        "{log}"
    );
    assert!(
        log.contains("onPayloadApplicationComplete(kSuccess (0))"),
        "{log}"
    );
}
