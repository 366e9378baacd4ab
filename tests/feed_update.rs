//! The update feed end to end with the CLI: `abupdate publish` writes a signed feed directory
//! that a real nginx serves over HTTPS (CA and certificate from `openssl`), `abupdate check
//! --apply --device DIR` fetches, verifies and applies plain and encrypted offers (the device
//! key made by `openssl genpkey -algorithm X25519`), checks in and reports to a small HTTP
//! endpoint on loopback. Hostile feeds and payloads are refused with their codes before any
//! byte reaches the target slot.

#[path = "common/mod.rs"]
mod common;
#[path = "common/keystore2.rs"]
mod keystore2;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::nginx::Nginx;
use common::ota::{Ota, PARTITIONS};
use common::pki::Pki;

const MODEL: &str = "testphone";

fn abupdate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is required (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A device key pair as openssl writes them: (private PKCS#8, public SPKI).
fn device_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "X25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (key, public)
}

fn ota_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/avb/testkey_rsa2048.pem")
}

struct World {
    root: tempfile::TempDir,
    ota: Ota,
    pki: Pki,
    nginx: Nginx,
}

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        let ota = Ota::build(root.path());
        let pki = Pki::generate();
        let nginx = Nginx::start(Some(&pki));
        World {
            root,
            ota,
            pki,
            nginx,
        }
    }

    /// A fresh copy of the device (slot A v1 running, slot B empty) with this build.prop.
    fn device(&self, name: &str, props: &str) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&self.ota.device).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        std::fs::write(dir.join("build.prop"), props).unwrap();
        dir
    }

    fn publish(&self, channel: &str, extra: &[&str]) -> String {
        let www = self.nginx.www();
        let payload = self.ota.payload.to_str().unwrap().to_owned();
        let key = ota_key().to_str().unwrap().to_owned();
        let mut args = vec![
            "publish",
            "--feed-dir",
            www.to_str().unwrap(),
            "--model",
            MODEL,
            "--channel",
            channel,
            "--payload",
            &payload,
            "--fingerprint",
            "test/testphone/v2:user/release-keys",
            "--notes",
            "Security fixes",
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        ok(&abupdate(&args))
    }

    fn feed_url(&self, channel: &str) -> String {
        self.nginx
            .tls_url("127.0.0.1", &format!("{MODEL}/{channel}/feed.json"))
    }

    fn check(&self, device: &Path, channel: &str, extra: &[&str]) -> Output {
        let url = self.feed_url(channel);
        let mut args = vec![
            "check",
            "--device",
            device.to_str().unwrap(),
            "--feed-url",
            &url,
            "--channel",
            channel,
            "--device-id",
            "device-0001",
            "--key",
            self.ota.cert.to_str().unwrap(),
            "--ca",
            self.pki.ca_cert.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        abupdate(&args)
    }
}

const PROPS: &str = "ro.build.date.utc=1700000000\nro.product.name=testphone\n\
                     ro.build.fingerprint=test/testphone/v1:user/release-keys\n";

fn slot_b_untouched(device: &Path) -> bool {
    PARTITIONS.iter().all(|name| {
        std::fs::read(device.join(format!("{name}_b.img")))
            .unwrap()
            .iter()
            .all(|b| *b == 0)
    })
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A loopback HTTP endpoint for check-ins and reports: records each request and answers from
/// a script (then 204 for reports, a check-in answer for check-ins).
#[derive(Clone, Default)]
struct Endpoint {
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
    script: Arc<Mutex<Vec<u16>>>,
}

impl Endpoint {
    fn start(checkin_answer: &'static str) -> (Endpoint, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = Endpoint::default();
        let shared = endpoint.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                let (mut length, mut auth) = (0usize, String::new());
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "authorization" => auth = value.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                shared.seen.lock().unwrap().push((
                    path.clone(),
                    auth,
                    String::from_utf8(body).unwrap(),
                ));
                let scripted = {
                    let mut script = shared.script.lock().unwrap();
                    (path == "/v1/report" && !script.is_empty()).then(|| script.remove(0))
                };
                let answer = match (scripted, path.as_str()) {
                    (Some(status), _) => format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n"),
                    (None, "/v1/checkin") => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{checkin_answer}",
                        checkin_answer.len()
                    ),
                    (None, _) => "HTTP/1.1 204 No Content\r\n\r\n".to_owned(),
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (endpoint, port)
    }

    fn reports(&self) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, ..)| path == "/v1/report")
            .map(|(_, _, body)| serde_json::from_str(body).unwrap())
            .collect()
    }
}

