//! `--tls`: the client's side of TLS, for echo services behind TLS (echo-server's
//! `[tls]`, stunnel, a load balancer that terminates TLS).
//!
//! Why its own module: what TLS adds is the same for every verb — which
//! certificates to trust, which name to expect, a client certificate, and
//! turning a refused certificate into words an operator can act on — so it
//! is built once from the command line ([`Tls::new`]) and handed to the verbs,
//! which only wrap their TCP connection in it. rustls with the `ring`
//! provider: no OpenSSL to find at build time, and it cross-builds for the
//! Windows client with mingw. Only TLS 1.2 and 1.3 are offered.
//!
//! A certificate the client refuses, or a server that refuses the client's,
//! is a [`Verdict::Certificate`](super::Verdict): the echo path may be fine,
//! but nobody can use it safely, and that needs a person, not a retry.

mod not_after;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Failure, Verdict};
use crate::shared::address::HostPort;

/// What the command line says about TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CAs to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry, instead of the target's host.
    pub server_name: Option<String>,
    /// PEM files of a client certificate (chain) and its key, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate.
    pub insecure: bool,
}

/// A ready TLS client configuration, shared by every connection of a run.
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificates and key the options name. An error is the
    /// user's to fix (a missing file, no key in it), in words that say how.
    pub fn new(options: &TlsOptions) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let builder = if options.insecure {
            eprintln!(
                "echo-client: warning: --insecure: the server's certificate is not verified, \
                 so anyone on the path can pose as the server and read or change the echo"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider.signature_verification_algorithms,
                )))
        } else {
            builder.with_root_certificates(roots(options.ca.as_deref())?)
        };
        let mut config = match &options.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!(
                        "--key {}: no private key read: {e} (a PEM file with a PRIVATE KEY block)",
                        key.display()
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--cert/--key: {e}"))?
            }
        };
        // Every connection a full handshake: each probe sees the
        // certificate the server has now, and servers that get resumption
        // wrong with client certificates (OpenSSL without a session id
        // context, as in socat) answer with an internal error alert.
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = options
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_string())
                    .map_err(|_| format!("--server-name `{name}` is not a DNS name or IP address"))
            })
            .transpose()?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The name the server's certificate must carry: `--server-name`, else
    /// the target's host (a name or an address).
    fn server_name_for(&self, target: &HostPort) -> Result<ServerName<'static>, Failure> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(target.host.as_str().to_string()).map_err(|_| {
                Failure::certificate(format!(
                    "`{}` is not a name a certificate can carry; give --server-name",
                    target.host
                ))
            }),
        }
    }

    /// What a connection to `target` needs, for `bench`'s load threads,
    /// which drive rustls themselves.
    pub(crate) fn for_target(&self, target: &HostPort) -> Result<TargetTls, Failure> {
        Ok(TargetTls {
            config: Arc::clone(&self.config),
            name: self.server_name_for(target)?,
        })
    }

    /// The TLS handshake over a connected `stream`.
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
        target: &HostPort,
    ) -> Result<TlsStream<TcpStream>, Failure> {
        let name = self.server_name_for(target)?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, stream)
            .await
            .map_err(|e| Failure::io(&e))
    }
}

/// The configuration and the expected name for connections to one target.
#[derive(Debug)]
pub(crate) struct TargetTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TargetTls {
    /// A new client session, its handshake not yet begun.
    pub(crate) fn connection(&self) -> io::Result<rustls::ClientConnection> {
        rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(io::Error::other)
    }
}

/// The system's trust store, or the CAs of `--ca`.
fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let (added, _) = store.add_parsable_certificates(certificates(path)?);
            if added == 0 {
                return Err(format!(
                    "--ca {}: no usable CA certificate in it",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no CA certificates found in the system's store{why}; give the server's CA with --ca FILE"
                ));
            }
        }
    }
    Ok(store)
}

/// Every certificate of a PEM file; none is an error.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let cannot = |e: &dyn fmt::Display| format!("{}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| cannot(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cannot(&e))?;
    if chain.is_empty() {
        return Err(cannot(&"no CERTIFICATE block in it (PEM expected)"));
    }
    Ok(chain)
}

