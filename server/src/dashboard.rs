//! The rollout dashboard: one server-rendered page (no script) with per-offer device counts,
//! failures by status class and reason, a progress chart, and forms to pause a rollout or
//! change its percentage. Operators log in with their token, kept in an HttpOnly,
//! SameSite=Strict cookie (which also keeps other sites from posting the forms).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use crate::api::{apply_percent, operator_auth, sync_all};
use crate::app::AppState;
use crate::chart;
use crate::db::{now, FailureRow, RolloutRow};
use crate::limits::ApiError;

const COOKIE: &str = "abupdate_operator";

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

#[derive(Deserialize)]
pub struct PercentForm {
    percent: i64,
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The status class of a code (README: 10-19 download, 20-29 verification, 30-39 install,
/// 40-49 post-check).
pub fn class(code: i64) -> &'static str {
    match code {
        10..=19 => "download",
        20..=29 => "verification",
        30..=39 => "install",
        40..=49 => "post-check",
        _ => "other",
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;background:#f3f4f6;color:#222}\
header{background:#24324a;color:#fff;padding:10px 20px;display:flex;justify-content:space-between;align-items:center}\
header form{margin:0}main{padding:12px 20px}h2{margin:18px 0 8px}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.offer{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}\
.offer h3{margin:0 0 6px}.fp{color:#666;font-size:12px}.row{display:flex;gap:24px;flex-wrap:wrap}\
.paused{color:#b00;font-weight:bold}.err{color:#b00}button{cursor:pointer}";

fn page_html(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

fn login_page(error: Option<&str>) -> Html<String> {
    let err = error
        .map(|e| format!("<p class=\"err\" id=\"login-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    page_html(
        "abupdate rollouts: log in",
        &format!(
            "<header><b>abupdate rollouts</b></header><main><h2>Operator login</h2>{err}\
             <form method=\"post\" action=\"/login\"><label>Operator token \
             <input id=\"token\" name=\"token\" type=\"password\" size=\"66\" autocomplete=\"off\"></label> \
             <button id=\"login\" type=\"submit\">Log in</button></form>\
             <p>Tokens come from <code>abupdate-server operator add NAME</code>.</p></main>"
        ),
    )
}

fn redirect_home() -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
}

pub async fn page(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(operator) = operator_auth(&st, cookie_token(&headers)).await else {
        return Ok(login_page(None).into_response());
    };
    sync_all(&st).await?;
    let rollouts = st.db.rollouts().await?;
    let failures = st.db.failures().await?;
    let mut timelines = Vec::new();
    for r in &rollouts {
        timelines.push(st.db.timeline(&r.offer_id).await?);
    }
    let now = now();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><b>abupdate rollouts</b><span>operator <b id=\"operator\">{}</b> · {} UTC \
         <a href=\"/\" style=\"color:#cde\">refresh</a></span>\
         <form method=\"post\" action=\"/logout\"><button>Log out</button></form></header><main>",
        esc(&operator),
        chart::utc(now)
    );
    summary(&mut body, &rollouts);
    for (r, tl) in rollouts.iter().zip(&timelines) {
        let mine: Vec<&FailureRow> = failures
            .iter()
            .filter(|f| f.offer_id == r.offer_id)
            .collect();
        offer_card(&mut body, r, &mine, &chart::svg(&r.offer_id, tl, now));
    }
    body.push_str("</main>");
    Ok(page_html("abupdate rollouts", &body).into_response())
}

/// The overview table: per build and channel, the counts the cards detail.
fn summary(out: &mut String, rollouts: &[RolloutRow]) {
    out.push_str(
        "<h2>Rollouts by build and channel</h2><table id=\"summary\"><tr><th>model</th><th>channel</th>\
         <th>offer</th><th>build</th><th>kind</th><th>rollout</th><th>offered</th><th>downloading</th>\
         <th>installed</th><th>failed</th></tr>",
    );
    if rollouts.is_empty() {
        out.push_str(
            "<tr><td colspan=\"10\">No offers: publish a feed into the feed directory.</td></tr>",
        );
    }
    for r in rollouts {
        let id = esc(&r.offer_id);
        let kind = match &r.source_fingerprint {
            Some(src) => format!("delta from <span class=\"fp\">{}</span>", esc(src)),
            None => "full".into(),
        };
        let pct = if r.percent == 0 {
            "<span class=\"paused\">paused</span>".to_string()
        } else {
            format!("{}%", r.percent)
        };
        let _ = write!(
            out,
            "<tr data-offer=\"{id}\"><td>{}</td><td>{}</td><td><a href=\"#offer-{id}\">{id}</a></td>\
             <td class=\"fp\">{}</td><td>{kind}</td><td data-k=\"percent\" data-v=\"{}\">{pct}</td>\
             <td class=\"n\" data-k=\"offered\">{}</td><td class=\"n\" data-k=\"downloading\">{}</td>\
             <td class=\"n\" data-k=\"installed\">{}</td><td class=\"n\" data-k=\"failed\">{}</td></tr>",
            esc(&r.model),
            esc(&r.channel),
            esc(&r.build_fingerprint),
            r.percent,
            r.offered,
            r.downloading,
            r.installed,
            r.failed
        );
    }
    out.push_str("</table>");
}

fn offer_card(out: &mut String, r: &RolloutRow, failures: &[&FailureRow], svg: &str) {
    let id = esc(&r.offer_id);
    let _ = write!(
        out,
        "<section class=\"offer\" id=\"offer-{id}\" data-offer=\"{id}\"><h3>{id} <span class=\"fp\">{} / {} · {}</span></h3>\
         <div class=\"row\"><div>{svg}</div><div>",
        esc(&r.model),
        esc(&r.channel),
        esc(&r.build_fingerprint)
    );
    let state = if r.percent == 0 {
        "<span class=\"paused\">paused</span>".to_string()
    } else {
        format!("{}%", r.percent)
    };
    let _ = write!(
        out,
        "<p>Rollout: <b data-k=\"percent\">{state}</b> <span class=\"fp\">(set by {} at {} UTC)</span></p>\
         <form class=\"set\" method=\"post\" action=\"/rollouts/{id}\"><label>Percent \
         <input name=\"percent\" type=\"number\" min=\"0\" max=\"100\" value=\"{}\" size=\"4\"></label> \
         <button type=\"submit\" data-action=\"set\">Set</button></form>\
         <form class=\"pause\" method=\"post\" action=\"/rollouts/{id}\"><input type=\"hidden\" name=\"percent\" value=\"0\">\
         <button type=\"submit\" data-action=\"pause\">Pause rollout</button></form>",
        esc(&r.updated_by),
        chart::utc(r.updated_at),
        r.percent
    );
    // Failures grouped by status class, then code and reason.
    let mut by_class: BTreeMap<(i64, &str), Vec<&FailureRow>> = BTreeMap::new();
    for f in failures {
        by_class
            .entry((f.code / 10, class(f.code)))
            .or_default()
            .push(f);
    }
    out.push_str("<h4>Failures (devices whose latest report failed)</h4>");
    if by_class.is_empty() {
        out.push_str("<p>None.</p>");
    } else {
        out.push_str("<table class=\"failures\"><tr><th>class</th><th>code</th><th>reason</th><th>devices</th></tr>");
        for ((_, cls), rows) in &by_class {
            let total: i64 = rows.iter().map(|f| f.devices).sum();
            let _ = write!(
                out,
                "<tr class=\"class\" data-class=\"{cls}\"><td colspan=\"3\"><b>{cls}</b></td><td class=\"n\"><b>{total}</b></td></tr>"
            );
            for f in rows {
                let _ = write!(
                    out,
                    "<tr data-code=\"{}\" data-reason=\"{}\"><td></td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                    f.code,
                    esc(&f.reason),
                    f.code,
                    esc(&f.reason),
                    f.devices
                );
            }
        }
        out.push_str("</table>");
    }
    out.push_str("</div></div></section>");
}

pub async fn login(State(st): State<Arc<AppState>>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    match operator_auth(&st, Some(token)).await {
        Ok(_) => {
            let secure = if st.secure_cookie { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200{secure}"
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/".to_string()),
                    (header::SET_COOKIE, cookie),
                ],
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            login_page(Some("Unknown operator token.")),
        )
            .into_response(),
    }
}

pub async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

pub async fn set_percent(
    State(st): State<Arc<AppState>>,
    Path(offer_id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<PercentForm>,
) -> Result<Response, ApiError> {
    let operator = operator_auth(&st, cookie_token(&headers)).await?;
    apply_percent(&st, &offer_id, form.percent, &operator).await?;
    Ok(redirect_home())
}