#[test]
fn plain_and_encrypted_offers_apply_over_https_with_checkin_and_reports() {
    let world = World::new();
    let keys = world.root.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (device_key, device_pub) = device_key(&keys, "device");

    // A plain full offer: check shows it, check --apply installs it.
    world.publish("plain", &[]);
    let plain = world.device("plain", PROPS);
    let out = ok(&world.check(&plain, "plain", &[]));
    let size = std::fs::metadata(&world.ota.payload).unwrap().len();
    assert!(
        out.starts_with("UPDATE_AVAILABLE")
            && out.contains(&format!("size={size} full"))
            && out.contains("notes=\"Security fixes\""),
        "{out}"
    );
    assert!(slot_b_untouched(&plain), "check alone writes nothing");
    ok(&world.check(&plain, "plain", &["--apply"]));
    assert!(slot_holds(&world.ota, &plain, "v2"));

    // An encrypted offer with a check-in and reports; the first report send meets a 503
    // and is sent again after the backoff.
    let (endpoint, port) = Endpoint::start(r#"{"feed_url":"x","rollout":{}}"#);
    endpoint.script.lock().unwrap().push(503);
    let report_url = format!("http://127.0.0.1:{port}/v1/report");
    let checkin_url = format!("http://127.0.0.1:{port}/v1/checkin");
    let out = world.publish(
        "enc",
        &[
            "--id",
            "enc-full",
            "--encrypt-for",
            device_pub.to_str().unwrap(),
            "--chunk-size",
            "16384",
            "--report-url",
            &report_url,
            "--checkin-url",
            &checkin_url,
        ],
    );
    assert!(out.contains("encrypted"), "{out}");
    let enc = world.device("enc", PROPS);
    let token = ["--token", "secret-token"];
    let key_args = ["--device-key", device_key.to_str().unwrap()];
    let out = world.check(&enc, "enc", &[&["--apply"][..], &key_args, &token].concat());
    ok(&out);
    assert!(slot_holds(&world.ota, &enc, "v2"));
    let seen = endpoint.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "/v1/checkin");
    assert_eq!(seen[0].1, "Bearer secret-token");
    let checkin: serde_json::Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(checkin["model"], MODEL);
    assert_eq!(checkin["device_id"], "device-0001");
    let reports = endpoint.reports();
    let phases: Vec<(&str, i64)> = reports
        .iter()
        .map(|r| (r["phase"].as_str().unwrap(), r["code"].as_i64().unwrap()))
        .collect();
    // The first send (the download report) met the 503 and went again.
    assert_eq!(
        phases,
        [
            ("download", 0),
            ("download", 0),
            ("verify", 0),
            ("install", 0),
            ("complete", 0)
        ]
    );
    let last = &reports[4];
    assert_eq!(last["to_build"], "test/testphone/v2:user/release-keys");
    assert_eq!(last["from_build"], "test/testphone/v1:user/release-keys");
    assert_eq!(
        (last["slot"].as_str(), last["offer_id"].as_str()),
        (Some("b"), Some("enc-full"))
    );
    assert!(ReportQueueEmpty::of(&enc));

    // The service pauses the rollout (0%) at check-in: no update, whatever the feed says.
    let (_paused, port) = Endpoint::start(r#"{"feed_url":"x","rollout":{"enc-full":0}}"#);
    let checkin_url = format!("http://127.0.0.1:{port}/v1/checkin");
    world.publish(
        "enc",
        &[
            "--id",
            "enc-full",
            "--encrypt-for",
            device_pub.to_str().unwrap(),
            "--checkin-url",
            &checkin_url,
        ],
    );
    let fresh = world.device("paused", PROPS);
    let out = ok(&world.check(&fresh, "enc", &[&key_args[..], &token].concat()));
    assert_eq!(out.trim(), "NO_UPDATE");
}

fn slot_holds(ota: &Ota, device: &Path, version: &str) -> bool {
    PARTITIONS.iter().all(|name| {
        std::fs::read(device.join(format!("{name}_b.img"))).unwrap()
            == std::fs::read(ota.image(name, version)).unwrap()
    })
}

struct ReportQueueEmpty;
impl ReportQueueEmpty {
    fn of(device: &Path) -> bool {
        abupdate::feed::report::ReportQueue::new(&device.join("state"))
            .pending()
            .unwrap()
            .is_empty()
    }
}

fn www_file(world: &World, channel: &str, name: &str) -> PathBuf {
    world.nginx.www().join(MODEL).join(channel).join(name)
}

fn refused(out: &Output, expected: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out), expected, "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
}

