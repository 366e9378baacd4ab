//! The API against a real running server: the happy path, operator control, and hostile input
//! (each refused with its status, nothing written, the server still serving).

use serde_json::json;
use sqlx::Row;

use crate::common::*;

fn offers() -> Vec<TestOffer> {
    vec![
        TestOffer {
            id: "full-2",
            ts: 2000,
            source: None,
            percent: 100,
        },
        TestOffer {
            id: "delta-2",
            ts: 2000,
            source: Some("fp-1"),
            percent: 100,
        },
        TestOffer {
            id: "full-0",
            ts: 500,
            source: None,
            percent: 100,
        },
    ]
}

async fn reports_in_db(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM reports")
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0)
}

pub async fn suite(db: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let feeds = tmp.path().join("feeds");
    write_feed(&feeds, "m1", "stable", &offers());
    let devs = add(db, "device", &["d1".into(), "d2".into()]);
    let ops = add(db, "operator", &["alice".into()]);
    let (d1, d2, op) = (&devs[0], &devs[1], &ops[0]);
    let mut srv = Server::start(
        db,
        &feeds,
        &["--rate-per-minute", "1", "--rate-burst", "30"],
    );
    let pool = connect_db(db).await;

    // A check-in: the feed URL and the server's percentages; the delta is what d1 is offered.
    let checkin = json!({"device_id": "d1", "model": "m1", "channel": "stable",
                         "build_fingerprint": "fp-1", "build_timestamp": 1000});
    let r = srv.post_json("/v1/checkin", d1, &checkin).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        body["feed_url"],
        format!("http://{}/feed/m1/stable/feed.json", srv.addr)
    );
    assert_eq!(
        body["rollout"],
        json!({"full-2": 100, "delta-2": 100, "full-0": 100})
    );
    let offered: Vec<String> =
        sqlx::query("SELECT offer_id FROM offers_made WHERE device_id = 'd1'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(offered, ["delta-2"]);
    let seen: String = sqlx::query("SELECT build_fingerprint FROM devices WHERE device_id = 'd1'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, "fp-1");

    // The feed directory is served as it is, with ranges.
    let file = std::fs::read(feeds.join("m1/stable/feed.json")).unwrap();
    let r = srv.get("/feed/m1/stable/feed.json", &[]).await;
    assert_eq!((r.status, &r.body), (200, &file));
    let r = srv
        .get("/feed/m1/stable/feed.json", &[("range", "bytes=10-19")])
        .await;
    assert_eq!((r.status, &r.body[..]), (206, &file[10..20]));
    assert_eq!(srv.get("/feed/../server.db", &[]).await.status / 100, 4);

    // A report.
    let report = json!({"device_id": "d1", "offer_id": "delta-2", "phase": "download", "code": 0,
        "reason": "ok", "message": "", "bytes": 1000, "from_build": "fp-1", "to_build": "fp-delta-2",
        "duration_ms": 1200, "slot": "b", "at": 1_733_450_100});
    let r = srv.post_json("/v1/report", d1, &report).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(reports_in_db(&pool).await, 1);

    // Hostile input: each refused with its status and a JSON error, nothing written.
    let expect = |r: Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.json()["error"].is_string());
    };
    expect(srv.post("/v1/report", &[], report.to_string()).await, 401);
    let forged = format!("Bearer {}", "ab".repeat(32));
    expect(
        srv.post(
            "/v1/report",
            &[("authorization", &forged)],
            report.to_string(),
        )
        .await,
        401,
    );
    expect(
        srv.post(
            "/v1/report",
            &[("authorization", "Bearer x' OR 1=1 --")],
            report.to_string(),
        )
        .await,
        401,
    );
    expect(srv.post_json("/v1/report", op, &report).await, 401); // an operator is not a device
    let mut as_other = report.clone();
    as_other["device_id"] = json!("d2");
    expect(srv.post_json("/v1/report", d1, &as_other).await, 401); // d1's token for d2
    let auth = format!("Bearer {d1}");
    expect(
        srv.post(
            "/v1/report",
            &[("authorization", &auth)],
            "{\"device_id\": ",
        )
        .await,
        400,
    );
    expect(
        srv.post(
            "/v1/report",
            &[("authorization", &auth)],
            vec![0xff, 0xfe, 0x00],
        )
        .await,
        400,
    );
    for (field, value) in [
        ("code", json!("x")),
        ("code", json!(500)),
        ("phase", json!("exfiltrate")),
        ("bytes", json!(-1)),
        ("offer_id", json!("../../etc")),
        ("reason", json!("a\u{0}b")),
        ("slot", json!({"a": 1})),
    ] {
        let mut bad = report.clone();
        bad[field] = value;
        expect(srv.post_json("/v1/report", d1, &bad).await, 400);
    }
    let mut missing = report.clone();
    missing.as_object_mut().unwrap().remove("phase");
    expect(srv.post_json("/v1/report", d1, &missing).await, 400);
    let mut huge = report.clone();
    huge["message"] = json!("x".repeat(20_000));
    expect(srv.post_json("/v1/report", d1, &huge).await, 413);
    // An oversized body without a length (chunked) is cut off at the limit too.
    let chunk = "y".repeat(40_000);
    let chunked = format!(
        "POST /v1/report HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    assert_eq!(raw(srv.addr, chunked.as_bytes()), 413);
    assert_eq!(raw(srv.addr, b"GARBAGE / HTTP/9\r\n\r\n") / 100, 4);
    let mut bad_model = checkin.clone();
    bad_model["model"] = json!("../m1");
    expect(srv.post_json("/v1/checkin", d1, &bad_model).await, 400);
    let mut no_feed = checkin.clone();
    no_feed["model"] = json!("other-model");
    expect(srv.post_json("/v1/checkin", d1, &no_feed).await, 404);
    assert_eq!(
        reports_in_db(&pool).await,
        1,
        "refused requests wrote nothing"
    );
    // A queued report arriving late (older `at`) is kept but does not move the device's state.
    let mut stale = report.clone();
    stale["phase"] = json!("complete");
    stale["at"] = json!(1_733_450_000);
    assert_eq!(srv.post_json("/v1/report", d1, &stale).await.status, 204);
    assert_eq!(reports_in_db(&pool).await, 2);

    // Rate limit: d2 gets its burst of 30, then 429.
    let c2 = json!({"device_id": "d2", "model": "m1", "channel": "stable",
                    "build_fingerprint": "fp-9", "build_timestamp": 1000});
    for i in 0..30 {
        assert_eq!(
            srv.post_json("/v1/checkin", d2, &c2).await.status,
            200,
            "request {i}"
        );
    }
    expect(srv.post_json("/v1/checkin", d2, &c2).await, 429);

    // Operators: list and steer rollouts; a device token is not enough.
    expect(srv.get("/v1/rollouts", &[]).await, 401);
    expect(
        srv.get("/v1/rollouts", &[("authorization", &auth)]).await,
        401,
    );
    let op_auth = format!("Bearer {op}");
    let r = srv
        .get("/v1/rollouts", &[("authorization", &op_auth)])
        .await;
    assert_eq!(r.status, 200);
    let list = r.json();
    let row = list["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["offer_id"] == "delta-2")
        .unwrap()
        .clone();
    assert_eq!(
        (
            row["offered"].as_i64(),
            row["downloading"].as_i64(),
            row["installed"].as_i64(),
            row["percent"].as_i64()
        ),
        (Some(1), Some(1), Some(0), Some(100))
    );
    expect(
        srv.post_json("/v1/rollouts/delta-2", d1, &json!({"percent": 0}))
            .await,
        401,
    );
    expect(
        srv.post_json("/v1/rollouts/delta-2", op, &json!({"percent": 101}))
            .await,
        400,
    );
    expect(
        srv.post_json("/v1/rollouts/nope", op, &json!({"percent": 5}))
            .await,
        404,
    );
    let r = srv
        .post_json("/v1/rollouts/delta-2", op, &json!({"percent": 0}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(percent_in_db(&pool, "delta-2").await, 0);
    let by: String = sqlx::query(
        "SELECT by_whom FROM rollout_history WHERE offer_id = 'delta-2' ORDER BY id DESC",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(by, "alice");
    // Paused: d1's next check-in says so, and the full offer is what it gets now.
    let r = srv.post_json("/v1/checkin", d1, &checkin).await;
    assert_eq!(r.json()["rollout"]["delta-2"], 0);
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) FROM offers_made WHERE device_id = 'd1' AND offer_id = 'full-2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(n, 1);

    // The dashboard and its forms need an operator's cookie.
    let page = srv.get("/", &[]).await;
    assert!(page.text().contains("Operator login") && !page.text().contains("id=\"summary\""));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let device_cookie = format!("abupdate_operator={d1}");
    for cookie in ["", device_cookie.as_str()] {
        let r = srv
            .post(
                "/rollouts/full-2",
                &[form[0], ("cookie", cookie)],
                "percent=5",
            )
            .await;
        assert_eq!(r.status, 401);
        let page = srv.get("/", &[("cookie", cookie)]).await;
        assert!(!page.text().contains("id=\"summary\""));
    }
    assert_eq!(percent_in_db(&pool, "full-2").await, 100);
    let r = srv.post("/login", &form, format!("token={d1}")).await;
    assert_eq!(r.status, 401, "a device token is no operator login");
    assert!(r.headers.get("set-cookie").is_none());

    assert!(srv.running(), "the server survived all of it");
    assert_eq!(srv.get("/nothing-here", &[]).await.status, 404);
}

#[tokio::test]
async fn api_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    suite(&sqlite_url(tmp.path())).await;
}

#[tokio::test]
async fn api_postgres() {
    let pg = Postgres::start(&["fsync=off"]);
    suite(&pg.url).await;
}
