//! The service core with abupdate's update engine, without Binder: a restarted service
//! reports the truth (an interrupted update is resumable and resumes from the engine's
//! checkpoint; an applied update needs a reboot until the boot id changes), and a listener
//! that does not take its callbacks does not stall the service.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use abupdate::service::binder_service::Event;
use abupdate::service::engine::parse_headers;
use abupdate::service::{
    ApplyRequest, Caller, Config, Listener, PayloadSource, State, Status, UpdateService,
};
use abupdate::ErrorCode;
use common::nginx::Nginx;
use common::ota::Ota;
use common::service::{engine, eventually};

const WAIT: Duration = Duration::from_secs(60);
const ROOT: Caller = Caller { uid: 0 };

/// A service over a fresh engine on `ota`'s device, its state file in `dir`.
fn service(dir: &Path, ota: &Ota, boot_id: &str) -> Arc<UpdateService> {
    let config = Config {
        state_dir: dir.to_owned(),
        allowed_uids: vec![0],
        boot_id: boot_id.to_owned(),
    };
    UpdateService::new(engine(&ota.device, &ota.cert, None), config).unwrap()
}

fn url_request(url: &str, ota: &Ota) -> ApplyRequest {
    ApplyRequest {
        source: PayloadSource::Url(url.to_owned()),
        offset: 0,
        size: 0,
        headers: parse_headers(&ota.headers).unwrap(),
    }
}

/// The payload served by a fresh nginx as `payload.bin`.
fn serve(ota: &Ota) -> Nginx {
    let nginx = Nginx::start(None);
    nginx.put("payload.bin", &std::fs::read(&ota.payload).unwrap(), 0);
    nginx
}

/// Records what a listener hears, in order.
struct Channel(std::sync::Mutex<mpsc::Sender<Event>>);

impl Listener for Channel {
    fn on_status(&self, status: &Status) -> Result<(), abupdate::service::Gone> {
        let _ = self.0.lock().unwrap().send(Event::Status(status.clone()));
        Ok(())
    }

    fn on_complete(&self, code: ErrorCode, message: &str) -> Result<(), abupdate::service::Gone> {
        let result = match code {
            ErrorCode::Ok => Ok(()),
            code => Err(abupdate::Error::new(code, message)),
        };
        let _ = self.0.lock().unwrap().send(Event::Complete(result));
        Ok(())
    }
}

fn listen(service: &UpdateService) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    service.add_listener(Arc::new(Channel(std::sync::Mutex::new(tx))));
    rx
}

#[test]
fn an_interrupted_update_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let url = nginx.slow_url("payload.bin");
    let first_dir = dir.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();

    // The first service gets some way and stops there, as if the process died: its
    // state file is what the next one finds.
    let first = service(&first_dir, &ota, "boot-1");
    first.apply(ROOT, url_request(&url, &ota)).unwrap();
    eventually(WAIT, "writing", || first.status().done > 0);
    first.suspend(ROOT).unwrap();
    eventually(WAIT, "state file says suspended", || {
        std::fs::read_to_string(first_dir.join("status")).is_ok_and(|t| t.contains("SUSPENDED"))
    });
    let second_dir = dir.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    std::fs::copy(first_dir.join("status"), second_dir.join("status")).unwrap();
    first.cancel(ROOT).unwrap();
    eventually(WAIT, "first stopped", || {
        first.status().state == State::Idle
    });

    let second = service(&second_dir, &ota, "boot-1");
    let status = second.status();
    assert_eq!(status.state, State::Interrupted);
    let resumed_at = status.done;
    assert!(0 < resumed_at && resumed_at < status.total, "{status:?}");
    assert!(
        second.dump().contains(&format!("payload: {url}")),
        "{}",
        second.dump()
    );

    let events = listen(&second);
    second.resume(ROOT).unwrap();
    let mut first_progress = None;
    loop {
        match events.recv_timeout(WAIT).unwrap() {
            Event::Status(s) if s.state == State::Downloading && first_progress.is_none() => {
                first_progress = Some(s.done)
            }
            Event::Complete(result) => {
                assert!(result.is_ok(), "{result:?}");
                break;
            }
            Event::Status(_) => {}
        }
    }
    // Downloading restarts at 0 in the status, then the engine reports its checkpoint.
    let first_reported = first_progress.unwrap();
    assert!(
        first_reported == 0 || first_reported > resumed_at,
        "{first_reported}"
    );
    assert!(ota.slot_holds('b', "v2"));
    assert_eq!(second.status().state, State::UpdatedNeedReboot);

    // Same boot: still waiting for the reboot. Next boot: idle, the update is running.
    assert_eq!(
        service(&second_dir, &ota, "boot-1").status().state,
        State::UpdatedNeedReboot
    );
    let rebooted = service(&second_dir, &ota, "boot-2");
    assert_eq!(rebooted.status().state, State::Idle);
    assert_eq!(
        service(&second_dir, &ota, "boot-2").status().state,
        State::Idle,
        "persisted"
    );
}

