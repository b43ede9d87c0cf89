//! Reading `[tls]`'s files into a rustls server configuration, with an
//! error for each way they can be wrong.
//!
//! Why a module of its own: these files change more often than the config
//! file (certificates expire), usually by a tool rather than by hand, and a
//! broken one must stop a start, or be refused by a reload, with a message
//! that names the file and what to do about it, as a broken config file is.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::server::config::TlsConfig;

/// Why `[tls]`'s files cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("[tls] {setting} = \"{}\": cannot read it: {source} ({})", path.display(), unreadable_hint(setting, source))]
    Unreadable {
        setting: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("[tls] {setting} = \"{}\": {problem}", path.display())]
    Invalid {
        setting: &'static str,
        path: PathBuf,
        problem: String,
    },

    #[error("[tls] key = \"{}\" does not belong to certificate = \"{}\" (their public keys differ): give the key the certificate was issued for, or the certificate issued for this key", key.display(), certificate.display())]
    KeyMismatch { key: PathBuf, certificate: PathBuf },
}

impl TlsError {
    /// The file could not be read, as opposed to being wrong.
    pub(crate) fn unreadable(&self) -> bool {
        matches!(self, TlsError::Unreadable { .. })
    }
}

/// What to do about a file the daemon cannot read. Under systemd
/// credentials (`systemd/echo-server-tls.conf`, which sets
/// `$CREDENTIALS_DIRECTORY`) the key the daemon reads is systemd's copy,
/// made at start: a key file replaced since then hides that copy and is
/// root's alone, and only a restart gives the daemon the new one. The
/// usual advice about the daemon's user would lead away from that.
fn unreadable_hint(setting: &str, source: &io::Error) -> &'static str {
    let under_credentials = std::env::var_os("CREDENTIALS_DIRECTORY").is_some();
    if setting == "key" && source.kind() == io::ErrorKind::PermissionDenied && under_credentials {
        "systemd gives the daemon its key only when it starts (LoadCredential=): after a new key, run `systemctl restart echo-server`"
    } else {
        "check the path; the daemon's user must be able to read it"
    }
}

/// The configuration for the TLS listeners' handshakes.
pub(super) fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("certificate", &config.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| {
        pem_error(
            "key",
            &config.key,
            e,
            "no private key in it (expected a PEM block -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring offers TLS 1.3 and 1.2");
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let invalid = |problem: String| TlsError::Invalid {
                setting: "client_ca",
                path: path.clone(),
                problem,
            };
            let mut roots = RootCertStore::empty();
            for ca in certificates("client_ca", path)? {
                roots
                    .add(ca)
                    .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                key: config.key.clone(),
                certificate: config.certificate.clone(),
            }
        }
        e => TlsError::Invalid {
            setting: "key",
            path: config.key.clone(),
            problem: format!("cannot use it with this certificate: {e}"),
        },
    })?;
    server.alpn_protocols = config
        .alpn
        .iter()
        .map(|protocol| protocol.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(server))
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const NONE: &str = "no certificate in it (expected a PEM block -----BEGIN CERTIFICATE-----)";
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| pem_error(setting, path, e, NONE))?;
    if chain.is_empty() {
        return Err(pem_error(setting, path, pem::Error::NoItemsFound, NONE));
    }
    Ok(chain)
}

fn pem_error(setting: &'static str, path: &Path, error: pem::Error, none: &str) -> TlsError {
    let path = path.to_path_buf();
    match error {
        pem::Error::Io(source) => TlsError::Unreadable {
            setting,
            path,
            source,
        },
        pem::Error::NoItemsFound => TlsError::Invalid {
            setting,
            path,
            problem: none.to_string(),
        },
        e => TlsError::Invalid {
            setting,
            path,
            problem: format!("not valid PEM: {e}"),
        },
    }
}
