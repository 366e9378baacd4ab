//! The service over the real rsbinder RPC transport (a unix socket in a temp dir), with
//! abupdate's update engine applying a signed payload into a device directory: several
//! clients following callbacks, calls answered while the engine writes, cancel and resume,
//! suspend, the slot switch and a simulated reboot, permissions, a killed client.
//! Payloads come from files, or from a real nginx (`/slow/` is rate-limited, so that an
//! update is still writing when the test acts on it).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use abupdate::service::binder_adapter::Transport;
use abupdate::service::binder_service::Event;
use abupdate::service::client::UpdateClient;
use abupdate::service::{RollbackFloor, State};
use abupdate::slot::bootloader;
use abupdate::slot::Slot;
use abupdate::ErrorCode;
use common::nginx::Nginx;
use common::ota::Ota;
use common::service::{engine, eventually, my_uid, wait_for, Server};

const WAIT: Duration = Duration::from_secs(60);

/// The test as the service sees it (allowed in most tests).
fn me() -> abupdate::service::Caller {
    abupdate::service::Caller::checked(my_uid())
}

fn watch(client: &UpdateClient) -> (abupdate::service::client::Watch, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let watch = client
        .watch(move |event| {
            let _ = tx.send(event);
        })
        .unwrap();
    (watch, rx)
}

fn complete(events: &mpsc::Receiver<Event>) -> abupdate::Result<()> {
    match wait_for(events, WAIT, |e| matches!(e, Event::Complete(_))) {
        Event::Complete(result) => result,
        Event::Status(_) => unreachable!(),
    }
}

/// Waits until the engine reports writing progress.
fn writing(events: &mpsc::Receiver<Event>) -> u64 {
    match wait_for(
        events,
        WAIT,
        |e| matches!(e, Event::Status(s) if s.state == State::Downloading && s.done > 0),
    ) {
        Event::Status(s) => s.done,
        Event::Complete(_) => unreachable!(),
    }
}

/// The payload served by a fresh nginx as `payload.bin`.
fn serve(ota: &Ota) -> Nginx {
    let nginx = Nginx::start(None);
    nginx.put("payload.bin", &std::fs::read(&ota.payload).unwrap(), 0);
    nginx
}

#[test]
fn two_clients_follow_an_update_to_the_end_and_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let server = Server::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        vec![my_uid()],
    );

    let first = UpdateClient::connect(&server.transport).unwrap();
    let second = UpdateClient::connect(&server.transport).unwrap();
    let (_w1, events1) = watch(&first);
    let (_w2, events2) = watch(&second);
    for events in [&events1, &events2] {
        // A new listener hears the current status at once.
        let greeting = wait_for(events, WAIT, |_| true);
        assert!(
            matches!(greeting, Event::Status(ref s) if s.state == State::Idle),
            "{greeting:?}"
        );
    }
    let before = first.slots().unwrap();
    assert_eq!((before.current, before.active), (0, 0));
    let floors = first.rollback_floors().unwrap();
    assert_eq!(
        floors,
        [RollbackFloor {
            location: 0,
            index: 1
        }]
    );

    first
        .apply_file(ota.payload_file(), 0, 0, &ota.headers)
        .unwrap();
    for events in [&events1, &events2] {
        let mut states = Vec::new();
        let end = loop {
            match events.recv_timeout(WAIT).unwrap() {
                Event::Status(s) => {
                    if states.last() != Some(&s.state) {
                        states.push(s.state);
                    }
                }
                Event::Complete(result) => break result,
            }
        };
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(
            states,
            [
                State::Downloading,
                State::Verifying,
                State::Finalizing,
                State::UpdatedNeedReboot
            ]
        );
    }
    assert!(ota.slot_holds('b', "v2"), "slot B does not hold v2");
    assert!(ota.slot_holds('a', "v1"), "slot A was touched");
    let status = second.status().unwrap();
    assert_eq!(status.state, State::UpdatedNeedReboot);
    assert_eq!(
        (status.current_slot, status.target_slot),
        (Some(0), Some(1))
    );
    let after = second.slots().unwrap();
    assert_eq!((after.current, after.active), (0, 1));
    assert!(after.slots[1].bootable && !after.slots[1].successful);
    // Applied means applied: another apply waits for the reboot or a reset.
    let again = first.apply_file(ota.payload_file(), 0, 0, &[]).unwrap_err();
    assert_eq!(again.code, ErrorCode::Busy);
    drop((first, second, server));

    // Reboot: the bootloader picks B; the service starts over on it.
    let mut misc = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ota.device.join("misc.img"))
        .unwrap();
    assert_eq!(bootloader::boot_misc(&mut misc).unwrap(), Some(Slot::B));
    let rebooted = dir.path().join("rebooted");
    std::fs::create_dir_all(&rebooted).unwrap();
    let server = Server::start(
        &rebooted,
        engine(&ota.device, &ota.cert, Some(Slot::B)),
        vec![my_uid()],
    );
    let client = UpdateClient::connect(&server.transport).unwrap();
    let slots = client.slots().unwrap();
    assert_eq!((slots.current, slots.active), (1, 1));
    assert!(!slots.slots[1].successful);
    // The running slot's own indexes count at once (the bootloader accepted them); only a
    // slot that proved it boots raises the stored floors, which outlive a switch back.
    let floors = [RollbackFloor {
        location: 0,
        index: 2,
    }];
    assert_eq!(client.rollback_floors().unwrap(), floors);
    let store = ota.device.join("state/rollback_index");
    assert!(!store.exists());
    client.mark_successful().unwrap();
    assert!(client.slots().unwrap().slots[1].successful);
    assert_eq!(client.rollback_floors().unwrap(), floors);
    assert!(store.exists(), "mark successful did not store the floors");
}

