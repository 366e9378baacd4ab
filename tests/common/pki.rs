//! A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with the
//! `openssl` command line tool (Debian package `openssl`); a missing tool fails the test.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    _dir: TempDir,
}

impl Pki {
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        fs::write(
            path("ca.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
             [dn]\nCN = abupdate test CA\n\
             [v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
             subjectKeyIdentifier = hash\n",
        )
        .unwrap();
        fs::write(
            path("server.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .unwrap();
        let p = |name: &str| path(name).to_str().unwrap().to_owned();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-config",
            &p("ca.cnf"),
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]);
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.pem"),
        ]);
        Pki {
            ca_cert: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            _dir: dir,
        }
    }
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is required by this test (Debian package openssl): {e}")
        });
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
