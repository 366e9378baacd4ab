//! The whole server tier end to end, as a device maker runs it on one machine: `abupdate payload
//! build` makes a full payload and a delta of a small two-partition build, `abupdate publish`
//! puts both in a feed directory (the full one encrypted for every device's X25519 key) and
//! signs the feed; nginx serves that directory over HTTPS and proxies check-ins and reports to
//! abupdate-server. A fleet of 52 simulated devices (host device directories, slots as image
//! files) at three running builds runs the device CLI (`abupdate check --apply`) concurrently:
//! each checks in with its token, takes its offer (the delta on its source build, the full
//! payload otherwise, nothing outside the rollout buckets), applies it over HTTPS and sends its
//! reports from its queue. Two devices fail: one holds a key the payload was not encrypted for
//! (20), one has a damaged source partition for the delta (25). Then every slot B, the
//! database, the dashboard and the rollout API must agree with what each device did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::common::*;
use crate::fleet::{check_agreement, Outcome};
use crate::tls::{free_port, pki, run, Nginx};

pub const MODEL: &str = "tierphone";
pub const CHANNEL: &str = "stable";
const FULL: &str = "v2-full";
const DELTA: &str = "v2-delta-v1";
const FULL_PERCENT: u64 = 60;
const DELTA_PERCENT: u64 = 80;
const DEVICES: usize = 52;
pub const PARTITIONS: [&str; 2] = ["system", "vendor"];
/// 128 KiB per partition: small payloads keep the fleet quick.
pub const BLOCKS: usize = 32;
/// The running builds' date; the update is newer.
pub const BUILD_DATE: i64 = 1_700_000_000;

pub fn fingerprint(version: u8) -> String {
    format!("acme/{MODEL}/v{version}:user/release-keys")
}

/// A binary of the root package (`abupdate`, `abupdated`), built by cargo here: a test of this
/// package has no `CARGO_BIN_EXE_` for the root package's binaries. Cargo names the executable
/// it built (or found fresh).
pub fn root_bin(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = run(Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--locked", "-p", "abupdate", "--bin", name])
        .arg("--message-format=json"));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo named no {name} executable"))
}

/// The device CLI.
pub fn abupdate_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| root_bin("abupdate"))
}

