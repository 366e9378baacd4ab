//! abupdate-server against a real running instance (SQLite and a throwaway PostgreSQL), a
//! simulated fleet, and the dashboard in headless Chromium.

mod api;
mod browser;
mod common;
mod device_service;
mod fleet;
mod https;
mod tier;
mod tls;