/// What a handshake settled, as `check` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Session {
    /// `TLSv1.3` or `TLSv1.2`.
    pub(crate) version: String,
    pub(crate) cipher_suite: String,
    /// The end of the server certificate's validity (its notAfter), in
    /// RFC 3339; `None` if the certificate could not be read for it.
    pub(crate) certificate_not_after: Option<String>,
    /// Days from now to notAfter, to two decimals; negative once expired.
    pub(crate) certificate_expires_in_days: Option<f64>,
    /// notAfter in seconds since the Unix epoch.
    #[serde(skip)]
    pub(crate) certificate_not_after_unix: Option<i64>,
}

impl Session {
    pub(crate) fn of(stream: &TlsStream<TcpStream>) -> Session {
        let connection = stream.get_ref().1;
        let not_after = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| not_after::unix_seconds(leaf));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        Session {
            version: connection
                .protocol_version()
                // `TLSv1_3` to the usual `TLSv1.3`.
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_default(),
            cipher_suite: connection
                .negotiated_cipher_suite()
                .map(|suite| format!("{:?}", suite.suite()))
                .unwrap_or_default(),
            certificate_not_after: not_after.map(|seconds| {
                let at = if seconds >= 0 {
                    UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
                } else {
                    UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
                };
                humantime::format_rfc3339_seconds(at).to_string()
            }),
            certificate_expires_in_days: not_after
                .map(|seconds| ((seconds as f64 - now) / 864.0).round() / 100.0),
            certificate_not_after_unix: not_after,
        }
    }
}

/// A refused certificate, in words that say what to do; `None` for an
/// error that is not about certificates.
pub(crate) fn certificate_failure(error: &io::Error) -> Option<Failure> {
    let error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let message = match error {
        rustls::Error::InvalidCertificate(why) => match why {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                let when = match why {
                    CertificateError::ExpiredContext { not_after, .. } => {
                        format!(" on {}", rfc3339(*not_after))
                    }
                    _ => String::new(),
                };
                format!("the server's certificate expired{when}; the server needs a new one")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (is this machine's clock right?)"
                    .to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let detail = match why {
                    CertificateError::NotValidForNameContext {
                        expected,
                        presented,
                    } => format!(
                        " `{}`; it is for {}",
                        expected.to_str(),
                        if presented.is_empty() {
                            "no name".to_string()
                        } else {
                            presented
                                .iter()
                                .map(|name| plain_name(name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                    _ => " expected".to_string(),
                };
                format!(
                    "the server's certificate is not for the name{detail}; connect by a name it \
                     is for, or give the name with --server-name"
                )
            }
            CertificateError::UnknownIssuer => "the server's certificate is not signed by a CA \
                this client trusts; give the CA's certificate with --ca FILE"
                .to_string(),
            CertificateError::Other(other)
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) =>
            {
                "the server's certificate is a CA certificate (basicConstraints CA:TRUE, as \
                 `openssl req -x509` makes by default): the server needs one issued by a CA, \
                 or made with `-addext basicConstraints=critical,CA:FALSE`"
                    .to_string()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the server requires a client certificate; give one with --cert FILE --key FILE"
                    .to_string()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => format!(
                "the server refused the client certificate ({alert:?}); does the server trust \
                 its CA, and is it still valid?"
            ),
            AlertDescription::HandshakeFailure => "the server ended the TLS handshake \
                (HandshakeFailure): it may require a client certificate (--cert, --key), or \
                share no protocol version or cipher suite with this client"
                .to_string(),
            _ => return None,
        },
        _ => return None,
    };
    Some(Failure {
        verdict: Verdict::Certificate,
        closed: false,
        message,
    })
}

/// Whether the "server" sent back the client's own ClientHello: the port is
/// a plain echo, and `--tls` is the mistake, not the network.
pub(crate) fn echoed_hello(error: &io::Error) -> Option<Failure> {
    let error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    matches!(
        error,
        rustls::Error::InappropriateHandshakeMessage {
            got_type: rustls::HandshakeType::ClientHello,
            ..
        }
    )
    .then(|| {
        Failure::unreachable(
            "the server sent back the TLS ClientHello: it echoes plain TCP there, not TLS; \
             drop --tls, or connect to the server's TLS port",
        )
    })
}

/// A name as rustls presents it, `DnsName("a.example")` or
/// `IpAddress(192.0.2.1)`, as the operator would write it.
fn plain_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, inner)| inner.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

fn rfc3339(time: UnixTime) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(time.as_secs())).to_string()
}

/// `--insecure`: any certificate passes, but the handshake's signatures are
/// still checked, so the session is at least with whoever holds the key of
/// the certificate shown.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}
