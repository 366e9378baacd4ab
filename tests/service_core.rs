//! The service core with abupdate's update engine, without Binder: a restarted service
//! reports the truth (an interrupted update is resumable and resumes from the engine's
//! checkpoint; an applied update needs a reboot until the boot id changes), and a listener
//! that does not take its callbacks does not stall the service. And what a root daemon owes
//! hostile callers: refusals paced in the log, capped callbacks, the dump for allowed callers,
//! URLs without credentials wherever they are shown, no `AUTHORIZATION` on disk, and an engine
//! panic that ends the update instead of the service.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use abupdate::service::backend::parse_headers;
use abupdate::service::binder_service::Event;
use abupdate::service::persist::{Record, StateStore, StoredRequest};
use abupdate::service::{
    ApplyProgress, ApplyRequest, Caller, Config, Control, Listener, PayloadLocation, RollbackFloor,
    SlotInfo, State, Status, UpdateBackend, UpdateService, MAX_LISTENERS_PER_UID,
};
use abupdate::ErrorCode;
use common::nginx::Nginx;
use common::ota::Ota;
use common::service::{engine, eventually};

const WAIT: Duration = Duration::from_secs(60);
const ROOT: Caller = Caller::checked(0);

/// A service over a fresh engine on `ota`'s device, its state file in `dir`.
fn service(dir: &Path, ota: &Ota, boot_id: &str) -> Arc<UpdateService> {
    service_over(dir, engine(&ota.device, &ota.cert, None), boot_id)
}

fn service_over(dir: &Path, engine: Arc<dyn UpdateBackend>, boot_id: &str) -> Arc<UpdateService> {
    let config = Config {
        state_dir: dir.to_owned(),
        allowed_uids: vec![0],
        boot_id: boot_id.to_owned(),
    };
    UpdateService::new(engine, config).unwrap()
}

fn url_request(url: &str, ota: &Ota) -> ApplyRequest {
    ApplyRequest {
        source: PayloadLocation::Url(url.to_owned()),
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
    service
        .add_listener(ROOT, Arc::new(Channel(std::sync::Mutex::new(tx))))
        .unwrap();
    rx
}

/// Waits for the end of an update.
fn complete(events: &mpsc::Receiver<Event>) -> abupdate::Result<()> {
    loop {
        if let Event::Complete(result) = events.recv_timeout(WAIT).unwrap() {
            return result;
        }
    }
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
        second
            .dump(ROOT)
            .unwrap()
            .contains(&format!("payload: {url}")),
        "{}",
        second.dump(ROOT).unwrap()
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
    service.add_listener(ROOT, stuck.clone()).unwrap();

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
    assert!(service.dump(ROOT).unwrap().contains("callbacks: 1"));
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

/// Every log record of this test process, for the tests that check what reaches the log.
fn logged() -> &'static Mutex<Vec<String>> {
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            LINES.lock().unwrap().push(record.args().to_string());
        }
        fn flush(&self) {}
    }
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
    &LINES
}

#[test]
fn a_caller_hammering_a_refused_method_does_not_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let service = service(dir.path(), &ota, "boot-1");
    let lines = logged();
    let hostile = Caller::checked(40_404);
    for _ in 0..1000 {
        let refused = service.cancel(hostile).unwrap_err();
        assert_eq!(refused.code, ErrorCode::PermissionDenied);
        assert_eq!(
            service.verify_applicable(hostile, b"x").unwrap_err().code,
            ErrorCode::PermissionDenied
        );
    }
    let about: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("uid 40404"))
        .cloned()
        .collect();
    assert_eq!(about, ["uid 40404 may not cancel the update"], "{about:?}");
}

#[test]
fn callbacks_are_capped_per_uid() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let service = service(dir.path(), &ota, "boot-1");
    let app = Caller::checked(10_123);
    let (tx, _rx) = mpsc::channel();
    let listener = Arc::new(Channel(std::sync::Mutex::new(tx)));
    let ids: Vec<_> = (0..MAX_LISTENERS_PER_UID)
        .map(|_| service.add_listener(app, listener.clone()).unwrap())
        .collect();
    let lines = logged();
    for _ in 0..100 {
        let refused = service.add_listener(app, listener.clone()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Busy);
        assert!(refused.message.contains("uid 10123"), "{refused}");
    }
    let about = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("uid 10123"))
        .count();
    assert_eq!(about, 1, "one refusal logged, not a hundred");
    // Other apps are not locked out by one that hoards, and a freed place is free again.
    service
        .add_listener(Caller::checked(10_124), listener.clone())
        .unwrap();
    service.remove_listener(ids[0]);
    service.add_listener(app, listener).unwrap();
}