#[test]
fn status_and_cancel_answer_while_writing_and_a_new_apply_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let server = Server::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        vec![my_uid()],
    );
    let client = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&client);

    client
        .apply(&nginx.slow_url("payload.bin"), 0, 0, &ota.headers)
        .unwrap();
    writing(&events);
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        let status = client.status().unwrap();
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status.state, State::Downloading);
        assert!(status.done < status.total, "{status:?}");
    }
    assert!(
        slowest < Duration::from_secs(1),
        "getStatus took {slowest:?} during the update"
    );
    let asked = Instant::now();
    client.cancel().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        asked.elapsed()
    );
    assert_eq!(complete(&events).unwrap_err().code, ErrorCode::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the update took {:?} to stop",
        asked.elapsed()
    );
    let status = client.status().unwrap();
    assert_eq!(
        (status.state, status.error_code),
        (State::Idle, ErrorCode::Cancelled)
    );
    assert!(server
        .core
        .dump(me())
        .unwrap()
        .contains("last error: 38 (CANCELLED"));
    assert_eq!(client.slots().unwrap().active, 0, "switched after a cancel");

    // The same payload again, now at full speed: the engine resumes from its checkpoint
    // and asks the server only for the rest.
    client
        .apply(&nginx.url("payload.bin"), 0, 0, &ota.headers)
        .unwrap();
    complete(&events).unwrap();
    assert!(ota.slot_holds('b', "v2"));
    let log = nginx.access_log();
    let resumed = log.lines().last().unwrap();
    assert!(
        resumed.starts_with("206 \"bytes=") && !resumed.contains("bytes=0-"),
        "not a resumed request: {log}"
    );
}

#[test]
fn suspend_holds_the_update_until_resume() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let nginx = serve(&ota);
    let server = Server::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        vec![my_uid()],
    );
    let client = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&client);

    client
        .apply(&nginx.slow_url("payload.bin"), 0, 0, &ota.headers)
        .unwrap();
    writing(&events);
    client.suspend().unwrap();
    wait_for(
        &events,
        WAIT,
        |e| matches!(e, Event::Status(s) if s.state == State::Suspended),
    );
    // At most the operation in flight when the suspend came may still land.
    std::thread::sleep(Duration::from_millis(500));
    let held = client.status().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let later = client.status().unwrap();
    assert_eq!(later.state, State::Suspended);
    assert_eq!(later.done, held.done, "moved while suspended");
    assert_eq!(client.suspend().unwrap_err().code, ErrorCode::Busy);

    client.resume().unwrap();
    complete(&events).unwrap();
    assert!(ota.slot_holds('b', "v2"));
    // The suspend closed the connection; the resume asked for the rest.
    assert!(
        nginx.access_log().lines().count() >= 2,
        "{}",
        nginx.access_log()
    );
}

#[test]
fn callers_outside_the_allowed_uids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let server = Server::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        vec![my_uid().wrapping_add(1)],
    );
    let client = UpdateClient::connect(&server.transport).unwrap();

    let refused = [
        client.apply_file(ota.payload_file(), 0, 0, &[]),
        client.suspend(),
        client.resume(),
        client.cancel(),
        client.reset(),
        client.mark_successful(),
    ];
    for result in refused {
        assert_eq!(result.unwrap_err().code, ErrorCode::PermissionDenied);
    }
    // Verifying reads partitions (a delta's whole base) on the caller's word: allowed
    // callers only.
    let payload = std::fs::read(&ota.payload).unwrap();
    assert_eq!(
        client.verify(&payload[..64 * 1024]).unwrap_err().code,
        ErrorCode::PermissionDenied
    );
    // Reading is open to everyone.
    assert_eq!(client.status().unwrap().state, State::Idle);
    assert_eq!(client.slots().unwrap().slots.len(), 2);
    // So is following the status, up to a cap per UID.
    let watches: Vec<_> = (0..abupdate::service::MAX_LISTENERS_PER_UID)
        .map(|_| watch(&client))
        .collect();
    let refused = client.watch(|_| {}).err().unwrap();
    assert_eq!(refused.code, ErrorCode::Busy, "{refused}");
    assert!(refused.message.contains("status callbacks"), "{refused}");
    drop(watches);
}