#[test]
fn hostile_feeds_and_payloads_are_refused_before_writing() {
    let world = World::new();
    let keys = world.root.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (_, device_pub) = device_key(&keys, "device");
    let (other_key, _) = device_key(&keys, "other");
    let device_key = keys.join("device.pem");

    // A feed signed with a key the device does not trust: 15.
    world.publish("forged", &[]);
    let forger = abupdate::payload::signature::Signer::generate(2048).unwrap();
    let feed = std::fs::read(www_file(&world, "forged", "feed.json")).unwrap();
    let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &feed)
        .as_ref()
        .try_into()
        .unwrap();
    std::fs::write(
        www_file(&world, "forged", "feed.json.sig"),
        forger.sign_digest(&digest).unwrap(),
    )
    .unwrap();
    let device = world.device("forged", PROPS);
    refused(
        &world.check(&device, "forged", &["--apply"]),
        15,
        "does not verify",
    );
    assert!(slot_b_untouched(&device));

    // A genuine feed altered after signing (the rollout raised): 15.
    world.publish("altered", &["--rollout", "0"]);
    let path = www_file(&world, "altered", "feed.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"rollout_percent\": 0", "\"rollout_percent\": 100"),
    )
    .unwrap();
    let device = world.device("altered", PROPS);
    refused(
        &world.check(&device, "altered", &["--apply"]),
        15,
        "does not verify",
    );
    assert!(slot_b_untouched(&device));

    // A feed older than the running build: 16.
    world.publish("stale", &[]);
    let future = PROPS.replace("1700000000", "4000000000");
    let device = world.device("stale", &future);
    refused(
        &world.check(&device, "stale", &["--apply"]),
        16,
        "before the running build",
    );
    assert!(slot_b_untouched(&device));

    // An older feed replayed after the device accepted a newer one: 16.
    world.publish("replay", &["--rollout", "0"]);
    let old_feed = std::fs::read(www_file(&world, "replay", "feed.json")).unwrap();
    let old_sig = std::fs::read(www_file(&world, "replay", "feed.json.sig")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    world.publish("replay", &["--rollout", "0"]);
    let device = world.device("replay", PROPS);
    assert_eq!(ok(&world.check(&device, "replay", &[])).trim(), "NO_UPDATE");
    std::fs::write(www_file(&world, "replay", "feed.json"), old_feed).unwrap();
    std::fs::write(www_file(&world, "replay", "feed.json.sig"), old_sig).unwrap();
    refused(
        &world.check(&device, "replay", &["--apply"]),
        16,
        "before the last feed accepted",
    );
    assert!(slot_b_untouched(&device));

    // A feed for another model: 17.
    let device = world.device("other-model", &PROPS.replace("=testphone", "=otherphone"));
    refused(
        &world.check(&device, "stale", &["--apply"]),
        17,
        "this device is",
    );
    assert!(slot_b_untouched(&device));

    // An encrypted payload for another device's key: 20.
    world.publish(
        "enc",
        &[
            "--encrypt-for",
            device_pub.to_str().unwrap(),
            "--chunk-size",
            "16384",
        ],
    );
    let device = world.device("wrong-key", PROPS);
    let wrong = ["--apply", "--device-key", other_key.to_str().unwrap()];
    refused(
        &world.check(&device, "enc", &wrong),
        20,
        "not encrypted for this device",
    );
    assert!(slot_b_untouched(&device));

    // The first two chunks swapped on the server: 20 before chunk 0 is used.
    let id = "1700000100-full";
    let enc_path = www_file(&world, "enc", &format!("{id}.bin.enc"));
    let sealed = std::fs::read(&enc_path).unwrap();
    let chunk = 16384 + 16;
    let mut swapped = sealed.clone();
    swapped[..chunk].copy_from_slice(&sealed[chunk..2 * chunk]);
    swapped[chunk..2 * chunk].copy_from_slice(&sealed[..chunk]);
    std::fs::write(&enc_path, &swapped).unwrap();
    let right = ["--apply", "--device-key", device_key.to_str().unwrap()];
    let device = world.device("swapped", PROPS);
    refused(
        &world.check(&device, "enc", &right),
        20,
        "chunk 0 does not authenticate",
    );
    assert!(slot_b_untouched(&device));

    // One byte flipped in chunk 0: 20.
    let mut flipped = sealed.clone();
    flipped[100] ^= 0x40;
    std::fs::write(&enc_path, &flipped).unwrap();
    let device = world.device("flipped", PROPS);
    refused(
        &world.check(&device, "enc", &right),
        20,
        "chunk 0 does not authenticate",
    );
    assert!(slot_b_untouched(&device));

    // Cut inside chunk 0, and cut after chunk 2: 20 naming the chunk; the slot never switches.
    std::fs::write(&enc_path, &sealed[..10_000]).unwrap();
    let device = world.device("cut-early", PROPS);
    refused(
        &world.check(&device, "enc", &right),
        20,
        "ends inside chunk 0",
    );
    assert!(slot_b_untouched(&device));
    std::fs::write(&enc_path, &sealed[..3 * chunk]).unwrap();
    let device = world.device("cut-late", PROPS);
    refused(
        &world.check(&device, "enc", &right),
        20,
        "ends inside chunk 3",
    );
    let slots = ok(&abupdate(&["slots", "--device", device.to_str().unwrap()]));
    assert!(slots.contains("_a: current=true active=true"), "{slots}");

    // The intact file applies with the right key.
    std::fs::write(&enc_path, &sealed).unwrap();
    let device = world.device("intact", PROPS);
    ok(&world.check(&device, "enc", &right));
    assert!(slot_holds(&world.ota, &device, "v2"));
}

