//! The database: SQLite (a file, the default) or PostgreSQL (a URL), through sqlx's `Any`
//! driver so every query is written once. Placeholders are `$N`, which both engines accept.
//! SQLite allows one writer at a time, so writes go through a one-connection pool (queued in
//! the pool rather than spinning on SQLITE_BUSY) while reads use several connections (WAL).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

use crate::feeds::Feed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
}

/// Migrations compiled into the binary, one set per engine (they differ only in column types).
#[derive(Debug)]
struct Embedded(Backend);

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/sqlite/0001_init.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../migrations/postgres/0001_init.sql"),
)];

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let set = match self.0 {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = set
            .iter()
            .map(|&(version, desc, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(desc),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `--db` takes a URL (`sqlite://…`, `postgres://…`) or a plain file path for SQLite.
pub fn normalize_url(db: &str) -> (String, Backend) {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        (db.to_string(), Backend::Postgres)
    } else if db.starts_with("sqlite:") {
        (db.to_string(), Backend::Sqlite)
    } else {
        (format!("sqlite://{db}?mode=rwc"), Backend::Sqlite)
    }
}

/// One row of the rollout overview: an offer, its percentage and its device counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloutRow {
    pub offer_id: String,
    pub model: String,
    pub channel: String,
    pub build_fingerprint: String,
    pub build_timestamp: i64,
    pub source_fingerprint: Option<String>,
    pub percent: i64,
    pub updated_at: i64,
    pub updated_by: String,
    pub offered: i64,
    pub downloading: i64,
    pub installed: i64,
    pub failed: i64,
}

/// Devices whose latest report for an offer failed, by code and reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailureRow {
    pub offer_id: String,
    pub code: i64,
    pub reason: String,
    pub devices: i64,
}

/// A report as the API accepted it.
pub struct Report<'a> {
    pub device_id: &'a str,
    pub offer_id: &'a str,
    pub phase: &'a str,
    pub code: i64,
    pub reason: &'a str,
    pub message: &'a str,
    pub bytes: i64,
    pub from_build: &'a str,
    pub to_build: &'a str,
    pub duration_ms: i64,
    pub slot: &'a str,
    pub at: i64,
}

/// Counts of devices per time bucket, for the chart.
pub struct Timeline {
    pub start: i64,
    pub step: i64,
    pub offered: Vec<(i64, i64)>,
    pub installed: Vec<(i64, i64)>,
    pub failed: Vec<(i64, i64)>,
    pub percent: Vec<(i64, i64)>,
}

