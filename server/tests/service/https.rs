//! The documented deployment: nginx terminates TLS in front of abupdate-server. A device's
//! check-in, report and feed download go over HTTPS (curl, checking the test CA) through a real
//! nginx; the server hands out https feed URLs and marks the operator cookie Secure.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::*;
use crate::tls::{free_port, pki, run, Nginx};

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
    let pki = pki(d);
    let ca = &pki.ca;
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
    let tls_port = free_port();
    let public = format!("https://127.0.0.1:{tls_port}");
    let srv = Server::start(&db, &feeds, &["--public-url", &public, "--secure-cookie"]);

    let _nginx = Nginx::start(d, tls_port, (&pki.cert, &pki.key), srv.addr, None);

    let auth = format!("authorization: Bearer {}", tokens[0]);
    let checkin = json!({"device_id": "tls-dev", "model": "m1", "channel": "stable",
                         "build_fingerprint": "fp-1", "build_timestamp": 1000})
    .to_string();
    let json_h = "content-type: application/json";
    let (status, resp) = curl(
        ca,
        &["-H", &auth, "-H", json_h, "--data-binary", &checkin],
        &format!("{public}/v1/checkin"),
    );
    assert_eq!(status, 200, "{resp}");
    let answer: serde_json::Value = serde_json::from_str(body(&resp)).unwrap();
    let feed_url = answer["feed_url"].as_str().unwrap();
    assert_eq!(feed_url, format!("{public}/feed/m1/stable/feed.json"));
    let (status, resp) = curl(ca, &[], feed_url);
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
        ca,
        &["-H", &auth, "-H", json_h, "--data-binary", &report],
        &format!("{public}/v1/report"),
    );
    assert_eq!(status, 204, "{resp}");
    let (status, resp) = curl(
        ca,
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
