//! The rustls client configuration (hosts; see `session.rs`): the system's CA store plus an
//! optional pinned CA, with `ring` as the crypto provider.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::session::ANDROID_CA_DIR;
use crate::crypto::pem;
use crate::error::Result;

pub(crate) fn client_config(pinned_ca: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    // Unreadable stores or odd certificates are skipped: other CAs may still do, and a missing
    // one shows as a clear certificate error at the handshake.
    let system = rustls_native_certs::load_native_certs();
    let (system_added, _) = roots.add_parsable_certificates(system.certs);
    let mut android_added = 0;
    if Path::new(ANDROID_CA_DIR).is_dir() {
        let android =
            rustls_native_certs::load_certs_from_paths(None, Some(Path::new(ANDROID_CA_DIR)));
        android_added = roots.add_parsable_certificates(android.certs).0;
    }
    log::debug!(
        "TLS roots: {system_added} from the system store, {android_added} from {ANDROID_CA_DIR}"
    );
    if let Some(path) = pinned_ca {
        for cert in pinned_certificates(path)? {
            roots.add(cert).map_err(|e| {
                crate::err!(
                    DownloadFailed,
                    "pinned CA {}: unusable certificate: {e}",
                    path.display()
                )
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::err!(DownloadFailed, "TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every `CERTIFICATE` block of a PEM file; at least one.
fn pinned_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path).map_err(|e| {
        crate::err!(DownloadFailed, "reading pinned CA {}: {e}", path.display()).caused_by(e)
    })?;
    let blocks = pem::parse_many(&text)
        .map_err(|e| crate::err!(DownloadFailed, "pinned CA {}: bad PEM: {e}", path.display()))?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|block| block.tag == "CERTIFICATE")
        .map(|block| CertificateDer::from(block.contents))
        .collect();
    if certs.is_empty() {
        crate::bail!(
            DownloadFailed,
            "pinned CA {} holds no PEM certificate",
            path.display()
        );
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn pinned_ca_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        assert_eq!(e.code, ErrorCode::DownloadFailed);
        assert!(e.message.contains("missing.pem"), "{e}");
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound), "{e}");

        let key_only = dir.path().join("key.pem");
        std::fs::write(
            &key_only,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = client_config(Some(&key_only)).unwrap_err();
        assert!(e.message.contains("no PEM certificate"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = client_config(Some(&garbage)).unwrap_err();
        assert!(e.message.contains("unusable certificate"), "{e}");

        assert!(client_config(None).is_ok());
    }
}
