//! A fleet of 60 simulated devices checking in and reporting over HTTP, concurrently; an
//! operator widens a rollout halfway. The dashboard, the rollout API and the database must all
//! agree with what the devices did.

use std::collections::BTreeMap;

use serde_json::json;

use crate::common::*;

pub const MODEL: &str = "fleet";

pub fn stable() -> Vec<TestOffer> {
    vec![
        TestOffer {
            id: "s-full-3",
            ts: 3000,
            source: None,
            percent: 50,
        },
        TestOffer {
            id: "s-delta-3",
            ts: 3000,
            source: Some("fp-2"),
            percent: 100,
        },
    ]
}

pub fn beta() -> Vec<TestOffer> {
    vec![TestOffer {
        id: "b-full-3",
        ts: 3000,
        source: None,
        percent: 100,
    }]
}

/// What a simulated device did with its offer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Installed,
    InProgress,
    Failed(i64, &'static str, &'static str),
}

/// A deterministic mix of outcomes across the fleet.
pub fn outcome(i: usize) -> Outcome {
    match i % 9 {
        0 => Outcome::Failed(12, "http_status", "download"),
        1 => Outcome::Failed(21, "payload_hash_mismatch", "verify"),
        2 => Outcome::InProgress,
        3 if i % 2 == 1 => Outcome::Failed(41, "postinstall_failed", "postinstall"),
        _ => Outcome::Installed,
    }
}

pub struct Device {
    pub id: String,
    pub token: String,
    pub channel: &'static str,
    pub fp: &'static str,
    pub index: usize,
}

