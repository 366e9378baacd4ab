//! Load benchmark (not run in CI): an open-loop generator sends device check-ins to a real
//! `abupdate-server` on loopback at a fixed rate (default 1,000/s for 5 s) from 1,000 devices
//! over keep-alive connections, with SQLite and then PostgreSQL, and prints the achieved rate
//! and latency percentiles (measured from each request's scheduled start, so a stalled server
//! cannot hide its queueing). Target: p99 < 50 ms.
//!
//!   cargo bench -p abupdate-server --bench checkin_load
//!   ABUPDATE_BENCH_RATE=2000 ABUPDATE_BENCH_SECONDS=10 cargo bench -p abupdate-server --bench checkin_load

#[allow(dead_code)]
#[path = "../tests/service/common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const DEVICES: usize = 1000;
const CONNECTIONS: usize = 100;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Job {
    due: Instant,
    device: usize,
}

async fn run(label: &str, db: &str, rate: u64, secs: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let feeds = tmp.path().join("feeds");
    write_feed(
        &feeds,
        "bench",
        "stable",
        &[
            TestOffer {
                id: "full-9",
                ts: 9000,
                source: None,
                percent: 50,
            },
            TestOffer {
                id: "delta-9",
                ts: 9000,
                source: Some("fp-8"),
                percent: 100,
            },
        ],
    );
    let names: Vec<String> = (0..DEVICES).map(|i| format!("bench-{i:05}")).collect();
    let tokens = Arc::new(add(db, "device", &names));
    let srv = Server::start(db, &feeds, &[]);
    let addr = srv.addr;
    let bodies: Arc<Vec<String>> = Arc::new(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                serde_json::json!({"device_id": n, "model": "bench", "channel": "stable",
                    "build_fingerprint": if i % 2 == 0 { "fp-8" } else { "fp-7" }, "build_timestamp": 1000})
                .to_string()
            })
            .collect(),
    );

    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(100_000);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let (rx, tokens, bodies) = (rx.clone(), tokens.clone(), bodies.clone());
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let job = { rx.lock().await.recv().await };
                let Some(job) = job else { break };
                sender.ready().await.unwrap();
                let req = hyper::Request::post("/v1/checkin")
                    .header("host", "bench")
                    .header("authorization", format!("Bearer {}", tokens[job.device]))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(bodies[job.device].clone())))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                let ok = resp.status() == 200;
                resp.into_body().collect().await.unwrap();
                lat.push(job.due.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let total = rate * secs;
    let start = Instant::now() + Duration::from_millis(100);
    for k in 0..total {
        let due = start + Duration::from_nanos(k * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        tx.send(Job {
            due,
            device: (k as usize * 7919) % DEVICES,
        })
        .await
        .unwrap();
    }
    drop(tx);
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{label}: {} check-ins in {:.2} s = {:.0}/s (target {rate}/s), errors {errors}, \
         latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} -> p99 {} 50 ms",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        if pct(0.99) < 50.0 { "under" } else { "OVER" }
    );
}

fn main() {
    let rate = env_num("ABUPDATE_BENCH_RATE", 1000);
    let secs = env_num("ABUPDATE_BENCH_SECONDS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        run("sqlite", &sqlite_url(tmp.path()), rate, secs).await;
        // Durability comparable to SQLite's WAL with synchronous=NORMAL: commits are not
        // fsync'd one by one, the database stays consistent.
        let pg = Postgres::start(&["synchronous_commit=off"]);
        run("postgres", &pg.url, rate, secs).await;
    });
}
