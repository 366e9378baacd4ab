//! The service: shared state, routes, and serving until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tower_http::services::ServeDir;

use crate::caches::Caches;
use crate::db::Db;
use crate::feeds::FeedCache;
use crate::limits::{RateLimiter, BODY_LIMIT};
use crate::{api, dashboard};

pub struct AppState {
    pub db: Db,
    pub feeds: FeedCache,
    pub limiter: RateLimiter,
    /// Where devices fetch feeds: this server's /feed or a CDN.
    pub feed_base_url: String,
    /// Mark the operator cookie `Secure` (the dashboard is reached over HTTPS).
    pub secure_cookie: bool,
    pub caches: Caches,
}

pub struct Config {
    pub db: String,
    pub feed_dir: PathBuf,
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub feed_base_url: Option<String>,
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    pub secure_cookie: bool,
    pub db_connections: u32,
}

pub fn router(state: Arc<AppState>, feed_dir: PathBuf) -> Router {
    Router::new()
        .route("/v1/checkin", post(api::checkin))
        .route("/v1/report", post(api::report))
        .route("/v1/rollouts", get(api::list_rollouts))
        .route("/v1/rollouts/{offer_id}", post(api::set_rollout))
        .route("/", get(dashboard::page))
        .route("/login", post(dashboard::login))
        .route("/logout", post(dashboard::logout))
        .route("/rollouts/{offer_id}", post(dashboard::set_percent))
        // Static feed and payloads for a one-machine setup (ranges supported for resuming).
        .nest_service("/feed", ServeDir::new(feed_dir))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let db = Db::connect(&cfg.db, cfg.db_connections).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let public = cfg.public_url.unwrap_or_else(|| format!("http://{addr}"));
    let feed_base_url = cfg
        .feed_base_url
        .unwrap_or_else(|| format!("{}/feed", public.trim_end_matches('/')));
    let state = Arc::new(AppState {
        db,
        feeds: FeedCache::new(cfg.feed_dir.clone()),
        limiter: RateLimiter::new(cfg.rate_per_minute, cfg.rate_burst),
        feed_base_url: feed_base_url.trim_end_matches('/').to_string(),
        secure_cookie: cfg.secure_cookie,
        caches: Caches::default(),
    });
    if let Err(e) = api::sync_all(&state).await {
        anyhow::bail!(
            "reading the feed directory {}: {}",
            cfg.feed_dir.display(),
            e.1
        );
    }
    // Tests and scripts read the bound address (with --listen 127.0.0.1:0) from this line.
    println!("abupdate-server listening on http://{addr}");
    let app = router(state, cfg.feed_dir);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
