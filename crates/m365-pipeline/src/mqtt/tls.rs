//! TLS client configuration: rustls with the `ring` provider (no cmake, no aws-lc, no OpenSSL).
//!
//! Trust: a configured CA file (PEM), or else the operating system's roots through
//! `rustls-native-certs`. Why system roots rather than a bundled list (`webpki-roots`): the Pi
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

/// Builds the rustls configuration.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs("CA certificates", path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_err("CA certificates", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!(error = %e, "while loading the system's CA certificates");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ConfigError::Tls(
                    "no CA certificates found on the system: install ca-certificates or set ca_file"
                        .into(),
                ));
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (client_cert, client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_err("client private key", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::Tls(format!("client certificate and key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(ConfigError::ClientAuth),
    };
    Ok(Arc::new(config))
}
