//! The documented deployment: nginx terminates TLS in front of abupdate-server. A device's
//! check-in, report and feed download go over HTTPS (curl, checking the test CA) through a real
//! nginx; the server hands out https feed URLs and marks the operator cookie Secure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// curl over HTTPS trusting only `ca`; returns (status, headers + body).
fn curl(ca: &Path, args: &[&str], url: &str) -> (u16, String) {
    let out = run(Command::new("curl")
        .args(["-sS", "-i", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(url));
    let text = String::from_utf8(out).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

#[test]
fn https_through_nginx() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let feeds = d.join("feeds");
    write_feed(
        &feeds,
        "m1",
        "stable",
        &[TestOffer {
            id: "full-2",
            ts: 2000,
            source: None,
            percent: 100,
        }],
    );
    let db = sqlite_url(d);
    let tokens = add(&db, "device", &["tls-dev".into()]);
    let op = add(&db, "operator", &["ops".into()]).remove(0);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("https://127.0.0.1:{tls_port}");
    let srv = Server::start(&db, &feeds, &["--public-url", &public, "--secure-cookie"]);

    assert!(
        Path::new("/usr/sbin/nginx").exists(),
        "nginx missing: install Debian's nginx-light"
    );
    std::fs::create_dir_all(d.join("tmp")).unwrap();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{ worker_connections 64; }}\nhttp {{\n access_log off;\n client_body_temp_path {p}/tmp;\n\
         proxy_temp_path {p}/tmp;\n server {{\n  listen 127.0.0.1:{tls_port} ssl;\n  ssl_certificate {c};\n\
         ssl_certificate_key {k};\n  client_max_body_size 16k;\n  location / {{ proxy_pass http://{a}; \
         proxy_set_header Host $host; }}\n }}\n}}\n",
        p = d.display(),
        c = cert.display(),
        k = key.display(),
        a = srv.addr
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let _nginx = Nginx(
        Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-e")
            .arg(d.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx: {}",
            std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let auth = format!("authorization: Bearer {}", tokens[0]);
    let checkin = json!({"device_id": "tls-dev", "model": "m1", "channel": "stable",
                         "build_fingerprint": "fp-1", "build_timestamp": 1000})
    .to_string();
    let json_h = "content-type: application/json";
    let (status, resp) = curl(
        &cert,
        &["-H", &auth, "-H", json_h, "--data-binary", &checkin],
        &format!("{public}/v1/checkin"),
    );
    assert_eq!(status, 200, "{resp}");
    let answer: serde_json::Value = serde_json::from_str(body(&resp)).unwrap();
    let feed_url = answer["feed_url"].as_str().unwrap();
    assert_eq!(feed_url, format!("{public}/feed/m1/stable/feed.json"));
    let (status, resp) = curl(&cert, &[], feed_url);
    assert_eq!(status, 200);
    assert_eq!(
        body(&resp).as_bytes(),
        std::fs::read(feeds.join("m1/stable/feed.json")).unwrap()
    );
    let report =
        json!({"device_id": "tls-dev", "offer_id": "full-2", "phase": "complete", "code": 0,
                        "reason": "OK", "at": 1_733_450_000})
        .to_string();
    let (status, resp) = curl(
        &cert,
        &["-H", &auth, "-H", json_h, "--data-binary", &report],
        &format!("{public}/v1/report"),
    );
    assert_eq!(status, 204, "{resp}");
    let (status, resp) = curl(
        &cert,
        &["--data-urlencode", &format!("token={op}")],
        &format!("{public}/login"),
    );
    assert_eq!(status, 303, "{resp}");
    let cookie = resp
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}
