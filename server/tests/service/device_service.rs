//! The device service applies feed offers: `abupdated` (rsbinder RPC on a unix socket, a host
//! device directory) takes `applyFeedOffer` from the CLI (`abupdate check --apply` without
//! `--device`), checks in with a real abupdate-server (SQLite) behind nginx over HTTPS, streams
//! the encrypted offer nginx serves into slot B decrypting with its `--device-key`, and sends its
//! reports from the queue in its state directory. Three devices: one holds a key the offer was
//! not encrypted for (20, nothing written, the failure reported); one's service is killed
//! mid-download and the restarted service resumes from the checkpoint; one's reports cannot be
//! delivered (the server is down after the check-in), stay queued across a `kill -9` of the
//! service and arrive once the restarted service is handed the token again.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::tier::{
    abupdate_bin, build_payload, fingerprint, image, ok, ota_keys, root_bin, write_images, x25519,
    Release, BLOCKS, BUILD_DATE, CHANNEL, MODEL, PARTITIONS,
};
use crate::tls::{free_port, pki, Nginx};

const OFFER: &str = "v2-full";

fn abupdated_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| root_bin("abupdated"))
}

/// A host device running v1 in slot A, slot B empty, its own X25519 key.
struct Device {
    id: String,
    token: String,
    dir: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

impl Device {
    fn new(root: &Path, id: &str, token: String) -> Device {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        for part in PARTITIONS {
            std::fs::write(dir.join(format!("{part}_a.img")), image(part, 1)).unwrap();
            std::fs::write(dir.join(format!("{part}_b.img")), vec![0u8; BLOCKS * 4096]).unwrap();
        }
        std::fs::File::create(dir.join("misc.img"))
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        std::fs::write(
            dir.join("build.prop"),
            format!(
                "ro.build.date.utc={BUILD_DATE}\nro.product.name={MODEL}\nro.build.fingerprint={}\n",
                fingerprint(1)
            ),
        )
        .unwrap();
        let (key, public) = x25519(&dir);
        Device {
            id: id.to_owned(),
            token,
            dir,
            key,
            public,
        }
    }

    fn slot_b(&self) -> Vec<Vec<u8>> {
        PARTITIONS
            .iter()
            .map(|p| std::fs::read(self.dir.join(format!("{p}_b.img"))).unwrap())
            .collect()
    }

    fn holds_v2(&self) -> bool {
        self.slot_b() == PARTITIONS.map(|p| image(p, 2))
    }

