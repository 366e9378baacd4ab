//! The JSON API (SERVER_API.md): device check-ins and reports, operator rollout control.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::AppState;
use crate::db::Report;
use crate::feeds::{self, valid_name};
use crate::limits::{read_json, ApiError};
use crate::tokens;

/// Report phases a device sends (one report at each phase end, and at completion).
pub const PHASES: &[&str] = &["download", "verify", "install", "postinstall", "complete"];

#[derive(Deserialize)]
struct Checkin {
    device_id: String,
    model: String,
    channel: String,
    build_fingerprint: String,
    build_timestamp: i64,
}

#[derive(Deserialize)]
struct ReportIn {
    device_id: String,
    #[serde(default)]
    offer_id: Option<String>,
    phase: String,
    code: i64,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    bytes: i64,
    #[serde(default)]
    from_build: String,
    #[serde(default)]
    to_build: String,
    #[serde(default)]
    duration_ms: i64,
    /// "a"/"b" or 0/1: kept as text.
    #[serde(default)]
    slot: serde_json::Value,
    at: i64,
}

#[derive(Deserialize)]
struct SetPercent {
    percent: i64,
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| tokens::well_formed(t))
}

/// The device a request's token belongs to (401 otherwise), rate-limited (429).
async fn device_auth(st: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    let hash = tokens::hash(token);
    let device = match st.caches.device(&hash) {
        Some(device) => device,
        None => {
            let device = st
                .db
                .device_for_token(&hash)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            st.caches.remember_device(hash, &device);
            device
        }
    };
    if !st.limiter.allow(&device) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded",
        ));
    }
    Ok(device)
}

pub async fn operator_auth(st: &AppState, token: Option<&str>) -> Result<String, ApiError> {
    let token = token
        .filter(|t| tokens::well_formed(t))
        .ok_or_else(ApiError::unauthorized)?;
    st.db
        .operator_for_token(&tokens::hash(token))
        .await?
        .ok_or_else(ApiError::unauthorized)
}

fn same_device(authed: &str, claimed: &str) -> Result<(), ApiError> {
    if authed == claimed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token does not belong to device_id",
        ))
    }
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field}: longer than {max} bytes or has control characters"
        )));
    }
    Ok(())
}

pub async fn checkin(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = device_auth(&st, &headers).await?;
    let c: Checkin = read_json(&headers, body).await?;
    same_device(&device, &c.device_id)?;
    if !valid_name(&c.model) || !valid_name(&c.channel) {
        return Err(ApiError::bad_request(
            "model and channel: 1-128 of [A-Za-z0-9._-]",
        ));
    }
    bounded("build_fingerprint", &c.build_fingerprint, 256)?;
    let loaded = st.feeds.get(&c.model, &c.channel).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no feed for this model and channel")
    })?;
    if loaded.fresh {
        if let Err(e) = st.db.sync_feed(&loaded.feed).await {
            st.feeds.forget(&c.model, &c.channel);
            return Err(e.into());
        }
        st.caches.forget_percents();
    }
    let percents = match st.caches.percents(&c.model, &c.channel) {
        Some(p) => p,
        None => {
            let p = std::sync::Arc::new(st.db.percents(&c.model, &c.channel).await?);
            st.caches.remember_percents(&c.model, &c.channel, p.clone());
            p
        }
    };
    let percent = |o: &feeds::Offer| {
        percents
            .get(&o.id)
            .copied()
            .unwrap_or(i64::from(o.rollout_percent))
    };
    let chosen = feeds::choose(
        &loaded.feed,
        percent,
        &device,
        &c.build_fingerprint,
        c.build_timestamp,
    );
    st.db
        .record_checkin(
            &device,
            &c.model,
            &c.channel,
            &c.build_fingerprint,
            c.build_timestamp,
            chosen.map(|o| o.id.as_str()),
        )
        .await?;
    let rollout: serde_json::Map<String, serde_json::Value> = loaded
        .feed
        .offers
        .iter()
        .map(|o| (o.id.clone(), percent(o).into()))
        .collect();
    let feed_url = format!("{}/{}/{}/feed.json", st.feed_base_url, c.model, c.channel);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "feed_url": feed_url, "rollout": rollout }),
    ))
}

pub async fn report(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let device = device_auth(&st, &headers).await?;
    let r: ReportIn = read_json(&headers, body).await?;
    same_device(&device, &r.device_id)?;
    let offer_id = r.offer_id.unwrap_or_default();
    if !offer_id.is_empty() && !valid_name(&offer_id) {
        return Err(ApiError::bad_request("offer_id: 1-128 of [A-Za-z0-9._-]"));
    }
    if !PHASES.contains(&r.phase.as_str()) {
        return Err(ApiError::bad_request(format!(
            "phase: one of {}",
            PHASES.join(", ")
        )));
    }
    if !(0..=99).contains(&r.code) {
        return Err(ApiError::bad_request("code: a status code, 0-99"));
    }
    if r.bytes < 0 || r.duration_ms < 0 || r.at < 0 {
        return Err(ApiError::bad_request(
            "bytes, duration_ms, at: not negative",
        ));
    }
    bounded("reason", &r.reason, 128)?;
    bounded("message", &r.message, 4096)?;
    bounded("from_build", &r.from_build, 256)?;
    bounded("to_build", &r.to_build, 256)?;
    let slot = match &r.slot {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(ApiError::bad_request("slot: a string or a number")),
    };
    bounded("slot", &slot, 8)?;
    st.db
        .record_report(&Report {
            device_id: &device,
            offer_id: &offer_id,
            phase: &r.phase,
            code: r.code,
            reason: &r.reason,
            message: &r.message,
            bytes: r.bytes,
            from_build: &r.from_build,
            to_build: &r.to_build,
            duration_ms: r.duration_ms,
            slot: &slot,
            at: r.at,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Loads every feed in the directory and makes sure its offers have rollout rows.
pub async fn sync_all(st: &AppState) -> Result<(), ApiError> {
    for loaded in st.feeds.scan().await? {
        if loaded.fresh {
            st.db.sync_feed(&loaded.feed).await?;
            st.caches.forget_percents();
        }
    }
    Ok(())
}

pub async fn list_rollouts(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator_auth(&st, bearer(&headers)).await?;
    sync_all(&st).await?;
    let rollouts = st.db.rollouts().await?;
    let failures = st.db.failures().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "rollouts": rollouts, "failures": failures }),
    ))
}

/// Changes a rollout's percentage: the operator's decision, recorded in the history.
pub async fn apply_percent(
    st: &AppState,
    offer_id: &str,
    percent: i64,
    operator: &str,
) -> Result<(), ApiError> {
    if !(0..=100).contains(&percent) {
        return Err(ApiError::bad_request("percent: 0-100"));
    }
    sync_all(st).await?;
    let found = st.db.set_percent(offer_id, percent, operator).await?;
    st.caches.forget_percents();
    if !found {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such offer"));
    }
    Ok(())
}

pub async fn set_rollout(
    State(st): State<Arc<AppState>>,
    Path(offer_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let operator = operator_auth(&st, bearer(&headers)).await?;
    let req: SetPercent = read_json(&headers, body).await?;
    apply_percent(&st, &offer_id, req.percent, &operator).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "offer_id": offer_id, "percent": req.percent }),
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}
