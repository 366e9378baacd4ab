//! The dashboard in a real browser: Debian's headless Chromium driven through chromedriver's
//! WebDriver HTTP API. It logs in, reads the numbers, changes and pauses a rollout, and keeps a
//! screenshot (target/artefacts/dashboard.png).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::*;
use crate::fleet;

struct Driver {
    addr: SocketAddr,
    child: Child,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        for bin in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} missing: apt-get install chromium chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut d = Driver {
            addr,
            child,
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1500"]}}}});
        let v = d.call("POST", "/session", Some(caps)).await;
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        d
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r = request(
            self.addr,
            method,
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await;
        let v = r.json();
        assert_eq!(r.status, 200, "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn number(&self, css: &str) -> i64 {
        let t = self.text(css).await;
        t.trim().parse().unwrap_or_else(|_| panic!("{css}: {t:?}"))
    }

    /// Waits (up to 10 s) until the element's text is `want`: a form's POST and the
    /// redirect after it finish after the click returns.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        let script = json!({
            "script": "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            "args": [css],
        });
        let mut last = String::new();
        for _ in 0..100 {
            let body = script.to_string().into_bytes();
            let r = request(
                self.addr,
                "POST",
                &format!("/session/{}/execute/sync", self.session),
                &[("content-type", "application/json")],
                body,
            )
            .await;
            if r.status == 200 {
                if let Some(text) = r.json()["value"].as_str() {
                    last = text.trim().to_string();
                    if last == want {
                        return last;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        last
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sqlite_url(tmp.path());
    let feeds = tmp.path().join("feeds");
    write_feed(&feeds, fleet::MODEL, "stable", &fleet::stable());
    write_feed(&feeds, fleet::MODEL, "beta", &fleet::beta());
    let n = 36;
    let names: Vec<String> = (0..n).map(|i| format!("dev-{i:03}")).collect();
    let tokens = add(&db, "device", &names);
    let op = add(&db, "operator", &["carol".into()]).remove(0);
    let srv = Server::start(&db, &feeds, &[]);
    for d in fleet::fleet(n, &tokens) {
        fleet::device_round(&srv, &d).await;
    }
    let pool = connect_db(&db).await;

    let driver = Driver::start().await;
    let base = format!("http://{}", srv.addr);
    driver.goto(&format!("{base}/")).await;
    // A wrong token is refused; the right one opens the dashboard.
    driver.type_into("#token", &"0".repeat(64)).await;
    driver.click("#login").await;
    assert_eq!(
        driver
            .wait_text("#login-error", "Unknown operator token.")
            .await,
        "Unknown operator token."
    );
    driver.type_into("#token", &op).await;
    driver.click("#login").await;
    assert_eq!(driver.wait_text("#operator", "carol").await, "carol");

    for offer in ["s-full-3", "s-delta-3", "b-full-3"] {
        let db_counts = counts_from_db(&pool, offer).await;
        let mut shown = [0; 4];
        for (k, key) in ["offered", "downloading", "installed", "failed"]
            .iter()
            .enumerate()
        {
            shown[k] = driver
                .number(&format!(
                    "#summary tr[data-offer=\"{offer}\"] td[data-k=\"{key}\"]"
                ))
                .await;
        }
        assert_eq!(shown, db_counts, "browser vs database for {offer}");
    }
    assert!(
        counts_from_db(&pool, "s-delta-3").await[3] > 0,
        "the fleet has failures to show"
    );
    driver
        .screenshot(
            &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artefacts/dashboard.png"),
        )
        .await;

    // Change a rollout's percentage with the form.
    driver
        .type_into(
            "section[data-offer=\"s-full-3\"] form.set input[name=\"percent\"]",
            "35",
        )
        .await;
    driver
        .click("section[data-offer=\"s-full-3\"] form.set button")
        .await;
    assert_eq!(
        driver
            .wait_text(
                "#summary tr[data-offer=\"s-full-3\"] td[data-k=\"percent\"]",
                "35%"
            )
            .await,
        "35%"
    );
    assert_eq!(percent_in_db(&pool, "s-full-3").await, 35);
    // Pause another.
    driver
        .click("section[data-offer=\"b-full-3\"] form.pause button")
        .await;
    assert_eq!(
        driver
            .wait_text(
                "#summary tr[data-offer=\"b-full-3\"] td[data-k=\"percent\"]",
                "paused"
            )
            .await,
        "paused"
    );
    assert_eq!(percent_in_db(&pool, "b-full-3").await, 0);
    // And devices see it at their next check-in.
    let d = &fleet::fleet(n, &tokens)[2];
    let r = srv
        .post_json(
            "/v1/checkin",
            &d.token,
            &json!({"device_id": d.id, "model": fleet::MODEL, "channel": "beta",
                    "build_fingerprint": "fp-x", "build_timestamp": 1000}),
        )
        .await;
    assert_eq!(r.json()["rollout"], json!({"b-full-3": 0}));
    driver
        .screenshot(
            &std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("../artefacts/dashboard-after.png"),
        )
        .await;
    driver.cmd("DELETE", "", None).await;
}