/// An `abupdated` on RPC Binder at `uri` for `device`, with `extra` arguments; its log in
/// `log`. Returns once its socket exists.
fn start_abupdated(
    world: &World,
    uri: &str,
    device: &Path,
    extra: &[&str],
    log: &Path,
) -> std::process::Child {
    let socket = uri
        .strip_prefix("unix://")
        .and_then(|rest| rest.split('?').next())
        .map(PathBuf::from)
        .unwrap();
    let _ = std::fs::remove_file(&socket);
    let daemon = Command::new(env!("CARGO_BIN_EXE_abupdated"))
        .args(["--binder", uri, "--device", device.to_str().unwrap()])
        .args(["--key", world.ota.cert.to_str().unwrap()])
        .args(["--ca", world.pki.ca_cert.to_str().unwrap()])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon
}

/// An encrypted offer applied by an `abupdated` whose device key keystore2 keeps
/// (`--device-key keystore --keystore-binder URI`; a stand-in keystore2 over RPC Binder, as a
/// host has none): the device the offer was encrypted for installs it; a device whose
/// keystore holds another key ends with 20 and its slot B untouched.
#[test]
fn service_applies_an_offer_encrypted_for_its_keystore_key() {
    use abupdate::feed::device_key::{public_key_to_pem, DeviceKey as _};
    use abupdate::feed::keystore_key::KeystoreDeviceKey;

    let world = World::new();
    let keystore = keystore2::Keystore2::start();
    let other = keystore2::Keystore2::start();
    // The device's public key, as abupdated logs it for the publisher (made here first, so
    // abupdated finds it).
    let public = KeystoreDeviceKey::open(&keystore.transport())
        .unwrap()
        .public_key();
    let public_pem = world.root.path().join("keystore.pub.pem");
    std::fs::write(&public_pem, public_key_to_pem(&public)).unwrap();
    let out = world.publish(
        "ks",
        &[
            "--id",
            "ks-full",
            "--encrypt-for",
            public_pem.to_str().unwrap(),
            "--chunk-size",
            "16384",
        ],
    );
    assert!(out.contains("encrypted"), "{out}");

    let uri = format!(
        "unix://{}?profile=android13plus",
        world.root.path().join("abupdate.sock").display()
    );
    let mut results = Vec::new();
    for (name, ks) in [("keystore", &keystore), ("foreign", &other)] {
        let device = world.device(name, PROPS);
        let log = world.root.path().join(format!("{name}.log"));
        let extra = [
            "--channel",
            "ks",
            "--device-key",
            "keystore",
            "--keystore-binder",
            &ks.uri,
        ];
        let mut daemon = start_abupdated(&world, &uri, &device, &extra, &log);
        let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
            .args(["check", "--apply", "--feed-url", &world.feed_url("ks")])
            .args(["--device-id", "device-0001"])
            .env("ABUPDATE_BINDER", &uri)
            .output()
            .unwrap();
        let _ = daemon.kill();
        let _ = daemon.wait();
        let log = std::fs::read_to_string(&log).unwrap();
        results.push((device, out, log));
    }
    let (device, out, log) = &results[0];
    assert_eq!(
        code(out),
        0,
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(slot_holds(&world.ota, device, "v2"));
    // The PEM's base64 line (the log indents the PEM's lines).
    let pem = public_key_to_pem(&public);
    assert!(log.contains(pem.lines().nth(1).unwrap()), "{log}");
    assert_eq!(keystore.state().generated, 1, "abupdated reused the key");
    assert!(keystore.state().agreements >= 1);

    let (device, out, log) = &results[1];
    assert_eq!(
        code(out),
        20,
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not encrypted for this device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(slot_b_untouched(device));
    assert_eq!(
        other.state().generated,
        1,
        "abupdated made the foreign device's key"
    );
}

/// `checkForUpdate` through a real `abupdated` serving RPC Binder on a unix socket.
#[test]
fn service_checks_the_feed_over_binder() {
    let world = World::new();
    world.publish("stable", &[]);
    let device = world.device("service", PROPS);
    let socket = world.root.path().join("abupdate.sock");
    let uri = format!("unix://{}?profile=android13plus", socket.display());
    let log = world.root.path().join("abupdated.log");
    let mut daemon = start_abupdated(&world, &uri, &device, &[], &log);
    let check = |channel: &str| {
        Command::new(env!("CARGO_BIN_EXE_abupdate"))
            .args(["check", "--feed-url", &world.feed_url(channel)])
            .args(["--device-id", "device-0001"])
            .env("ABUPDATE_BINDER", &uri)
            .output()
            .unwrap()
    };
    let out = check("stable");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = ok(&out);
    assert!(
        text.starts_with("UPDATE_AVAILABLE") && text.contains("full"),
        "{text}"
    );
    assert!(slot_b_untouched(&device));
    // A forged feed is refused with its code through the service too.
    let mut daemon = start_abupdated(&world, &uri, &device, &["--channel", "forged"], &log);
    world.publish("forged", &[]);
    std::fs::write(www_file(&world, "forged", "feed.json.sig"), vec![1u8; 256]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut out = check("forged");
    while code(&out) != 15 && std::time::Instant::now() < deadline {
        // The new daemon may still be starting.
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = check("forged");
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    refused(&out, 15, "does not verify");
}

/// `kill -9` of `abupdate check --apply` in the middle of an encrypted download (nginx sends
/// the payload slowly), then a second run: it resumes from the checkpoint with a Range request
/// at the chunk holding the resume offset, decrypts from there and ends with the right slot B.
#[test]
fn encrypted_download_killed_and_resumed_with_a_range() {
    let world = World::new();
    let keys = world.root.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (device_key, device_pub) = device_key(&keys, "device");
    world.publish(
        "enc",
        &[
            "--id",
            "enc-full",
            "--encrypt-for",
            device_pub.to_str().unwrap(),
            "--chunk-size",
            "4096",
        ],
    );
    let device = world.device("killed", PROPS);
    let slow_feed = format!(
        "https://127.0.0.1:{}/slow/{MODEL}/enc/feed.json",
        world.nginx.tls_port
    );
    let args = |feed_url: &str| -> Vec<String> {
        [
            "check",
            "--apply",
            "--device",
            device.to_str().unwrap(),
            "--feed-url",
            feed_url,
            "--channel",
            "enc",
            "--device-id",
            "device-0001",
            "--key",
            world.ota.cert.to_str().unwrap(),
            "--ca",
            world.pki.ca_cert.to_str().unwrap(),
            "--device-key",
            device_key.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(args(&slow_feed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let store = abupdate::checkpoint_store::FileCheckpointStore::new(device.join("state")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let checkpoint = loop {
        use abupdate::engine::checkpoint::CheckpointStore;
        // The first checkpoint past an operation: some of the payload is written.
        if let Some(cp) = store.load().unwrap().filter(|cp| cp.next_operation > 0) {
            break cp;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the slow apply ended before its first checkpoint"
        );
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed mid-download, not finished"
    );
    assert_ne!(
        checkpoint.phase,
        abupdate::engine::checkpoint::Phase::Done,
        "{checkpoint:?}"
    );
    assert!(!slot_holds(&world.ota, &device, "v2"));

    let seen = world.nginx.access_log().len();
    let out = ok(&Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(args(&world.feed_url("enc")))
        .output()
        .unwrap());
    assert!(out.contains("(resumed at operation "), "{out}");
    assert!(slot_holds(&world.ota, &device, "v2"));
    // The resumed run asked for the encrypted file from a chunk boundary past the start.
    let log = world.nginx.access_log()[seen..].to_owned();
    let resumed = log.lines().any(|line| {
        line.strip_prefix("206 \"bytes=")
            .and_then(|r| r.split('-').next())
            .and_then(|start| start.parse::<u64>().ok())
            .is_some_and(|start| start > 0 && start % (4096 + 16) == 0)
    });
    assert!(resumed, "no ranged request at a chunk boundary:\n{log}");
}
