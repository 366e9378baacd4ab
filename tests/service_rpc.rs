//! The service over the real rsbinder RPC transport (a unix socket in a temp dir), with
//! a real file-copying engine: several clients, callbacks, a killed client, permissions,
//! and calls answered while an update runs.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use abupdate::service::binder_adapter::Transport;
use abupdate::service::binder_service::Event;
use abupdate::service::client::UpdateClient;
use abupdate::service::State;
use abupdate::ErrorCode;
use common::copy_engine::CopyEngine;
use common::service::{eventually, my_uid, wait_for, Server};

const WAIT: Duration = Duration::from_secs(20);

fn payload(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.join("payload.img");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
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

fn is_complete(event: &Event) -> bool {
    matches!(event, Event::Complete(_))
}

#[test]
fn two_clients_follow_an_update_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(CopyEngine::new(
        &dir.path().join("dev"),
        0,
        4096,
        Duration::from_millis(5),
    ));
    let server = Server::start(dir.path(), engine.clone(), vec![my_uid()]);
    let (path, bytes) = payload(dir.path(), 64 * 1024);

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

    first
        .apply(
            &format!("file://{}", path.display()),
            0,
            0,
            &["FILE_SIZE=65536".to_owned()],
        )
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
    assert_eq!(std::fs::read(engine.image(1)).unwrap(), bytes);
    let status = second.status().unwrap();
    assert_eq!(status.state, State::UpdatedNeedReboot);
    assert_eq!(
        (status.current_slot, status.target_slot),
        (Some(0), Some(1))
    );
    assert_eq!(second.slots().unwrap().active, 1);

    // Applied means applied: another apply waits for the reboot or a reset.
    let again = first
        .apply(&format!("file://{}", path.display()), 0, 0, &[])
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::Busy);
    first.reset().unwrap();
    assert_eq!(first.status().unwrap().state, State::Idle);
    assert_eq!(first.slots().unwrap().active, 0);
}

#[test]
fn status_and_cancel_answer_while_an_update_runs() {
    let dir = tempfile::tempdir().unwrap();
    // 256 chunks of 20 ms: the update would take over 10 s.
    let engine = Arc::new(CopyEngine::new(
        &dir.path().join("dev"),
        0,
        1024,
        Duration::from_millis(20),
    ));
    let server = Server::start(dir.path(), engine, vec![my_uid()]);
    let (path, _) = payload(dir.path(), 256 * 1024);
    let client = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&client);

    client
        .apply(&format!("file://{}", path.display()), 0, 0, &[])
        .unwrap();
    wait_for(
        &events,
        WAIT,
        |e| matches!(e, Event::Status(s) if s.done > 0),
    );
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        let status = client.status().unwrap();
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status.state, State::Downloading);
        assert!(status.done < status.total);
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
    match wait_for(&events, WAIT, is_complete) {
        Event::Complete(Err(e)) => assert_eq!(e.code, ErrorCode::Cancelled),
        other => panic!("{other:?}"),
    }
    let status = client.status().unwrap();
    assert_eq!(
        (status.state, status.error_code),
        (State::Idle, ErrorCode::Cancelled)
    );
    assert!(server.core.dump().contains("last error: 38 (CANCELLED"));
}

#[test]
fn suspend_holds_the_update_until_resume() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(CopyEngine::new(
        &dir.path().join("dev"),
        0,
        1024,
        Duration::from_millis(10),
    ));
    let server = Server::start(dir.path(), engine, vec![my_uid()]);
    let (path, _) = payload(dir.path(), 64 * 1024);
    let client = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&client);

    client
        .apply(&format!("file://{}", path.display()), 0, 0, &[])
        .unwrap();
    wait_for(
        &events,
        WAIT,
        |e| matches!(e, Event::Status(s) if s.done > 0),
    );
    client.suspend().unwrap();
    wait_for(
        &events,
        WAIT,
        |e| matches!(e, Event::Status(s) if s.state == State::Suspended),
    );
    let held = client.status().unwrap().done;
    std::thread::sleep(Duration::from_millis(300));
    let later = client.status().unwrap();
    assert_eq!(later.state, State::Suspended);
    // At most the chunk in flight when the suspend came.
    assert!(
        later.done <= held + 1024,
        "moved from {held} to {} while suspended",
        later.done
    );
    assert_eq!(client.suspend().unwrap_err().code, ErrorCode::Busy);

    client.resume().unwrap();
    match wait_for(&events, WAIT, is_complete) {
        Event::Complete(result) => assert!(result.is_ok(), "{result:?}"),
        Event::Status(_) => unreachable!(),
    }
}

#[test]
fn callers_outside_the_allowed_uids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(CopyEngine::new(
        &dir.path().join("dev"),
        0,
        4096,
        Duration::ZERO,
    ));
    let server = Server::start(dir.path(), engine, vec![my_uid().wrapping_add(1)]);
    let client = UpdateClient::connect(&server.transport).unwrap();

    let refused = [
        client.apply("file:///nonexistent", 0, 0, &[]),
        client.suspend(),
        client.resume(),
        client.cancel(),
        client.reset(),
        client.mark_successful(),
    ];
    for result in refused {
        assert_eq!(result.unwrap_err().code, ErrorCode::PermissionDenied);
    }
    // Reading is open to everyone.
    assert_eq!(client.status().unwrap().state, State::Idle);
    assert_eq!(client.slots().unwrap().slots.len(), 2);
    assert_eq!(
        client.verify(b"junk").unwrap_err().code,
        ErrorCode::MalformedPayload
    );
    client.verify(b"CrAU\0\0\0\0\0\0\0\x02").unwrap();
}

#[test]
fn bad_requests_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(CopyEngine::new(
        &dir.path().join("dev"),
        0,
        4096,
        Duration::ZERO,
    ));
    let server = Server::start(dir.path(), engine, vec![my_uid()]);
    let client = UpdateClient::connect(&server.transport).unwrap();
    let (_watch, events) = watch(&client);

    let malformed = client
        .apply("file:///x", 0, 0, &["NO_EQUALS_SIGN".to_owned()])
        .unwrap_err();
    assert_eq!(
        malformed.code,
        ErrorCode::DeviceError,
        "an illegal argument: {malformed}"
    );
    assert_eq!(client.cancel().unwrap_err().code, ErrorCode::Busy);

    client
        .apply("file:///nonexistent/payload.bin", 0, 0, &[])
        .unwrap();
    match wait_for(&events, WAIT, is_complete) {
        Event::Complete(Err(e)) => assert_eq!(e.code, ErrorCode::DownloadFailed),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.status().unwrap().error_code,
        ErrorCode::DownloadFailed
    );
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
    let engine = Arc::new(CopyEngine::new(
        &dir.path().join("dev"),
        0,
        4096,
        Duration::ZERO,
    ));
    let server = Server::start(dir.path(), engine, vec![my_uid()]);
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
        server.core.dump().contains("callbacks: 2"),
        "{}",
        server.core.dump()
    );

    child.kill().unwrap();
    child.wait().unwrap();
    eventually(WAIT, "dead client dropped", || {
        server.core.dump().contains("callbacks: 1")
    });
    // The survivor is still served.
    assert_eq!(stays.status().unwrap().state, State::Idle);
    stays.apply("file:///nonexistent", 0, 0, &[]).unwrap();
    wait_for(&events, WAIT, is_complete);
}