#[test]
fn a_failure_survives_a_restart_and_reset_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let first = service(dir.path(), &ota, "boot-1");
    let events = listen(&first);
    first
        .apply(ROOT, url_request("file:///nonexistent/payload", &ota))
        .unwrap();
    loop {
        if let Event::Complete(result) = events.recv_timeout(WAIT).unwrap() {
            assert_eq!(result.unwrap_err().code, ErrorCode::DownloadFailed);
            break;
        }
    }
    let again = service(dir.path(), &ota, "boot-2");
    let status = again.status();
    assert_eq!(
        (status.state, status.error_code),
        (State::Idle, ErrorCode::DownloadFailed)
    );
    assert!(
        status.error_message.contains("/nonexistent/payload"),
        "{status:?}"
    );
    assert_eq!(
        again.resume(ROOT).unwrap_err().code,
        ErrorCode::Busy,
        "nothing to resume"
    );

    again.reset_status(ROOT).unwrap();
    assert_eq!(
        service(dir.path(), &ota, "boot-2").status().error_code,
        ErrorCode::Ok
    );
}

#[test]
fn an_unreadable_state_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    std::fs::write(dir.path().join("status"), "version=1\nstate=SOMETHING\n").unwrap();
    let service = service(dir.path(), &ota, "boot-1");
    assert_eq!(service.status().state, State::Idle);
    let aside = std::fs::read_to_string(dir.path().join("status.bad")).unwrap();
    assert!(aside.contains("SOMETHING"));
}

/// A listener whose deliveries hang, like a client whose socket is full.
struct Stuck(std::sync::Mutex<()>);

impl Listener for Stuck {
    fn on_status(&self, _: &Status) -> Result<(), abupdate::service::Gone> {
        let _held = self.0.lock().unwrap();
        Ok(())
    }

    fn on_complete(&self, _: ErrorCode, _: &str) -> Result<(), abupdate::service::Gone> {
        let _held = self.0.lock().unwrap();
        Ok(())
    }
}

#[test]
fn a_stuck_listener_does_not_stall_status_or_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let service = service(dir.path(), &ota, "boot-1");
    let stuck = Arc::new(Stuck(std::sync::Mutex::new(())));
    service.add_listener(stuck.clone());

    let gate = stuck.0.lock().unwrap();
    service
        .apply(ROOT, url_request(&nginx.slow_url("payload.bin"), &ota))
        .unwrap();
    // The worker's first progress report now waits for the stuck delivery; the service
    // still answers.
    std::thread::sleep(Duration::from_millis(200));
    let asked = std::time::Instant::now();
    assert_eq!(service.status().state, State::Downloading);
    service.cancel(ROOT).unwrap();
    assert!(service.dump().contains("callbacks: 1"));
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "took {:?}",
        asked.elapsed()
    );
    drop(gate);
    eventually(WAIT, "cancelled", || {
        service.status().error_code == ErrorCode::Cancelled
    });
}