    fn untouched(&self) -> bool {
        self.slot_b().iter().all(|b| b.iter().all(|x| *x == 0))
    }
}

/// `abupdated` for one device, serving RPC Binder on a unix socket; killed (SIGKILL) when
/// dropped. Its log (stderr) is kept in the device directory.
struct Daemon {
    child: Child,
    uri: String,
    log: PathBuf,
}

impl Daemon {
    fn start(device: &Device, key: &Path, ota_pub: &Path, ca: &Path) -> Daemon {
        let socket = device.dir.join("abupdate.sock");
        let _ = std::fs::remove_file(&socket);
        let uri = format!("unix://{}?profile=android13plus", socket.display());
        let log = device.dir.join("abupdated.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(abupdated_bin())
            .args(["--binder", &uri, "--device", device.dir.to_str().unwrap()])
            .args(["--current-slot", "a", "--channel", CHANNEL])
            .arg("--key")
            .arg(ota_pub)
            .arg("--ca")
            .arg(ca)
            .arg("--device-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, uri, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while daemon.cli(&["status"]).status.code() != Some(0) {
            assert!(
                daemon.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "abupdated did not come up: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(abupdate_bin());
        cmd.args(args).env("ABUPDATE_BINDER", &self.uri);
        cmd
    }

    /// `abupdate check --apply` through the service, left running; its output piped or not.
    fn spawn_apply(&self, feed_url: &str, device: &Device, piped: bool) -> Child {
        let output = || if piped { Stdio::piped() } else { Stdio::null() };
        self.cli_command(&check_args(feed_url, device, true))
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap()
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `abupdate check [--apply]` through the service.
fn check_args<'a>(feed_url: &'a str, device: &'a Device, apply: bool) -> Vec<&'a str> {
    let mut args = vec!["check", "--feed-url", feed_url, "--channel", CHANNEL];
    args.extend(["--device-id", &device.id, "--token", &device.token]);
    if apply {
        args.push("--apply");
    }
    args
}

/// The bytes done in a status line: `DOWNLOADING 12.5% (DONE/TOTAL bytes)`.
fn done(status: &str) -> u64 {
    status
        .split_once('(')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// (phase, code) of a device's reports as the database holds them, in arrival order.
async fn reports(pool: &sqlx::AnyPool, device: &str) -> Vec<(String, i64)> {
    use sqlx::Row;
    sqlx::query("SELECT phase, code, offer_id FROM reports WHERE device_id = $1 ORDER BY id")
        .bind(device)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            assert_eq!(row.get::<String, _>(2), OFFER);
            (row.get::<String, _>(0), row.get::<i64, _>(1))
        })
        .collect()
}

/// Waits (the service sends in the background) until the database holds `expected`.
async fn await_reports(
    pool: &sqlx::AnyPool,
    device: &str,
    expected: &[(&str, i64)],
    daemon: &Daemon,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = reports(pool, device).await;
        let want: Vec<(String, i64)> = expected.iter().map(|(p, c)| (p.to_string(), *c)).collect();
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < deadline && seen.len() <= want.len(),
            "reports of {device}: {seen:?}, expected {want:?}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SUCCESS: [(&str, i64); 4] = [
    ("download", 0),
    ("verify", 0),
    ("install", 0),
    ("complete", 0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_applies_encrypted_feed_offers_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let db = sqlite_url(root);
    let pki = pki(root);
    let tls_port = free_port();
    let public = format!("https://127.0.0.1:{tls_port}");
    let (ota_key, ota_pub) = ota_keys(root);
    let images = write_images(root);
    let payload = root.join("full.bin");
    build_payload(&ota_key, &images, &payload, false);

    let names = ["svc-wrong", "svc-kill", "svc-queued"].map(String::from);
    let mut tokens = add(&db, "device", &names).into_iter();
    let mut next = |id: &str| Device::new(&root.join("fleet"), id, tokens.next().unwrap());
    let (wrong, killed, queued) = (next("svc-wrong"), next("svc-kill"), next("svc-queued"));

    // The full v2 payload, encrypted for two of the three devices' keys.
    let feeds = root.join("feeds");
    let mut encrypt = vec!["--chunk-size".to_string(), "16384".into()];
    for d in [&killed, &queued] {
        encrypt.extend(["--encrypt-for".into(), d.public.display().to_string()]);
    }
    let release = Release {
        feeds: &feeds,
        public: &public,
        ota_key: &ota_key,
    };
    let published = release.publish(&payload, OFFER, &encrypt);
    assert!(published.contains("encrypted"), "{published}");

    // The server at a fixed address, so that a restarted one is behind the same nginx.
    let listen = format!("127.0.0.1:{}", free_port());
    let server_args = ["--public-url", public.as_str()];
    let mut server = Some(Server::start_at(&db, &listen, &feeds, &server_args));
    let _nginx = Nginx::start(
        &root.join("nginx"),
        tls_port,
        (&pki.cert, &pki.key),
        listen.parse().unwrap(),
        Some(&feeds),
    );
    let pool = connect_db(&db).await;
    let feed_url = format!("{public}/feed/{MODEL}/{CHANNEL}/feed.json");
    let slow_feed_url = format!("{public}/slow/feed/{MODEL}/{CHANNEL}/feed.json");

    // A key the offer was not encrypted for: 20, nothing written, the failure reported.
    let daemon = Daemon::start(&wrong, &wrong.key, &ota_pub, &pki.ca);
    let out = daemon.cli(&check_args(&feed_url, &wrong, true));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(20), "{stderr}\n{}", daemon.log());
    assert!(stderr.contains("not encrypted for this device"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("UPDATE_AVAILABLE id={OFFER} ")),
        "the service checked, picked and started the offer"
    );
    assert!(wrong.untouched());
    await_reports(
        &pool,
        &wrong.id,
        &[("download", 20), ("complete", 20)],
        &daemon,
    )
    .await;
    daemon.kill();

    // Killed mid-download (nginx sends slowly): the restarted service reports the update
    // interrupted and, offered the same offer again, resumes from the checkpoint.
    let daemon = Daemon::start(&killed, &killed.key, &ota_pub, &pki.ca);
    let mut cli = daemon.spawn_apply(&slow_feed_url, &killed, false);
    // The first of the payload's two operations written: its checkpoint follows at once (the
    // engine's interval, a second, has passed at 16 KiB/s); the second is seconds away.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = ok(&daemon.cli(&["status"]));
        if status.starts_with("DOWNLOADING") && done(&status) > 0 {
            break;
        }
        assert!(
            !status.starts_with("UPDATED") && Instant::now() < deadline,
            "not stopped mid-download: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill();
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(!killed.holds_v2());
    let daemon = Daemon::start(&killed, &killed.key, &ota_pub, &pki.ca);
    let status = ok(&daemon.cli(&["status"]));
    assert!(
        status.starts_with("INTERRUPTED") && done(&status) > 0,
        "the checkpoint is past the first operation: {status}"
    );
    let out = ok(&daemon.cli(&check_args(&feed_url, &killed, true)));
    assert!(out.contains("applied"), "{out}");
    assert!(killed.holds_v2());
    let log = daemon.log();
    assert!(log.contains("(resumed at operation "), "{log}");
    await_reports(&pool, &killed.id, &SUCCESS, &daemon).await;
    daemon.kill();

    // The server goes down once the device checked in: the apply completes, its reports stay
    // queued through a kill of the service, and arrive once the restarted service has the
    // token again (the token is never written to disk).
    let daemon = Daemon::start(&queued, &queued.key, &ota_pub, &pki.ca);
    let mut cli = daemon.spawn_apply(&slow_feed_url, &queued, true);
    let mut stdout = BufReader::new(cli.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("UPDATE_AVAILABLE"), "{first}");
    drop(server.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = cli.wait_with_output().unwrap();
    assert!(
        out.status.success() && rest.contains("applied"),
        "{rest}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(queued.holds_v2());
    let queue: serde_json::Value =
        serde_json::from_slice(&std::fs::read(queued.dir.join("state/report-queue.json")).unwrap())
            .unwrap();
    let phases: Vec<&str> = queue["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["report"]["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["download", "verify", "install", "complete"]);
    daemon.kill();
    let _server = Server::start_at(&db, &listen, &feeds, &server_args);
    let daemon = Daemon::start(&queued, &queued.key, &ota_pub, &pki.ca);
    assert!(reports(&pool, &queued.id).await.is_empty());
    let out = ok(&daemon.cli(&check_args(&feed_url, &queued, false)));
    assert!(out.starts_with("UPDATE_AVAILABLE"), "{out}");
    await_reports(&pool, &queued.id, &SUCCESS, &daemon).await;
    let status = ok(&daemon.cli(&["status"]));
    assert!(status.starts_with("UPDATED_NEED_REBOOT"), "{status}");
}
