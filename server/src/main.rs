//! abupdate-server: the server tier of abupdate. Devices check in and report over HTTP(S);
//! operators watch and steer rollouts on the dashboard. See the README's "Update server".

mod api;
mod app;
mod caches;
mod chart;
mod dashboard;
mod db;
mod feeds;
mod limits;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "abupdate-server", version, about)]
struct Cli {
    /// Database: a SQLite file path or sqlite:// URL (default), or a postgres:// URL.
    #[arg(long, global = true, default_value = "abupdate-server.db")]
    db: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API, the dashboard and the feed directory.
    Serve {
        /// The feed directory (`<model>/<channel>/feed.json`, as `abupdate publish` writes it).
        #[arg(long)]
        feed_dir: PathBuf,
        /// Address to listen on (plain HTTP: put nginx or another TLS terminator in front).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The URL devices reach this server by (default http://LISTEN).
        #[arg(long)]
        public_url: Option<String>,
        /// Where devices fetch feeds from (default PUBLIC_URL/feed), e.g. a CDN.
        #[arg(long)]
        feed_base_url: Option<String>,
        /// Requests per device per minute.
        #[arg(long, default_value_t = 10)]
        rate_per_minute: u32,
        /// Requests a device may save up.
        #[arg(long, default_value_t = 20)]
        rate_burst: u32,
        /// Send the operator cookie only over HTTPS.
        #[arg(long)]
        secure_cookie: bool,
        /// Database connections for reads (SQLite writes use one).
        #[arg(long, default_value_t = 8)]
        db_connections: u32,
    },
    /// Devices.
    Device {
        #[command(subcommand)]
        cmd: AddCmd,
    },
    /// Operators (dashboard and rollout API users).
    Operator {
        #[command(subcommand)]
        cmd: AddCmd,
    },
}

#[derive(Subcommand)]
enum AddCmd {
    /// Registers one or more names and prints `NAME TOKEN` per line (the token is shown once).
    Add { names: Vec<String> },
}

/// Device ids and operator names: printable ASCII without spaces.
fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            feed_dir,
            listen,
            public_url,
            feed_base_url,
            rate_per_minute,
            rate_burst,
            secure_cookie,
            db_connections,
        } => {
            app::serve(app::Config {
                db: cli.db,
                feed_dir,
                listen,
                public_url,
                feed_base_url,
                rate_per_minute,
                rate_burst,
                secure_cookie,
                db_connections,
            })
            .await
        }
        Cmd::Device {
            cmd: AddCmd::Add { names },
        }
        | Cmd::Operator {
            cmd: AddCmd::Add { names },
        } if names.is_empty() => {
            anyhow::bail!("name at least one")
        }
        Cmd::Device {
            cmd: AddCmd::Add { names },
        } => add(&cli.db, &names, true).await,
        Cmd::Operator {
            cmd: AddCmd::Add { names },
        } => add(&cli.db, &names, false).await,
    }
}

async fn add(db: &str, names: &[String], device: bool) -> anyhow::Result<()> {
    if let Some(bad) = names.iter().find(|n| !valid_id(n)) {
        anyhow::bail!("{bad:?}: 1-128 printable ASCII characters without spaces");
    }
    let db = db::Db::connect(db, 1).await?;
    let mut out = String::new();
    for name in names {
        let token = tokens::generate()?;
        if device {
            db.add_device(name, &tokens::hash(&token)).await?;
        } else {
            db.add_operator(name, &tokens::hash(&token)).await?;
        }
        out.push_str(&format!("{name} {token}\n"));
    }
    print!("{out}");
    Ok(())
}
