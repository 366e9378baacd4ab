//! Test harness: the real `abupdate-server` binary as a child process, a minimal HTTP/1.1
//! client (hyper), a throwaway PostgreSQL cluster, and the feed documents the tests serve.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use sqlx::Row;

pub const BIN: &str = env!("CARGO_BIN_EXE_abupdate-server");

/// A running server; killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(db: &str, feed_dir: &Path, extra: &[&str]) -> Server {
        Self::start_at(db, "127.0.0.1:0", feed_dir, extra)
    }

    /// A server listening on `listen` (a restarted server keeps its address).
    pub fn start_at(db: &str, listen: &str, feed_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["--db", db, "serve", "--listen", listen, "--feed-dir"])
            .arg(feed_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn abupdate-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("abupdate-server listening on http://")
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .parse()
            .unwrap();
        Server { addr, child }
    }

    /// Whether the process is still alive (hostile input must not kill it).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request(self.addr, "GET", path, headers, Vec::new()).await
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Resp {
        request(self.addr, "POST", path, headers, body.into()).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &serde_json::Value) -> Resp {
        let auth = format!("Bearer {token}");
        self.post(
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await
    }
}

/// Registers names with `abupdate-server device|operator add` and returns their tokens.
pub fn add(db: &str, kind: &str, names: &[String]) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["--db", db, kind, "add"])
        .args(names)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let tokens: Vec<String> = text
        .lines()
        .zip(names)
        .map(|(l, n)| {
            let (name, token) = l.split_once(' ').unwrap();
            assert_eq!(name, n);
            token.to_string()
        })
        .collect();
    assert_eq!(tokens.len(), names.len());
    tokens
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// Sends raw bytes and returns the status code of the response (for requests hyper's client
/// would not send, e.g. a lying or chunked oversized body).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (and close) before it read everything: ignore write errors.
    let _ = s.write_all(bytes);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no response: {head:?}"))
}

/// The rollout bucket as SERVER_API.md defines it (written here again, independently of the
/// server's code, so that the two are checked against each other).
pub fn bucket(offer: &str, device: &str) -> u64 {
    let d = Sha256::digest(
        [
            b"abupdate-rollout\0",
            offer.as_bytes(),
            b"\0",
            device.as_bytes(),
        ]
        .concat(),
    );
    u64::from_be_bytes(d[..8].try_into().unwrap()) % 100
}

/// An offer in a test feed: id, build timestamp, source fingerprint (delta) and percentage.
pub struct TestOffer {
    pub id: &'static str,
    pub ts: i64,
    pub source: Option<&'static str>,
    pub percent: u8,
}

/// Writes `<dir>/<model>/<channel>/feed.json` in the feed format (unsigned: the server does not
/// check signatures; devices do).
pub fn write_feed(dir: &Path, model: &str, channel: &str, offers: &[TestOffer]) {
    let offers: Vec<serde_json::Value> = offers
        .iter()
        .map(|o| {
            serde_json::json!({
                "id": o.id,
                "build": { "fingerprint": format!("fp-{}", o.id), "timestamp": o.ts,
                           "security_patch": "2026-12-05", "rollback_indexes": {} },
                "source_fingerprint": o.source,
                "payload": { "url": format!("{}.bin", o.id), "offset": 0, "size": 1000,
                             "properties": [], "encryption": null },
                "rollout_percent": o.percent,
                "notes": "test"
            })
        })
        .collect();
    let feed = serde_json::json!({
        "format": 1, "model": model, "channel": channel, "generated_at": 1_733_450_000,
        "report_url": "http://x/v1/report", "checkin_url": "http://x/v1/checkin", "offers": offers
    });
    let d = dir.join(model).join(channel);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("feed.json"),
        serde_json::to_vec_pretty(&feed).unwrap(),
    )
    .unwrap();
}

