//! TLS client configuration: rustls with the `ring` provider (no cmake, no aws-lc, no OpenSSL).
//!
//! Trust: a configured CA file (PEM), the operating system's roots through
//! `rustls-native-certs` (`system_roots`, on by default), or both. Why system roots rather than a bundled list (`webpki-roots`): the Pi
//! runs a maintained distribution whose `ca-certificates` package gets revocations and new roots
//! with ordinary updates, and administrators can add a private CA the usual way; a list compiled
//! into the binary would only change when m365 is rebuilt. Optional client certificate and key
//! (PEM) for brokers that authenticate devices by certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::warn;

use crate::error::ConfigError;

fn file_err(what: &'static str, path: &Path, reason: impl ToString) -> ConfigError {
    ConfigError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, path, e))?;
    if certs.is_empty() {
        return Err(file_err(what, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Builds the rustls configuration: trusts the certificates in `ca_file` and, with
/// `system_roots`, the operating system's; `client_auth` is the client certificate chain and its
/// private key (PEM), for brokers that authenticate devices by certificate.
pub fn client_config(
    ca_file: Option<&Path>,
    system_roots: bool,
    client_auth: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        for cert in read_certs("CA certificates", path)? {
            roots
                .add(cert)
                .map_err(|e| file_err("CA certificates", path, e))?;
        }
    }
    if system_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(error = %e, "while loading the system's CA certificates");
        }
        roots.add_parsable_certificates(found.certs);
    }
    if roots.is_empty() {
        return Err(ConfigError::Tls(if system_roots {
            "no CA certificates found on the system: install ca-certificates or set ca_file".into()
        } else {
            "no CA certificate to trust: set ca_file, or trust the system's".into()
        }));
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client_auth {
        Some((cert, key)) => {
            let chain = read_certs("client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_err("client private key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::Tls(format!("client certificate and key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_trust_is_refused() {
        let e = client_config(None, false, None).unwrap_err();
        assert!(matches!(e, ConfigError::Tls(_)), "{e}");
    }

    #[test]
    fn a_ca_file_alone_is_enough_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        client_config(Some(&ca), false, None).unwrap();
        let missing = dir.path().join("none.pem");
        let e = client_config(Some(&missing), true, None).unwrap_err();
        assert!(
            matches!(&e, ConfigError::File { path, .. } if *path == missing),
            "{e}"
        );
    }
}
