//! A real nginx, started per test as a foreground child on 127.0.0.1 with everything (config,
//! pid, logs, temp paths, served files) in a temporary directory. A missing nginx fails the
//! test: CI installs the Debian package `nginx-light`.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;

use super::pki::Pki;

/// Bytes a second that the `/slow/` location sends.
pub const SLOW_RATE: u64 = 32 * 1024;

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx serving plain HTTP, and HTTPS with the server certificate of `pki`.
    pub fn start(pki: Option<&Pki>) -> Nginx {
        let binary = binary();
        let modules =
            String::from_utf8_lossy(&run_capture(Command::new(&binary).arg("-V"))).into_owned();
        let mut last_error = String::new();
        // A port picked free may be taken by the time nginx binds it: try a few.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let (port, tls_port) = (free_port(), free_port());
            fs::create_dir_all(dir.path().join("www")).unwrap();
            fs::create_dir_all(dir.path().join("tmp")).unwrap();
            let config = config(dir.path(), port, tls_port, pki, &modules);
            fs::write(dir.path().join("nginx.conf"), config).unwrap();
            let child = Command::new(&binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut nginx = Nginx {
                child,
                port,
                tls_port,
                dir,
            };
            if nginx.wait_ready(pki.is_some()) {
                return nginx;
            }
            last_error = fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
        }
        panic!("nginx did not start: {last_error}");
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The URL of `name` served at [`SLOW_RATE`] bytes a second.
    pub fn slow_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/slow/{name}", self.port)
    }

    /// The access log: one line per request, `status "Range" "If-Range" bytes-sent`.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn tls_url(&self, host: &str, name: &str) -> String {
        format!("https://{host}:{}/{name}", self.tls_port)
    }

    /// Serves `data` as `name`, replacing any previous file atomically, with a modification
    /// time of `mtime_offset` seconds from now so that the ETag differs between versions.
    pub fn put(&self, name: &str, data: &[u8], mtime_offset: u64) {
        replace_file(&self.www(), name, data, mtime_offset);
    }

    /// The path a test can hand to a proxy hook for replacing files.
    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    fn wait_ready(&mut self, tls: bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let up = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && (!tls || TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok());
            if up {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces `name` under `www` the way [`Nginx::put`] does, from any thread.
pub fn replace_file(www: &Path, name: &str, data: &[u8], mtime_offset: u64) {
    let staging = www.join(format!(".{name}.new"));
    fs::write(&staging, data).unwrap();
    let mtime = SystemTime::now() + Duration::from_secs(mtime_offset);
    fs::File::options()
        .write(true)
        .open(&staging)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(&staging, www.join(name)).unwrap();
}

fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    if Command::new("nginx").arg("-v").output().is_ok() {
        return PathBuf::from("nginx");
    }
    panic!("nginx is required by this test: install the Debian package nginx-light");
}

fn run_capture(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    // nginx -V prints to stderr.
    [output.stdout, output.stderr].concat()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, port: u16, tls_port: u16, pki: Option<&Pki>, modules: &str) -> String {
    let d = dir.display();
    // Temp paths of every compiled-in module point into the test directory, so nothing is
    // written under /var even when running as root.
    let mut temp_paths = format!("client_body_temp_path {d}/tmp/client_body;\n");
    for module in ["proxy", "fastcgi", "uwsgi", "scgi"] {
        if !modules.contains(&format!("--without-http_{module}_module")) {
            temp_paths += &format!("{module}_temp_path {d}/tmp/{module};\n");
        }
    }
    let tls = match pki {
        Some(pki) => format!(
            "listen 127.0.0.1:{tls_port} ssl;\nssl_certificate {};\nssl_certificate_key {};\n",
            pki.server_cert.display(),
            pki.server_key.display()
        ),
        None => String::new(),
    };
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format ranges '$status "$http_range" "$http_if_range" $body_bytes_sent';
    access_log {d}/access.log ranges;
    {temp_paths}
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        {tls}
        root {d}/www;
        location /redirect/ {{
            absolute_redirect off;
            rewrite ^/redirect/(.*)$ /$1 redirect;
        }}
        location /absolute/ {{
            rewrite ^/absolute/(.*)$ /redirect/$1 permanent;
        }}
        location /slow/ {{
            alias {d}/www/;
            limit_rate {SLOW_RATE};
        }}
    }}
}}
"#
    )
}