/// The device's offer rule (SERVER_API.md), applied by the simulated device.
pub fn choose(
    offers: &[TestOffer],
    percents: &serde_json::Value,
    device: &str,
    fp: &str,
    ts: i64,
) -> Option<&'static str> {
    let eligible: Vec<&TestOffer> = offers
        .iter()
        .filter(|o| {
            o.ts > ts
                && fp != format!("fp-{}", o.id)
                && (bucket(o.id, device) as i64) < percents[o.id].as_i64().unwrap()
        })
        .collect();
    let newest = |it: Vec<&&TestOffer>| it.into_iter().max_by_key(|o| o.ts).map(|o| o.id);
    newest(eligible.iter().filter(|o| o.source == Some(fp)).collect())
        .or_else(|| newest(eligible.iter().filter(|o| o.source.is_none()).collect()))
}

pub async fn connect_db(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

/// Per offer: (offered, downloading, installed, failed) computed from the raw tables with the
/// test's own queries (latest report per device and offer by arrival order).
pub async fn counts_from_db(pool: &sqlx::AnyPool, offer: &str) -> [i64; 4] {
    let offered: i64 =
        sqlx::query("SELECT COUNT(DISTINCT device_id) FROM offers_made WHERE offer_id = $1")
            .bind(offer)
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
    let rows = sqlx::query(
        "SELECT r.phase, r.code FROM reports r WHERE r.offer_id = $1 AND r.id = \
         (SELECT MAX(id) FROM reports q WHERE q.device_id = r.device_id AND q.offer_id = r.offer_id)",
    )
    .bind(offer)
    .fetch_all(pool)
    .await
    .unwrap();
    let (mut downloading, mut installed, mut failed) = (0, 0, 0);
    for r in rows {
        let phase: String = r.get(0);
        let code: i64 = r.get(1);
        match (code, phase.as_str()) {
            (0, "complete") => installed += 1,
            (0, _) => downloading += 1,
            _ => failed += 1,
        }
    }
    [offered, downloading, installed, failed]
}

pub async fn percent_in_db(pool: &sqlx::AnyPool, offer: &str) -> i64 {
    sqlx::query("SELECT percent FROM rollouts WHERE offer_id = $1")
        .bind(offer)
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0)
}

/// The number in the dashboard's summary table for an offer and column.
pub fn summary_cell(html: &str, offer: &str, key: &str) -> i64 {
    let row_start = html
        .find(&format!("<tr data-offer=\"{offer}\">"))
        .unwrap_or_else(|| panic!("no row {offer}"));
    let row = &html[row_start..];
    let row = &row[..row.find("</tr>").unwrap()];
    let cell = &row[row
        .find(&format!("data-k=\"{key}\""))
        .unwrap_or_else(|| panic!("no {key}"))..];
    let value = if key == "percent" {
        let v = &cell[cell.find("data-v=\"").unwrap() + 8..];
        &v[..v.find('"').unwrap()]
    } else {
        let v = &cell[cell.find('>').unwrap() + 1..];
        &v[..v.find('<').unwrap()]
    };
    value
        .parse()
        .unwrap_or_else(|_| panic!("{offer} {key}: {value:?}"))
}

/// A throwaway PostgreSQL 15 cluster (Debian's binaries) on a free loopback port, stopped when
/// dropped. As root, the server runs as the `postgres` user (initdb refuses root).
pub struct Postgres {
    pub url: String,
    dir: tempfile::TempDir,
    as_root: bool,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn pg_cmd(as_root: bool, tool: &str) -> Command {
    let path = format!("{PG_BIN}/{tool}");
    assert!(
        Path::new(&path).exists(),
        "{path} missing: install Debian's postgresql"
    );
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

impl Postgres {
    pub fn start(settings: &[&str]) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("abupdate-pg")
            .tempdir()
            .unwrap();
        let as_root = is_root();
        if as_root {
            let out = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(out.success(), "chown to the postgres user");
        }
        let data = dir.path().join("data");
        let st = pg_cmd(as_root, "initdb")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        for s in settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let st = pg_cmd(as_root, "pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-o", &opts, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        if !st.success() {
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            panic!("pg_ctl start failed: {log}");
        }
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            as_root,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = pg_cmd(self.as_root, "pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("server.db").display())
}
