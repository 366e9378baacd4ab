//! update_engine's faces over the real rsbinder RPC transport, with abupdate's engine applying
//! a signed payload into a device directory: the clients are rsbinder proxies generated from
//! aidl/android/os/*.aidl (as a stock client's are from AOSP's), and every number they see
//! is update_engine's: UpdateStatus in onStatusUpdate, ErrorCode in completions and
//! service-specific exceptions.

mod common;

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abupdate::service::binder_adapter::{
    self as binder, Failure, ParcelFileDescriptor, Served, Status, Transport,
};
use abupdate::service::binder_service::BinderService;
use abupdate::service::cleanup::{BootCompletion, Cleanup};
use abupdate::service::client::UpdateClient;
use abupdate::service::update_engine::{
    client, StableService, UeCallbackRelay, UeEvent, UpdateEngineService, STABLE_SERVICE,
    UPDATE_ENGINE_SERVICE,
};
use abupdate::service::{Config, UpdateBackend, UpdateService, SERVICE_NAME};
use abupdate::ErrorCode;
use common::nginx::Nginx;
use common::ota::Ota;
use common::service::{engine, my_uid};

const WAIT: Duration = Duration::from_secs(60);

/// The three faces of one service on a unix socket in `dir`.
struct Faces {
    transport: Transport,
    served: Option<Served>,
}

impl Faces {
    fn start(dir: &std::path::Path, engine: Arc<dyn UpdateBackend>, boot: BootCompletion) -> Faces {
        Faces::start_allowing(dir, engine, boot, vec![my_uid()])
    }

    /// With `--allowed-uids` set to `allowed_uids`.
    fn start_allowing(
        dir: &std::path::Path,
        engine: Arc<dyn UpdateBackend>,
        boot: BootCompletion,
        allowed_uids: Vec<u32>,
    ) -> Faces {
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir).unwrap();
        let config = Config {
            state_dir,
            allowed_uids,
            boot_id: "test-boot".to_owned(),
        };
        let cleanup = Cleanup::start(engine.clone(), boot, Duration::from_millis(20)).unwrap();
        let core = UpdateService::new(engine, config).unwrap();
        let uri = format!(
            "unix://{}?profile=android13plus",
            dir.join("ue.sock").display()
        );
        let transport = Transport::parse(&uri).unwrap();
        let ours = binder::new_service_binder(BinderService::new(core.clone()));
        let theirs =
            binder::new_update_engine_binder(UpdateEngineService::new(core.clone(), cleanup));
        let stable = binder::new_stable_binder(StableService::new(core));
        let services = vec![
            (SERVICE_NAME.to_owned(), ours.as_binder()),
            (UPDATE_ENGINE_SERVICE.to_owned(), theirs.as_binder()),
            (STABLE_SERVICE.to_owned(), stable.as_binder()),
        ];
        let served = binder::serve_all(&transport, services, 4).unwrap();
        Faces {
            transport,
            served: Some(served),
        }
    }
}

impl Drop for Faces {
    fn drop(&mut self) {
        if let Some(served) = self.served.take() {
            served.stop();
        }
    }
}

fn new_relay() -> (UeCallbackRelay, Receiver<UeEvent>) {
    let (tx, rx) = mpsc::channel();
    let relay = UeCallbackRelay::new(move |event| {
        let _ = tx.send(event);
    });
    (relay, rx)
}

/// The statuses (deduplicated) up to the completion, and its code.
fn follow(events: &Receiver<UeEvent>) -> (Vec<i32>, i32) {
    let mut statuses = Vec::new();
    loop {
        match events.recv_timeout(WAIT).expect("no completion") {
            UeEvent::Status(status, percent) => {
                assert!((0.0..=1.0).contains(&percent), "{percent}");
                if statuses.last() != Some(&status) {
                    statuses.push(status);
                }
            }
            UeEvent::Complete(code) => return (statuses, code),
        }
    }
}

#[track_caller]
fn wait_status(events: &Receiver<UeEvent>, want: impl Fn(i32, f32) -> bool) -> (i32, f32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(event) = events.recv_timeout(left) else {
            panic!("no such status within {WAIT:?}");
        };
        match event {
            UeEvent::Status(s, p) if want(s, p) => return (s, p),
            UeEvent::Complete(code) => panic!("completed with {code} first"),
            UeEvent::Status(..) => {}
        }
    }
}

fn service_specific<T: std::fmt::Debug>(result: Result<T, Status>) -> i32 {
    match binder::failure(&result.unwrap_err()) {
        Failure::ServiceSpecific(code, _) => code,
        other => panic!("not a service-specific exception: {other:?}"),
    }
}

