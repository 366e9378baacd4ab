//! Suspending, resuming and cancelling an apply mid-download from another thread through the
//! transfer's `TransferControl`, as the service does for `suspend`, `resume` and `cancel`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use abupdate::download::{SourceOptions, TransferControl};
use abupdate::engine::checkpoint::Phase;
use abupdate::engine::{Observer, Progress, Stage};
use abupdate::slot::Slot;
use abupdate::source::CancelWithTransfer;
use abupdate::ErrorCode;

use crate::common::nginx::Nginx;
use crate::common::proxy::{Mode, Plan, Proxy};
use crate::{apply_with, fixture, opts, rerun, serve, Device, Payload, BUFFER};

/// Counts the operations the engine has written.
#[derive(Default)]
struct Written(AtomicU64);

impl Observer for Written {
    fn progress(&self, progress: &Progress) {
        if progress.stage == Stage::Writing {
            self.0.store(progress.operations_done, Ordering::SeqCst);
        }
    }
}

impl Written {
    /// Waits until `operations` are written.
    fn wait_for(&self, operations: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.load(Ordering::SeqCst) < operations {
            assert!(
                Instant::now() < deadline,
                "the engine never wrote {operations} operations"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A point in the middle of the blob that straddles the payload's midpoint, as a count of
/// response bytes (the response head is a few hundred bytes), and how many operations lie
/// wholly before it.
fn midway(payload: &Payload) -> (u64, u64) {
    let data_offset = payload.data_offset();
    let middle = payload.size() / 2;
    let ops: Vec<_> = payload.operations().collect();
    let index = ops
        .iter()
        .position(|op| data_offset + op.data_offset + op.data_length > middle)
        .expect("an operation past the middle");
    let op = ops[index];
    assert!(
        op.data_length > 16 * 1024,
        "the blob is too small to stop in"
    );
    assert!(ops[..index].iter().all(|op| op.kind.has_blob()));
    (
        data_offset + op.data_offset + op.data_length / 2,
        index as u64,
    )
}

/// Source options for a server that stalls: no read timeout during the test.
fn patient() -> SourceOptions {
    SourceOptions {
        read_timeout: Duration::from_secs(10),
        ..opts()
    }
}

#[test]
fn suspend_and_resume_mid_apply() {
    let fx = fixture();
    let payload = &fx.full;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let (stop_at, complete) = midway(payload);
    // The server goes quiet mid-blob for longer than the test: only a resume finishes.
    proxy.push(Plan::stall(stop_at, Duration::from_secs(30)));
    let source = patient();
    let control = source.control.clone();
    let device = Device::fresh();
    let written = Written::default();
    let url = proxy.url("payload.bin");
    thread::scope(|s| {
        let applying = s.spawn(|| apply_with(&device, &url, &payload.properties, source, &written));
        written.wait_for(complete);
        thread::sleep(Duration::from_millis(100));

        let suspended = Instant::now();
        control.suspend();
        thread::sleep(Duration::from_millis(500));
        let seen = proxy.seen();
        assert_eq!(seen.len(), 1, "no new connection while suspended");
        let gone = seen[0].client_gone.expect("suspend closes the connection");
        assert!(
            gone.duration_since(suspended) < Duration::from_millis(300),
            "closed late"
        );
        assert!(!applying.is_finished(), "the apply waits while suspended");

        control.resume();
        let (outcome, fetched) = applying.join().unwrap().unwrap();
        device.assert_updated(payload);
        assert_eq!(outcome.report.resumed_at, None, "the same apply went on");
        let seen = proxy.seen();
        assert_eq!(seen.len(), 2);
        // The new request asks for the byte after the last one that arrived.
        let resumed_at = seen[1].range_start().unwrap();
        assert!(
            (stop_at - 1024..stop_at).contains(&resumed_at),
            "resumed at {resumed_at}, stopped at {stop_at} response bytes"
        );
        assert_eq!(fetched, payload.size(), "nothing fetched twice");
    });
}

#[test]
fn cancel_mid_download_leaves_a_consistent_checkpoint_and_resumes() {
    let fx = fixture();
    let payload = &fx.full;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let proxy = Proxy::start(nginx.port, Mode::Http);
    let (stop_at, complete) = midway(payload);
    proxy.push(Plan::stall(stop_at, Duration::from_secs(30)));
    let source = patient();
    let control = source.control.clone();
    let device = Device::fresh();
    let written = Written::default();
    let observer = CancelWithTransfer::new(&written, control.clone());
    let url = proxy.url("payload.bin");
    let (run, took) = thread::scope(|s| {
        let applying =
            s.spawn(|| apply_with(&device, &url, &payload.properties, source, &observer));
        written.wait_for(complete);
        thread::sleep(Duration::from_millis(100));
        let cancelled = Instant::now();
        control.cancel();
        let run = applying.join().unwrap();
        (run, cancelled.elapsed())
    });
    let error = run.unwrap_err();
    assert_eq!(error.code, ErrorCode::Cancelled, "{error}");
    eprintln!("cancel took {took:?}");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(device.active_slot(), Slot::A);
    device.assert_slot_a_untouched();
    let cp = device.checkpoint().expect("a checkpoint");
    assert_eq!(cp.phase, Phase::Writing);
    assert_eq!(
        u64::from(cp.next_operation),
        complete,
        "every written operation is recorded"
    );
    assert_eq!(cp.resume_failures, 0, "a cancel is no failure");
    device.assert_checkpoint_consistent(&cp, payload);

    // A later apply, with a new transfer, resumes there and finishes.
    rerun(&device, &nginx.url("payload.bin"), payload);
}

/// Cancels the transfer as soon as the engine verifies the partition named.
struct CancelAt {
    partition: &'static str,
    control: TransferControl,
}

impl Observer for CancelAt {
    fn progress(&self, progress: &Progress) {
        if progress.stage == Stage::Verifying
            && progress.partition.as_deref() == Some(self.partition)
        {
            self.control.cancel();
        }
    }
}

/// Once the download is complete the engine reads no more payload; a cancelled transfer still
/// stops it, through `CancelWithTransfer`, and a re-run fetches only the metadata.
#[test]
fn cancel_while_verifying_stops_the_engine_and_resumes() {
    let fx = fixture();
    let payload = &fx.full;
    let nginx = Nginx::start(None);
    serve(&nginx, payload);
    let source = opts();
    let control = source.control.clone();
    let cancel_at = CancelAt {
        partition: "vendor",
        control: control.clone(),
    };
    let observer = CancelWithTransfer::new(&cancel_at, control);
    let device = Device::fresh();
    let run = apply_with(
        &device,
        &nginx.url("payload.bin"),
        &payload.properties,
        source,
        &observer,
    );
    assert_eq!(run.fetched, payload.size());
    let error = run.unwrap_err();
    assert_eq!(error.code, ErrorCode::Cancelled, "{error}");
    assert_eq!(device.active_slot(), Slot::A);
    device.assert_slot_a_untouched();
    let cp = device.checkpoint().expect("a checkpoint");
    assert_eq!(cp.phase, Phase::Verifying);
    assert_eq!(
        cp.verified_partitions, 1,
        "system was verified, vendor was not"
    );

    let fetched = rerun(&device, &nginx.url("payload.bin"), payload);
    assert!(fetched <= payload.data_offset() + BUFFER);
}