#[test]
fn the_dump_is_for_allowed_callers() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let service = service(dir.path(), &ota, "boot-1");
    assert!(service.dump(ROOT).unwrap().contains("state: IDLE"));
    let refused = service.dump(Caller::checked(10_123)).unwrap_err();
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
}

#[test]
fn urls_are_shown_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let lines = logged();
    // A URL the download refuses at once, quoting it in its error.
    let service = service(dir.path(), &ota, "boot-1");
    let events = listen(&service);
    let url = "http://user:pw-s3cr3t@127.0.0.1:9/payload.bin?sig=t0k3n";
    service.apply(ROOT, url_request(url, &ota)).unwrap();
    let error = complete(&events).unwrap_err();
    let status = service.status();
    let state_file = std::fs::read_to_string(dir.path().join("status")).unwrap();
    for (what, text) in [
        ("completion", &error.message),
        ("status", &status.error_message),
        ("state file", &state_file),
    ] {
        // Redacted first, then quoted cut short as every foreign string in a message is.
        assert!(text.contains("http://127.0.0.1:9/payloa"), "{what}: {text}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("t0k3n"),
            "{what}: {text}"
        );
    }

    // The dump of an interrupted update, whose state file keeps the whole URL to resume.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    StateStore::new(&interrupted)
        .save(&Record {
            status: Status {
                state: State::Downloading,
                ..Status::default()
            },
            boot_id: "boot-1".to_owned(),
            request: Some(StoredRequest::new(
                "https://ota.example/p.bin?X-Amz-Signature=s3cr3t",
                0,
                0,
                &[],
            )),
        })
        .unwrap();
    let restarted = service_over(&interrupted, engine(&ota.device, &ota.cert, None), "boot-1");
    let dump = restarted.dump(ROOT).unwrap();
    assert!(
        dump.contains("payload: https://ota.example/p.bin?…"),
        "{dump}"
    );
    assert!(!dump.contains("s3cr3t"), "{dump}");
    let leaked: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("s3cr3t") || l.contains("t0k3n"))
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[test]
fn authorization_never_reaches_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let url = nginx.slow_url("payload.bin");
    let mut request = url_request(&url, &ota);
    request
        .headers
        .push(("AUTHORIZATION".to_owned(), "Bearer s3cr3t-t0k3n".to_owned()));
    let headers = request.headers.clone();
    let first_dir = dir.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let first = service(&first_dir, &ota, "boot-1");
    first.apply(ROOT, request).unwrap();
    eventually(WAIT, "writing", || first.status().done > 0);
    first.suspend(ROOT).unwrap();
    let state_file = first_dir.join("status");
    eventually(WAIT, "state file says suspended", || {
        std::fs::read_to_string(&state_file).is_ok_and(|t| t.contains("SUSPENDED"))
    });
    let text = std::fs::read_to_string(&state_file).unwrap();
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains(&format!("url={url}")), "{text}");
    let second_dir = dir.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    std::fs::copy(&state_file, second_dir.join("status")).unwrap();
    first.cancel(ROOT).unwrap();
    eventually(WAIT, "first stopped", || {
        first.status().state == State::Idle
    });

    // After a restart the token is gone: resume() says to apply again, and that apply (with
    // the token) continues from the engine's checkpoint.
    let second = service(&second_dir, &ota, "boot-1");
    assert_eq!(second.status().state, State::Interrupted);
    let refused = second.resume(ROOT).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Busy);
    assert!(refused.message.contains("AUTHORIZATION"), "{refused}");
    let events = listen(&second);
    second
        .apply(
            ROOT,
            ApplyRequest {
                source: PayloadLocation::Url(nginx.url("payload.bin")),
                offset: 0,
                size: 0,
                headers,
            },
        )
        .unwrap();
    complete(&events).unwrap();
    assert!(ota.slot_holds('b', "v2"));
}

/// An engine that panics in its first `apply` (a bug, as far as the service can tell), then
/// is abupdate's engine.
struct PanicsOnce {
    real: Arc<dyn UpdateBackend>,
    panicked: AtomicBool,
}