/// One device's round: check in, pick its offer like a device does, and report the phases.
/// Returns the offer it took.
pub async fn device_round(srv: &Server, d: &Device) -> Option<(&'static str, Outcome)> {
    let r = srv
        .post_json(
            "/v1/checkin",
            &d.token,
            &json!({"device_id": d.id, "model": MODEL, "channel": d.channel,
                    "build_fingerprint": d.fp, "build_timestamp": 1000}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(body["feed_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/feed/{MODEL}/{}/feed.json", d.channel)));
    let offers = if d.channel == "stable" {
        stable()
    } else {
        beta()
    };
    let offer = choose(&offers, &body["rollout"], &d.id, d.fp, 1000)?;
    let out = outcome(d.index);
    for (n, phase) in ["download", "verify", "install", "postinstall", "complete"]
        .into_iter()
        .enumerate()
    {
        let (code, reason) = match out {
            Outcome::Failed(code, reason, at) if at == phase => (code, reason),
            _ => (0, "ok"),
        };
        let report = json!({"device_id": d.id, "offer_id": offer, "phase": phase, "code": code,
            "reason": reason, "message": format!("{phase} done"), "bytes": 1000, "from_build": d.fp,
            "to_build": format!("fp-{offer}"), "duration_ms": 10, "slot": "b",
            "at": 1_733_450_000 + n as i64});
        let r = srv.post_json("/v1/report", &d.token, &report).await;
        assert_eq!(r.status, 204, "{}", r.text());
        if code != 0 || (out == Outcome::InProgress && phase == "download") {
            break;
        }
    }
    Some((offer, out))
}

pub fn fleet(n: usize, tokens: &[String]) -> Vec<Device> {
    (0..n)
        .map(|i| Device {
            id: format!("dev-{i:03}"),
            token: tokens[i].clone(),
            channel: if i % 3 == 2 { "beta" } else { "stable" },
            fp: if i % 2 == 0 { "fp-2" } else { "fp-1" },
            index: i,
        })
        .collect()
}

/// The database (queried here), the dashboard page and the rollout API all hold what the devices
/// did (`taken`: device id → the offer it took and its outcome).
pub async fn check_agreement(
    srv: &Server,
    pool: &sqlx::AnyPool,
    op: &str,
    taken: &BTreeMap<String, (&'static str, Outcome)>,
) {
    // Expected per offer from the devices' own record.
    let mut want: BTreeMap<&str, [i64; 4]> = BTreeMap::new();
    let mut want_failures: BTreeMap<(&str, i64, &str), i64> = BTreeMap::new();
    for (offer, out) in taken.values() {
        let w = want.entry(offer).or_default();
        w[0] += 1;
        match out {
            Outcome::InProgress => w[1] += 1,
            Outcome::Installed => w[2] += 1,
            Outcome::Failed(code, reason, _) => {
                w[3] += 1;
                *want_failures.entry((offer, *code, reason)).or_default() += 1;
            }
        }
    }
    let login = srv
        .post(
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={op}"),
        )
        .await;
    assert_eq!(login.status, 303);
    let cookie = login.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let html = srv.get("/", &[("cookie", &cookie)]).await.text();
    let api = srv
        .get(
            "/v1/rollouts",
            &[("authorization", &format!("Bearer {op}"))],
        )
        .await
        .json();
    for (offer, w) in &want {
        assert_eq!(
            &counts_from_db(pool, offer).await,
            w,
            "database vs devices for {offer}"
        );
        let shown: Vec<i64> = ["offered", "downloading", "installed", "failed"]
            .iter()
            .map(|k| summary_cell(&html, offer, k))
            .collect();
        assert_eq!(&shown[..], w, "dashboard vs devices for {offer}");
        let row = api["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["offer_id"] == *offer)
            .unwrap();
        let listed: Vec<i64> = ["offered", "downloading", "installed", "failed"]
            .iter()
            .map(|k| row[k].as_i64().unwrap())
            .collect();
        assert_eq!(&listed[..], w, "rollout API vs devices for {offer}");
        // The chart ends at the totals.
        let chart = &html[html.find(&format!("data-chart=\"{offer}\"")).unwrap()..];
        assert!(chart.contains(&format!("data-series=\"installed\" data-last=\"{}\"", w[2])));
    }
    for ((offer, code, reason), n) in &want_failures {
        let card = &html[html
            .find(&format!("<section class=\"offer\" id=\"offer-{offer}\""))
            .unwrap()..];
        let card = &card[..card.find("</section>").unwrap()];
        let row = format!("<tr data-code=\"{code}\" data-reason=\"{reason}\"><td></td><td class=\"n\">{code}</td><td>{reason}</td><td class=\"n\">{n}</td></tr>");
        assert!(
            card.contains(&row),
            "failure {offer} {code} {reason} x{n} not shown"
        );
    }
}

pub async fn suite(db: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let feeds = tmp.path().join("feeds");
    write_feed(&feeds, MODEL, "stable", &stable());
    write_feed(&feeds, MODEL, "beta", &beta());
    let n = 60;
    let names: Vec<String> = (0..n).map(|i| format!("dev-{i:03}")).collect();
    let tokens = add(db, "device", &names);
    let op = add(db, "operator", &["ops".into()]).remove(0);
    let srv = std::sync::Arc::new(Server::start(db, &feeds, &[]));
    let pool = connect_db(db).await;
    let devices = std::sync::Arc::new(fleet(n, &tokens));

    let run_round = |only: Vec<usize>| {
        let (srv, devices) = (srv.clone(), devices.clone());
        async move {
            let tasks: Vec<_> = only
                .into_iter()
                .map(|i| {
                    let (srv, devices) = (srv.clone(), devices.clone());
                    tokio::spawn(async move { (i, device_round(&srv, &devices[i]).await) })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    let mut taken = BTreeMap::new();
    for (i, got) in run_round((0..n).collect()).await {
        if let Some(got) = got {
            taken.insert(devices[i].id.clone(), got);
        }
    }
    // Half of the stable fleet off fp-2 is outside the 50% full rollout.
    let waiting: Vec<usize> = (0..n)
        .filter(|&i| !taken.contains_key(&devices[i].id))
        .collect();
    assert!(
        !waiting.is_empty() && waiting.len() < n / 2,
        "{} waiting",
        waiting.len()
    );
    let offers: std::collections::BTreeSet<_> = taken.values().map(|t| t.0).collect();
    assert_eq!(
        offers.len(),
        3,
        "every offer was taken by someone: {offers:?}"
    );
    check_agreement(&srv, &pool, &op, &taken).await;

    // The operator widens the full rollout to everyone; the waiting devices get it next time.
    let r = srv
        .post_json("/v1/rollouts/s-full-3", &op, &json!({"percent": 100}))
        .await;
    assert_eq!(r.status, 200);
    for (i, got) in run_round(waiting.clone()).await {
        let (offer, _) = got.unwrap_or_else(|| panic!("device {i} still not offered at 100%"));
        assert_eq!(offer, "s-full-3");
        taken.insert(devices[i].id.clone(), got.unwrap());
    }
    check_agreement(&srv, &pool, &op, &taken).await;
    assert_eq!(percent_in_db(&pool, "s-full-3").await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    suite(&sqlite_url(tmp.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_postgres() {
    let pg = Postgres::start(&["fsync=off"]);
    suite(&pg.url).await;
}