pub fn abupdate(args: &[&str]) -> Output {
    Command::new(abupdate_bin()).args(args).output().unwrap()
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A partition of build `version` (0, 1 or 2): a third of its blocks random, the rest text.
/// v2 differs from v1 in two blocks per partition (a delta's worth); v0 in every block.
pub fn image(part: &str, version: u8) -> Vec<u8> {
    let mut data = Vec::with_capacity(BLOCKS * 4096);
    for block in 0..BLOCKS {
        let generation = match version {
            0 => 0,
            2 if block % 16 == 5 => 2,
            _ => 1,
        };
        let seed = Sha256::digest(format!("{part}/{generation}/{block}"));
        if block % 3 == 0 {
            for i in 0u32..128 {
                data.extend_from_slice(&Sha256::digest([&seed[..], &i.to_le_bytes()].concat()));
            }
        } else {
            data.extend((0..4096).map(|i| {
                if i % 13 == 0 {
                    b'\n'
                } else {
                    b'a' + seed[i % 32] % 26
                }
            }));
        }
    }
    data
}

/// What a device's test plan is: its build, its expected offer and whether it is set up to fail.
struct Device {
    id: String,
    token: String,
    version: u8,
    dir: PathBuf,
    expect: Option<&'static str>,
    fault: Option<(i64, &'static str)>,
}

/// The device's offer by the rule the feed documents, computed here from the buckets.
fn expected_offer(id: &str, version: u8) -> Option<&'static str> {
    if version == 1 && bucket(DELTA, id) < DELTA_PERCENT {
        Some(DELTA)
    } else if version < 2 && bucket(FULL, id) < FULL_PERCENT {
        Some(FULL)
    } else {
        None
    }
}

fn openssl(args: &[&str]) {
    run(Command::new("openssl").args(args));
}

/// A device key pair: (private PKCS#8 PEM, public PEM).
pub fn x25519(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, public) = (dir.join("device_key.pem"), dir.join("device_key.pub.pem"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "X25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    public_half(&key, &public);
    (key, public)
}

/// Writes the public half of the private key `key` (PEM) to `public`.
pub fn public_half(key: &Path, public: &Path) {
    openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
}

/// The OTA signing key (the test key) and its public half, written to ROOT/ota.pub.pem.
pub fn ota_keys(root: &Path) -> (PathBuf, PathBuf) {
    let ota_key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/avb/testkey_rsa2048.pem");
    let ota_pub = root.join("ota.pub.pem");
    public_half(&ota_key, &ota_pub);
    (ota_key, ota_pub)
}

/// The partition images of builds v0 to v2 in ROOT/images; the directory.
pub fn write_images(root: &Path) -> PathBuf {
    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for part in PARTITIONS {
        for v in 0..3 {
            std::fs::write(images.join(format!("{part}-v{v}.img")), image(part, v)).unwrap();
        }
    }
    images
}

/// `abupdate payload build`: v2, full or a delta from v1, signed with `ota_key`.
pub fn build_payload(ota_key: &Path, images: &Path, out: &Path, delta: bool) {
    let image_path = |part: &str, v: u8| images.join(format!("{part}-v{v}.img"));
    let mut args: Vec<String> = ["payload", "build", "--no-bzip2", "--key"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(ota_key.display().to_string());
    args.extend(["--max-timestamp".into(), (BUILD_DATE + 100).to_string()]);
    args.extend(["--out".into(), out.display().to_string()]);
    for part in PARTITIONS {
        let mut spec = format!("{part}={}", image_path(part, 2).display());
        if delta {
            spec += &format!(":{}", image_path(part, 1).display());
        }
        args.extend(["--partition".into(), spec]);
    }
    ok(&abupdate(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
}

/// Where offers are published: the feed directory, the service's public URL (check-ins and
/// reports), the OTA key signing the feed.
pub struct Release<'a> {
    pub feeds: &'a Path,
    pub public: &'a str,
    pub ota_key: &'a Path,
}

impl Release<'_> {
    /// `abupdate publish` of `payload` (the v2 build) as offer `id`, with `extra` arguments.
    pub fn publish(&self, payload: &Path, id: &str, extra: &[String]) -> String {
        let mut args: Vec<String> = ["publish", "--model", MODEL, "--channel", CHANNEL]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--id".into(), id.into()]);
        args.extend(["--notes".into(), "Security fixes".into()]);
        args.extend([
            "--checkin-url".into(),
            format!("{}/v1/checkin", self.public),
        ]);
        args.extend(["--report-url".into(), format!("{}/v1/report", self.public)]);
        args.extend(["--feed-dir".into(), self.feeds.display().to_string()]);
        args.extend(["--payload".into(), payload.display().to_string()]);
        args.extend(["--key".into(), self.ota_key.display().to_string()]);
        args.extend(["--fingerprint".into(), fingerprint(2)]);
        args.extend_from_slice(extra);
        ok(&abupdate(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    }
}

pub async fn suite(db: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pki = pki(root);
    let tls_port = free_port();
    let public = format!("https://127.0.0.1:{tls_port}");

    // The builds and their payloads, signed with the OTA test key.
    let (ota_key, ota_pub) = ota_keys(root);
    let images = write_images(root);
    let build = |out: &Path, delta: bool| build_payload(&ota_key, &images, out, delta);
    let (full_bin, delta_bin) = (root.join("full.bin"), root.join("delta.bin"));
    build(&full_bin, false);
    build(&delta_bin, true);

    // The fleet: registered with the server, one key pair each, three running builds.
    let names: Vec<String> = (0..DEVICES).map(|i| format!("tier-{i:03}")).collect();
    let tokens = add(db, "device", &names);
    let op = add(db, "operator", &["ops".into()]).remove(0);
    let mut devices: Vec<Device> = names
        .iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (id, token))| {
            let version = match i {
                _ if i == DEVICES - 1 => 2,
                _ if i % 3 == 0 => 1,
                _ => 0,
            };
            Device {
                expect: expected_offer(id, version),
                id: id.clone(),
                token,
                version,
                dir: root.join("fleet").join(id),
                fault: None,
            }
        })
        .collect();
    // One device of each offer is set up to fail.
    let pick = |offer: &str, devices: &[Device]| {
        devices
            .iter()
            .position(|d| d.expect == Some(offer))
            .unwrap_or_else(|| panic!("no device takes {offer}"))
    };
    let wrong_key = pick(FULL, &devices);
    devices[wrong_key].fault = Some((20, "VERIFICATION_FAILED"));
    let bad_source = pick(DELTA, &devices);
    devices[bad_source].fault = Some((25, "SOURCE_HASH"));
    let mut recipients = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        std::fs::create_dir_all(&d.dir).unwrap();
        for part in PARTITIONS {
            let mut running = image(part, d.version);
            if i == bad_source && part == "vendor" {
                running[5000] ^= 1;
            }
            std::fs::write(d.dir.join(format!("{part}_a.img")), running).unwrap();
            std::fs::write(
                d.dir.join(format!("{part}_b.img")),
                vec![0u8; BLOCKS * 4096],
            )
            .unwrap();
        }
        // Zeros: the device adopts it for running slot A (--current-slot a) as the HAL does.
        std::fs::File::create(d.dir.join("misc.img"))
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        std::fs::write(
            d.dir.join("build.prop"),
            format!(
                "ro.build.date.utc={BUILD_DATE}\nro.product.name={MODEL}\nro.build.fingerprint={}\n",
                fingerprint(d.version)
            ),
        )
        .unwrap();
        let (_, public) = x25519(&d.dir);
        if i != wrong_key {
            recipients.push(public);
        }
    }

    // The release: the full payload encrypted for the fleet's keys, the delta plain.
    let feeds = root.join("feeds");
    let publish = |payload: &Path, id: &str, percent: u64, extra: &[String]| {
        let mut args = vec!["--rollout".to_string(), percent.to_string()];
        args.extend_from_slice(extra);
        let release = Release {
            feeds: &feeds,
            public: &public,
            ota_key: &ota_key,
        };
        release.publish(payload, id, &args)
    };
    let mut encrypt = vec!["--chunk-size".to_string(), "16384".into()];
    for r in &recipients {
        encrypt.extend(["--encrypt-for".into(), r.display().to_string()]);
    }
    assert!(publish(&full_bin, FULL, FULL_PERCENT, &encrypt).contains("encrypted"));
    let source = ["--source-fingerprint".to_string(), fingerprint(1)];
    assert!(publish(&delta_bin, DELTA, DELTA_PERCENT, &source).contains("delta"));

    // The service behind nginx; nginx serves the feed directory itself, as a CDN would.
    let feed_base = format!("{public}/feed");
    let srv = Arc::new(Server::start(
        db,
        &feeds,
        &["--public-url", &public, "--feed-base-url", &feed_base],
    ));
    let _nginx = Nginx::start(
        &root.join("nginx"),
        tls_port,
        (&pki.cert, &pki.key),
        srv.addr,
        Some(&feeds),
    );

    // Every device checks for its update, concurrently.
    let feed_url = format!("{feed_base}/{MODEL}/{CHANNEL}/feed.json");
    let devices = Arc::new(devices);
    let next = Arc::new(Mutex::new(0usize));
    let outputs = Arc::new(Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (devices, next, outputs) = (devices.clone(), next.clone(), outputs.clone());
            let (feed_url, ota_pub, ca) = (feed_url.clone(), ota_pub.clone(), pki.ca.clone());
            std::thread::spawn(move || loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(d) = devices.get(i) else { break };
                let out = abupdate(&[
                    "check",
                    "--apply",
                    "--device",
                    d.dir.to_str().unwrap(),
                    "--current-slot",
                    "a",
                    "--feed-url",
                    &feed_url,
                    "--channel",
                    CHANNEL,
                    "--device-id",
                    &d.id,
                    "--token",
                    &d.token,
                    "--key",
                    ota_pub.to_str().unwrap(),
                    "--ca",
                    ca.to_str().unwrap(),
                ]);
                outputs.lock().unwrap().insert(i, out);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let outputs = std::mem::take(&mut *outputs.lock().unwrap());

    // What each device did, from its exit code and output; its slot B must match.
    let mut taken: BTreeMap<String, (&'static str, Outcome)> = BTreeMap::new();
    let v2: Vec<Vec<u8>> = PARTITIONS.iter().map(|p| image(p, 2)).collect();
    for (i, d) in devices.iter().enumerate() {
        let out = &outputs[&i];
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("{} (v{}): {stdout}\n{stderr}", d.id, d.version);
        let slot_b: Vec<Vec<u8>> = PARTITIONS
            .iter()
            .map(|p| std::fs::read(d.dir.join(format!("{p}_b.img"))).unwrap())
            .collect();
        let holds_v2 = slot_b == v2;
        let untouched = slot_b.iter().all(|b| b.iter().all(|x| *x == 0));
        assert!(
            !stderr.contains("left queued"),
            "every report was delivered: {what}"
        );
        let Some(offer) = d.expect else {
            assert_eq!(stdout.trim(), "NO_UPDATE", "{what}");
            assert!(untouched, "{what}");
            continue;
        };
        let kind = if offer == DELTA {
            "delta"
        } else {
            "full encrypted"
        };
        assert!(
            stdout.starts_with(&format!("UPDATE_AVAILABLE id={offer} "))
                && stdout.contains(&format!(" {kind} ")),
            "{what}"
        );
        let outcome = match d.fault {
            None => {
                assert_eq!(out.status.code(), Some(0), "{what}");
                assert!(holds_v2, "slot B of {what}");
                Outcome::Installed
            }
            Some((code, reason)) => {
                assert_eq!(out.status.code(), Some(code as i32), "{what}");
                assert!(!holds_v2, "{what}");
                if code == 20 {
                    assert!(untouched, "nothing written before the key failed: {what}");
                }
                Outcome::Failed(code, reason, "download")
            }
        };
        taken.insert(d.id.clone(), (offer, outcome));
    }
    let count = |offer: &str| taken.values().filter(|t| t.0 == offer).count();
    assert!(
        count(FULL) >= 10 && count(DELTA) >= 5 && taken.len() < DEVICES - 5,
        "full {}, delta {}, of {DEVICES}: the fleet covers both offers and the buckets",
        count(FULL),
        count(DELTA)
    );
    let pool = connect_db(db).await;
    check_agreement(&srv, &pool, &op, &taken).await;
    // The server saw each device's running build at its check-in.
    for d in devices.iter() {
        let fp: String =
            sqlx::query_scalar("SELECT build_fingerprint FROM devices WHERE device_id = $1")
                .bind(&d.id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(fp, fingerprint(d.version));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    suite(&sqlite_url(tmp.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_postgres() {
    let pg = Postgres::start(&["fsync=off"]);
    suite(&pg.url).await;
}