#[test]
fn verify_and_apply_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let server = Server::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        vec![my_uid()],
    );
    let client = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&client);

    assert_eq!(
        client.verify(b"junk").unwrap_err().code,
        ErrorCode::MalformedPayload
    );
    let old = std::fs::read(ota.old_payload()).unwrap();
    assert_eq!(client.verify(&old).unwrap_err().code, ErrorCode::Downgrade);
    let mut tampered = std::fs::read(&ota.payload).unwrap();
    let metadata_end = 64 * 1024;
    tampered[200] ^= 1;
    assert_eq!(
        client.verify(&tampered[..metadata_end]).unwrap_err().code,
        ErrorCode::MetadataSignature
    );

    let malformed = client
        .apply_file(ota.payload_file(), 0, 0, &["NO_EQUALS_SIGN".to_owned()])
        .unwrap_err();
    assert_eq!(
        malformed.code,
        ErrorCode::DeviceError,
        "an illegal argument: {malformed}"
    );
    assert_eq!(client.cancel().unwrap_err().code, ErrorCode::Busy);

    // A plain path would have the service open files on the caller's behalf.
    client
        .apply(ota.payload.to_str().unwrap(), 0, 0, &[])
        .unwrap();
    assert_eq!(
        complete(&events).unwrap_err().code,
        ErrorCode::DownloadFailed
    );
    client
        .apply("file:///nonexistent/payload.bin", 0, 0, &[])
        .unwrap();
    assert_eq!(
        complete(&events).unwrap_err().code,
        ErrorCode::DownloadFailed
    );
    // The payload, but the properties of another.
    let mut headers = ota.headers.clone();
    headers.retain(|h| !h.starts_with("FILE_HASH="));
    headers.push(format!("FILE_HASH={}", "A".repeat(43) + "="));
    client
        .apply_file(ota.payload_file(), 0, 0, &headers)
        .unwrap();
    assert_eq!(
        complete(&events).unwrap_err().code,
        ErrorCode::PayloadSignature
    );
    assert_eq!(
        client.status().unwrap().error_code,
        ErrorCode::PayloadSignature
    );
    assert_eq!(client.slots().unwrap().active, 0);

    // And from a descriptor, as the CLI passes files.
    let file = std::fs::File::open(&ota.payload).unwrap();
    client.apply_file(file, 0, 0, &ota.headers).unwrap();
    complete(&events).unwrap();
    assert!(ota.slot_holds('b', "v2"));
    client.reset().unwrap();
    let slots = client.slots().unwrap();
    assert_eq!(
        (slots.current, slots.active),
        (0, 0),
        "reset undoes the switch"
    );
    assert_eq!(client.status().unwrap().state, State::Idle);
}

/// Not a test of its own: the client process that `a_killed_client_is_dropped` starts
/// (this test binary, run again with `ABUPDATE_TEST_CHILD_URI` set) and then kills.
#[test]
#[ignore = "helper process, started by a_killed_client_is_dropped"]
fn child_watcher() {
    let Ok(uri) = std::env::var("ABUPDATE_TEST_CHILD_URI") else {
        return;
    };
    let client = UpdateClient::connect(&Transport::parse(&uri).unwrap()).unwrap();
    let (_watch, events) = watch(&client);
    wait_for(&events, WAIT, |_| true);
    let mut out = std::io::stdout();
    writeln!(out, "\nCHILD-REGISTERED").unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_client_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ota = Ota::build(dir.path());
    let server = Server::start(
        dir.path(),
        engine(&ota.device, &ota.cert, None),
        vec![my_uid()],
    );
    let stays = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&stays);
    wait_for(&events, WAIT, |_| true);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_watcher",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ABUPDATE_TEST_CHILD_URI", server.transport.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let registered = lines.any(|line| line.is_ok_and(|l| l.trim() == "CHILD-REGISTERED"));
    assert!(registered, "the child did not register");
    assert!(
        server.core.dump(me()).unwrap().contains("callbacks: 2"),
        "{}",
        server.core.dump(me()).unwrap()
    );

    child.kill().unwrap();
    child.wait().unwrap();
    eventually(WAIT, "dead client dropped", || {
        server.core.dump(me()).unwrap().contains("callbacks: 1")
    });
    // The survivor is still served, to the end of an update.
    assert_eq!(stays.status().unwrap().state, State::Idle);
    stays
        .apply_file(ota.payload_file(), 0, 0, &ota.headers)
        .unwrap();
    complete(&events).unwrap();
}