impl UpdateBackend for PanicsOnce {
    fn apply(
        &self,
        request: &ApplyRequest,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> abupdate::Result<()> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("injected engine fault");
        }
        self.real.apply(request, progress, control)
    }
    fn verify_applicable(&self, metadata: &[u8]) -> abupdate::Result<()> {
        self.real.verify_applicable(metadata)
    }
    fn slot_info(&self) -> abupdate::Result<SlotInfo> {
        self.real.slot_info()
    }
    fn mark_boot_successful(&self) -> abupdate::Result<()> {
        self.real.mark_boot_successful()
    }
    fn rollback_floors(&self) -> abupdate::Result<Vec<RollbackFloor>> {
        self.real.rollback_floors()
    }
    fn resume_point(&self) -> abupdate::Result<Option<ApplyProgress>> {
        self.real.resume_point()
    }
    fn reset(&self) -> abupdate::Result<()> {
        self.real.reset()
    }
    fn trigger_postinstall(
        &self,
        partition: &str,
        progress: &(dyn Fn(ApplyProgress) + Sync),
        control: &Control,
    ) -> abupdate::Result<()> {
        self.real.trigger_postinstall(partition, progress, control)
    }
}

#[test]
fn an_engine_panic_ends_the_update_not_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let engine = Arc::new(PanicsOnce {
        real: engine(&ota.device, &ota.cert, None),
        panicked: AtomicBool::new(false),
    });
    let service = service_over(dir.path(), engine, "boot-1");
    let events = listen(&service);
    let url = nginx.url("payload.bin");
    service.apply(ROOT, url_request(&url, &ota)).unwrap();
    let error = complete(&events).unwrap_err();
    assert_eq!(error.code, ErrorCode::InstallFailed);
    assert!(error.message.contains("injected engine fault"), "{error}");
    let status = service.status();
    assert_eq!(
        (status.state, status.error_code),
        (State::Idle, ErrorCode::InstallFailed)
    );
    // Not busy forever: the next apply runs.
    service.apply(ROOT, url_request(&url, &ota)).unwrap();
    complete(&events).unwrap();
    assert!(ota.slot_holds('b', "v2"));
}

#[test]
fn a_resumed_update_marks_the_target_unbootable_again() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let url = nginx.slow_url("payload.bin");
    let service = service(dir.path(), &ota, "boot-1");
    let events = listen(&service);
    service.apply(ROOT, url_request(&url, &ota)).unwrap();
    eventually(WAIT, "writing", || service.status().done > 0);
    service.cancel(ROOT).unwrap();
    assert_eq!(complete(&events).unwrap_err().code, ErrorCode::Cancelled);
    let written = service.status().done;
    assert!(!service.slot_info().unwrap().slots[1].bootable);

    // The bootloader found its record torn and wrote its default: both slots bootable.
    // (Written over the image in place: the engine keeps it open.)
    let fresh = dir.path().join("fresh-misc.img");
    abupdate::boot_control::MiscBootControl::create_image(&fresh, abupdate::slot::Slot::A).unwrap();
    std::fs::write(ota.device.join("misc.img"), std::fs::read(&fresh).unwrap()).unwrap();
    assert!(service.slot_info().unwrap().slots[1].bootable);

    // The resumed run writes again: by then slot B must not be bootable.
    service.apply(ROOT, url_request(&url, &ota)).unwrap();
    eventually(WAIT, "writing past the first run", || {
        let status = service.status();
        status.done > written && status.state == State::Downloading
    });
    let slots = service.slot_info().unwrap();
    assert!(!slots.slots[1].bootable, "{slots:?}");
    service.cancel(ROOT).unwrap();
    complete(&events).unwrap_err();
}

#[test]
fn a_done_checkpoint_from_an_earlier_boot_is_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let url = nginx.url("payload.bin");
    let mut request = url_request(&url, &ota);
    // Applied, not switched: the checkpoint stays `Done` until someone switches.
    request
        .headers
        .push(("SWITCH_SLOT_ON_REBOOT".to_owned(), "0".to_owned()));
    let headers = request.headers.clone();
    let first = service(dir.path(), &ota, "boot-1");
    let events = listen(&first);
    first.apply(ROOT, request).unwrap();
    complete(&events).unwrap();
    assert!(ota.slot_holds('b', "v2"));
    drop(first);

    // Between boots, slot B changed under the checkpoint.
    let vendor_b = ota.device.join("vendor_b.img");
    let mut bytes = std::fs::read(&vendor_b).unwrap();
    bytes[5000] ^= 0xff;
    std::fs::write(&vendor_b, bytes).unwrap();

    let rebooted = service(dir.path(), &ota, "boot-2");
    let events = listen(&rebooted);
    let again = ApplyRequest {
        source: PayloadLocation::Url(url),
        offset: 0,
        size: 0,
        headers,
    };
    rebooted.apply(ROOT, again).unwrap();
    let error = complete(&events).unwrap_err();
    assert_eq!(error.code, ErrorCode::PartitionHash, "{error}");
    assert!(error.message.contains("vendor"), "{error}");
    let slots = rebooted.slot_info().unwrap();
    assert_eq!(
        slots.active, 0,
        "switched to a slot that does not hold the update"
    );
}