impl Db {
    pub async fn connect(db: &str, read_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalize_url(db);
        let options = |n: u32| {
            AnyPoolOptions::new()
                .max_connections(n)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 5000;",
                            )
                            .await?;
                        }
                        Ok(())
                    })
                })
        };
        let write = match backend {
            Backend::Sqlite => options(1).connect(&url).await,
            Backend::Postgres => options(read_connections.max(2)).connect(&url).await,
        }
        .with_context(|| format!("connecting to {db}"))?;
        let db = match backend {
            Backend::Sqlite => {
                // Migrate before the read pool opens so its connections see the schema.
                migrate(&write, backend).await?;
                let read = options(read_connections.max(1)).connect(&url).await?;
                Db { read, write }
            }
            Backend::Postgres => {
                migrate(&write, backend).await?;
                Db {
                    read: write.clone(),
                    write,
                }
            }
        };
        Ok(db)
    }

    pub async fn add_device(&self, device_id: &str, token_hash: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO devices (device_id, token_sha256, created_at) VALUES ($1, $2, $3)",
        )
        .bind(device_id)
        .bind(token_hash)
        .bind(now())
        .execute(&self.write)
        .await
        .with_context(|| format!("adding device {device_id} (does it exist already?)"))?;
        Ok(())
    }

    pub async fn add_operator(&self, name: &str, token_hash: &str) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO operators (name, token_sha256, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(token_hash)
            .bind(now())
            .execute(&self.write)
            .await
            .with_context(|| format!("adding operator {name} (does it exist already?)"))?;
        Ok(())
    }

    pub async fn device_for_token(&self, token_hash: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT device_id FROM devices WHERE token_sha256 = $1")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn operator_for_token(&self, token_hash: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT name FROM operators WHERE token_sha256 = $1")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Makes sure every offer of a feed has a rollout row; a new one starts at the feed's
    /// percentage. Existing rows keep the operator's percentage.
    pub async fn sync_feed(&self, feed: &Feed) -> anyhow::Result<()> {
        let now = now();
        let mut tx = self.write.begin().await?;
        for o in &feed.offers {
            let inserted = sqlx::query(
                "INSERT INTO rollouts (offer_id, model, channel, build_fingerprint, build_timestamp, \
                 source_fingerprint, percent, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'feed') ON CONFLICT (offer_id) DO NOTHING",
            )
            .bind(&o.id)
            .bind(&feed.model)
            .bind(&feed.channel)
            .bind(&o.build.fingerprint)
            .bind(o.build.timestamp)
            .bind(o.source_fingerprint.clone())
            .bind(i64::from(o.rollout_percent))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                history(&mut tx, &o.id, i64::from(o.rollout_percent), now, "feed").await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The server's rollout percentage per offer of a model and channel.
    pub async fn percents(
        &self,
        model: &str,
        channel: &str,
    ) -> anyhow::Result<HashMap<String, i64>> {
        let rows =
            sqlx::query("SELECT offer_id, percent FROM rollouts WHERE model = $1 AND channel = $2")
                .bind(model)
                .bind(channel)
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Sets an offer's percentage; false if there is no such offer.
    pub async fn set_percent(
        &self,
        offer_id: &str,
        percent: i64,
        by: &str,
    ) -> anyhow::Result<bool> {
        let now = now();
        let mut tx = self.write.begin().await?;
        let n = sqlx::query("UPDATE rollouts SET percent = $1, updated_at = $2, updated_by = $3 WHERE offer_id = $4")
            .bind(percent)
            .bind(now)
            .bind(by)
            .bind(offer_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            history(&mut tx, offer_id, percent, now, by).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Records a check-in: the device's running build and, if the offer rule gave it one, the
    /// offer it was offered.
    pub async fn record_checkin(
        &self,
        device_id: &str,
        model: &str,
        channel: &str,
        build_fingerprint: &str,
        build_timestamp: i64,
        offered: Option<&str>,
    ) -> anyhow::Result<()> {
        let now = now();
        // Two statements, no transaction: each is atomic and they need not be together (a
        // check-in costs two round trips to the database instead of four).
        sqlx::query(
            "UPDATE devices SET model = $1, channel = $2, build_fingerprint = $3, \
             build_timestamp = $4, last_seen = $5 WHERE device_id = $6",
        )
        .bind(model)
        .bind(channel)
        .bind(build_fingerprint)
        .bind(build_timestamp)
        .bind(now)
        .bind(device_id)
        .execute(&self.write)
        .await?;
        if let Some(offer_id) = offered {
            sqlx::query(
                "INSERT INTO offers_made (device_id, offer_id, first_at, last_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (device_id, offer_id) DO UPDATE SET last_at = excluded.last_at",
            )
            .bind(device_id)
            .bind(offer_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        }
        Ok(())
    }

    /// Stores a report and moves the device's state for the offer to it, unless a later report
    /// (by the device's clock) is already there: queued reports may arrive out of order.
    pub async fn record_report(&self, r: &Report<'_>) -> anyhow::Result<()> {
        let now = now();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO reports (device_id, offer_id, phase, code, reason, message, bytes, from_build, \
             to_build, duration_ms, slot, at, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(r.device_id)
        .bind(r.offer_id)
        .bind(r.phase)
        .bind(r.code)
        .bind(r.reason)
        .bind(r.message)
        .bind(r.bytes)
        .bind(r.from_build)
        .bind(r.to_build)
        .bind(r.duration_ms)
        .bind(r.slot)
        .bind(r.at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO device_offer_state (device_id, offer_id, phase, code, reason, at, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (device_id, offer_id) DO UPDATE SET phase = excluded.phase, \
             code = excluded.code, reason = excluded.reason, at = excluded.at, \
             received_at = excluded.received_at WHERE excluded.at >= device_offer_state.at",
        )
        .bind(r.device_id)
        .bind(r.offer_id)
        .bind(r.phase)
        .bind(r.code)
        .bind(r.reason)
        .bind(r.at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn rollouts(&self) -> anyhow::Result<Vec<RolloutRow>> {
        let rows = sqlx::query(
            "SELECT r.offer_id, r.model, r.channel, r.build_fingerprint, r.build_timestamp, \
             r.source_fingerprint, r.percent, r.updated_at, r.updated_by, \
             (SELECT COUNT(*) FROM offers_made o WHERE o.offer_id = r.offer_id), \
             (SELECT COUNT(*) FROM device_offer_state s WHERE s.offer_id = r.offer_id \
                AND s.code = 0 AND s.phase <> 'complete'), \
             (SELECT COUNT(*) FROM device_offer_state s WHERE s.offer_id = r.offer_id \
                AND s.code = 0 AND s.phase = 'complete'), \
             (SELECT COUNT(*) FROM device_offer_state s WHERE s.offer_id = r.offer_id AND s.code <> 0) \
             FROM rollouts r ORDER BY r.model, r.channel, r.build_timestamp DESC, r.offer_id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(rollout_row).collect()
    }

    pub async fn failures(&self) -> anyhow::Result<Vec<FailureRow>> {
        let rows = sqlx::query(
            "SELECT offer_id, code, reason, COUNT(*) FROM device_offer_state WHERE code <> 0 \
             GROUP BY offer_id, code, reason ORDER BY offer_id, code, reason",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailureRow {
                    offer_id: r.try_get(0)?,
                    code: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    devices: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Devices offered, installed and (ever) failed per time bucket, and the percentage steps,
    /// from the first history entry of the offer until now, in about 60 buckets.
    pub async fn timeline(&self, offer_id: &str) -> anyhow::Result<Timeline> {
        let percent: Vec<(i64, i64)> =
            sqlx::query("SELECT at, percent FROM rollout_history WHERE offer_id = $1 ORDER BY id")
                .bind(offer_id)
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<anyhow::Result<_>>()?;
        let start = percent.first().map_or_else(now, |p| p.0);
        let step = ((now() - start) / 60).max(1);
        let buckets = |sql: &'static str| {
            let read = self.read.clone();
            async move {
                let rows = sqlx::query(sql)
                    .bind(offer_id)
                    .bind(start)
                    .bind(step)
                    .fetch_all(&read)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?)))
                    .collect::<anyhow::Result<Vec<_>>>()
            }
        };
        let offered = buckets(
            "SELECT (first_at - $2) / $3 AS b, COUNT(*) FROM offers_made WHERE offer_id = $1 \
             GROUP BY b ORDER BY b",
        )
        .await?;
        let installed = buckets(
            "SELECT (t - $2) / $3 AS b, COUNT(*) FROM (SELECT MIN(received_at) AS t FROM reports \
             WHERE offer_id = $1 AND phase = 'complete' AND code = 0 GROUP BY device_id) x \
             GROUP BY b ORDER BY b",
        )
        .await?;
        let failed = buckets(
            "SELECT (t - $2) / $3 AS b, COUNT(*) FROM (SELECT MIN(received_at) AS t FROM reports \
             WHERE offer_id = $1 AND code <> 0 GROUP BY device_id) x GROUP BY b ORDER BY b",
        )
        .await?;
        Ok(Timeline {
            start,
            step,
            offered,
            installed,
            failed,
            percent,
        })
    }
}

async fn history(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    offer_id: &str,
    percent: i64,
    at: i64,
    by: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO rollout_history (offer_id, percent, at, by_whom) VALUES ($1, $2, $3, $4)",
    )
    .bind(offer_id)
    .bind(percent)
    .bind(at)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn rollout_row(r: &AnyRow) -> anyhow::Result<RolloutRow> {
    Ok(RolloutRow {
        offer_id: r.try_get(0)?,
        model: r.try_get(1)?,
        channel: r.try_get(2)?,
        build_fingerprint: r.try_get(3)?,
        build_timestamp: r.try_get(4)?,
        source_fingerprint: r.try_get(5)?,
        percent: r.try_get(6)?,
        updated_at: r.try_get(7)?,
        updated_by: r.try_get(8)?,
        offered: r.try_get(9)?,
        downloading: r.try_get(10)?,
        installed: r.try_get(11)?,
        failed: r.try_get(12)?,
    })
}

async fn migrate(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    Migrator::new(Embedded(backend))
        .await?
        .run(pool)
        .await
        .context("running migrations")?;
    Ok(())
}