#[test]
fn a_stock_client_applies_an_update_and_sees_update_engine_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let faces = Faces::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        BootCompletion::Already,
    );
    let session = client::connect(&faces.transport).unwrap();
    let service = &session.service;
    let (relay, events) = new_relay();
    let callback = binder::new_ue_callback_binder(relay);
    assert!(service.bind(&callback).unwrap());
    // bind greets with the current status: IDLE.
    assert_eq!(wait_status(&events, |_, _| true), (0, 0.0));

    // Nothing to act on: update_engine's generic kError (1).
    assert_eq!(service_specific(service.cancel()), 1);
    assert_eq!(service_specific(service.suspend()), 1);
    // A header that is not KEY=VALUE: kError.
    let pfd = ParcelFileDescriptor::new(ota.payload_file());
    assert_eq!(
        service_specific(service.applyPayloadFd(&pfd, 0, 0, &["NOEQUALS".to_owned()])),
        1
    );

    // verifyPayloadApplicable reads the metadata file it is named.
    assert!(service
        .verifyPayloadApplicable(ota.payload.to_str().unwrap())
        .unwrap());
    assert_eq!(
        service
            .allocateSpaceForPayload(ota.payload.to_str().unwrap(), &ota.headers)
            .unwrap(),
        0
    );
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"not a payload at all, not even its header").unwrap();
    // kDownloadManifestParseError (23), from our MalformedPayload (21).
    assert_eq!(
        service_specific(service.verifyPayloadApplicable(junk.to_str().unwrap())),
        23
    );

    // A bad payload: the signature does not match FILE_HASH → kDownloadPayloadVerificationError.
    let mut headers = ota.headers.clone();
    headers.retain(|h| !h.starts_with("FILE_HASH="));
    headers.push(format!("FILE_HASH={}", "A".repeat(43) + "="));
    service
        .applyPayload(&format!("file://{}", ota.payload.display()), 0, 0, &headers)
        .unwrap();
    let (_, code) = follow(&events);
    assert_eq!(code, 12, "a payload whose hash differs from FILE_HASH");

    // The update through file:// (opened by the service, as update_engine opens it).
    let url = format!("file://{}", ota.payload.display());
    service.applyPayload(&url, 0, 0, &ota.headers).unwrap();
    let (statuses, code) = follow(&events);
    assert_eq!(code, 0);
    assert_eq!(
        statuses,
        [3, 4, 5, 6],
        "DOWNLOADING VERIFYING FINALIZING UPDATED_NEED_REBOOT"
    );
    assert!(ota.slot_holds('b', "v2"));

    // Applied, waiting for the reboot: applyPayload is refused with kUpdateAlreadyInstalled
    // (66), applyPayloadFd with kError, as update_engine does.
    assert_eq!(
        service_specific(service.applyPayload(&url, 0, 0, &ota.headers)),
        66
    );
    let pfd = ParcelFileDescriptor::new(ota.payload_file());
    assert_eq!(
        service_specific(service.applyPayloadFd(&pfd, 0, 0, &ota.headers)),
        1
    );
    service
        .setShouldSwitchSlotOnReboot(ota.payload.to_str().unwrap())
        .unwrap();
    service.resetShouldSwitchSlotOnReboot().unwrap();
    assert_eq!(
        wait_status(&events, |s, _| s == 0).0,
        0,
        "reset: IDLE again"
    );
    // triggerPostinstall is declared (transaction 14) and answered.
    assert_eq!(service_specific(service.triggerPostinstall("system")), 1);

    assert!(service.unbind(&callback).unwrap());
    assert!(!service.unbind(&callback).unwrap(), "unbinding twice");

    // The stable face: one callback at a time, applyPayloadFd to the end.
    let stable = client::connect_stable(&faces.transport).unwrap();
    let (relay, stable_events) = new_relay();
    let stable_callback = binder::new_stable_callback_binder(relay);
    assert!(stable.service.bind(&stable_callback).unwrap());
    let (other, _) = new_relay();
    let other = binder::new_stable_callback_binder(other);
    assert!(
        !stable.service.bind(&other).unwrap(),
        "a second stable callback"
    );
    let pfd = ParcelFileDescriptor::new(ota.payload_file());
    stable
        .service
        .applyPayloadFd(&pfd, 0, 0, &ota.headers)
        .unwrap();
    let (statuses, code) = follow(&stable_events);
    assert_eq!(code, 0);
    assert_eq!(statuses.first(), Some(&0), "greeted with IDLE");
    assert_eq!(statuses.last(), Some(&6));
    assert!(stable.service.unbind(&stable_callback).unwrap());
}

