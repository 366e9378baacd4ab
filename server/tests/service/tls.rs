//! The documented deployment's front: a test CA and a certificate for 127.0.0.1 (openssl) and a
//! real nginx terminating TLS in front of abupdate-server, optionally serving the feed
//! directory itself under /feed/ as a CDN or static host would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; killed when dropped.
pub struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A test CA and a server certificate for 127.0.0.1 it signed (EC P-256, openssl), in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki(dir: &Path) -> Pki {
    let p = |name: &str| dir.join(name);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=abupdate test CA",
        ])
        .args(ec)
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .arg("-keyout")
        .arg(p("key.pem"))
        .arg("-out")
        .arg(p("cert.csr")));
    std::fs::write(
        p("cert.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-set_serial", "2", "-in"])
        .arg(p("cert.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("cert.ext"))
        .arg("-out")
        .arg(p("cert.pem")));
    Pki {
        ca: p("ca.pem"),
        cert: p("cert.pem"),
        key: p("key.pem"),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx on 127.0.0.1:`tls_port` (HTTPS with `cert`/`key`), proxying to `upstream`;
    /// with `feed_dir`, /feed/ is served from it by nginx itself (with ranges), and /slow/feed/
    /// too at 16 KiB/s (to stop a device mid-download).
    /// Config, logs and temp files live in `dir`.
    pub fn start(
        dir: &Path,
        tls_port: u16,
        (cert, key): (&Path, &Path),
        upstream: SocketAddr,
        feed_dir: Option<&Path>,
    ) -> Nginx {
        assert!(
            Path::new("/usr/sbin/nginx").exists(),
            "nginx missing: install Debian's nginx-light"
        );
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let feed = feed_dir
            .map(|f| {
                format!(
                    "  location /feed/ {{ alias {f}/; }}\n  location /slow/feed/ {{ alias {f}/; \
                     limit_rate 16k; }}\n",
                    f = f.display()
                )
            })
            .unwrap_or_default();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 512; }}\nhttp {{\n access_log off;\n client_body_temp_path {p}/tmp;\n\
             proxy_temp_path {p}/tmp;\n server {{\n  listen 127.0.0.1:{tls_port} ssl;\n  ssl_certificate {c};\n\
             ssl_certificate_key {k};\n  client_max_body_size 16k;\n{feed}  location / {{ proxy_pass http://{a}; \
             proxy_set_header Host $host; }}\n }}\n}}\n",
            p = dir.display(),
            c = cert.display(),
            k = key.display(),
            a = upstream
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let nginx = Nginx(
            Command::new("/usr/sbin/nginx")
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }
}