/// update_engine checks no caller's uid: who may reach its services is SELinux's choice
/// (system_server and GMS, each from its own uid; Settings). A caller outside
/// `--allowed-uids` is refused by `com.abupdate` and served by update_engine's faces.
#[test]
fn update_engine_faces_leave_the_choice_of_callers_to_selinux() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let faces = Faces::start_allowing(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        BootCompletion::Already,
        vec![my_uid().wrapping_add(1)],
    );
    let ours = UpdateClient::connect(&faces.transport).unwrap();
    assert_eq!(ours.reset().unwrap_err().code, ErrorCode::PermissionDenied);
    assert_eq!(
        ours.apply_file(ota.payload_file(), 0, 0, &ota.headers)
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );

    let session = client::connect(&faces.transport).unwrap();
    let service = &session.service;
    service.resetStatus().unwrap();
    let (relay, events) = new_relay();
    let callback = binder::new_ue_callback_binder(relay);
    assert!(service.bind(&callback).unwrap());
    let pfd = ParcelFileDescriptor::new(ota.payload_file());
    service.applyPayloadFd(&pfd, 0, 0, &ota.headers).unwrap();
    let (statuses, code) = follow(&events);
    assert_eq!(code, 0, "applied through IUpdateEngine");
    assert_eq!(statuses.last(), Some(&6), "UPDATED_NEED_REBOOT");
    // com.abupdate still refuses to undo it; update_engine's resetStatus does.
    assert_eq!(ours.reset().unwrap_err().code, ErrorCode::PermissionDenied);
    service.resetStatus().unwrap();
    assert_eq!(wait_status(&events, |s, _| s == 0).0, 0, "IDLE again");
}

#[test]
fn suspend_resume_and_cancel_answer_as_update_engine() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = Nginx::start(None);
    nginx.put("payload.bin", &std::fs::read(&ota.payload).unwrap(), 0);
    let faces = Faces::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        BootCompletion::Already,
    );
    let session = client::connect(&faces.transport).unwrap();
    let service = &session.service;
    let (relay, events) = new_relay();
    let callback = binder::new_ue_callback_binder(relay);
    assert!(service.bind(&callback).unwrap());

    service
        .applyPayload(&nginx.slow_url("payload.bin"), 0, 0, &ota.headers)
        .unwrap();
    wait_status(&events, |s, p| s == 3 && p > 0.0);
    // Another apply while one runs: kUpdateProcessing (65).
    assert_eq!(
        service_specific(service.applyPayload(&nginx.url("payload.bin"), 0, 0, &ota.headers)),
        65
    );
    service.suspend().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    while events.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(700));
    assert!(events.try_recv().is_err(), "progress while suspended");
    service.resume().unwrap();
    wait_status(&events, |s, _| s == 3);
    service.cancel().unwrap();
    let (statuses, code) = follow(&events);
    assert_eq!(code, 48, "USER_CANCELED");
    assert_eq!(statuses.last(), Some(&0), "IDLE after the cancel");
}

#[test]
fn cleanup_waits_for_the_boot_then_reports_progress_and_success() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let props = dir.path().join("build.prop");
    std::fs::write(&props, "ro.build.date.utc=1\n").unwrap();
    let live = abupdate::sysprop::LivePropertyFile::new(&props);
    let faces = Faces::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        BootCompletion::Property(Arc::new(live)),
    );
    let session = client::connect(&faces.transport).unwrap();
    let (relay, events) = new_relay();
    let callback = binder::new_ue_callback_binder(relay);
    session.service.cleanupSuccessfulUpdate(&callback).unwrap();
    assert_eq!(wait_status(&events, |_, _| true), (11, 0.0));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        events.try_recv().is_err(),
        "moved before sys.boot_completed"
    );

    std::fs::write(&props, "ro.build.date.utc=1\nsys.boot_completed=1\n").unwrap();
    let mut progress = Vec::new();
    let code = loop {
        match events.recv_timeout(WAIT).unwrap() {
            UeEvent::Status(status, p) => {
                assert_eq!(status, 11, "CLEANUP_PREVIOUS_UPDATE");
                progress.push(p);
            }
            UeEvent::Complete(code) => break code,
        }
    };
    assert_eq!(code, 0);
    assert_eq!(progress, [0.25, 0.5, 1.0]);

    // Asked after the end: the result at once.
    let (relay, late) = new_relay();
    let callback = binder::new_ue_callback_binder(relay);
    session.service.cleanupSuccessfulUpdate(&callback).unwrap();
    assert_eq!(late.recv_timeout(WAIT).unwrap(), UeEvent::Complete(0));
}
