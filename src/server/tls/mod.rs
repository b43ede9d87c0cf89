//! TLS on the echo port: the certificate the TLS listeners present, kept
//! current across reloads, and the count of failed handshakes.
//!
//! Why rustls with the ring provider: rustls keeps the daemon in Rust, with
//! no OpenSSL to install or patch on the hosts; ring is pure Rust and
//! assembly built with `cc`, so the same dependency cross-builds to the
//! Windows client with mingw, where aws-lc-rs would need cmake and Go.
//! Only TLS 1.3 and 1.2 are offered.
//!
//! Why a lock around the configuration: a reload swaps in a new
//! certificate while the workers accept. The lock is taken once per
//! accepted TLS connection, to clone an `Arc`, never on the echo path; a
//! connection keeps the configuration it started with, so open connections
//! go on untouched by a new certificate. The connection's state machine is
//! `session`'s; the event loops hold it beside their connections, as they
//! hold a PROXY protocol header that came in pieces.

mod certificates;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use tracing::warn;

use crate::server::config::TlsConfig;
use crate::server::throttle::{Failures, WARNING_INTERVAL};
pub(crate) use certificates::TlsError;
pub(crate) use session::{Failure, Session};

/// The TLS listeners' side of the daemon, shared by every worker.
#[derive(Debug)]
pub(crate) struct Tls {
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// Handshakes that failed, by all workers since the start, and the
    /// throttle of their warning.
    handshake_failures: Failures,
}

impl Tls {
    /// Reads the certificate, key and client CAs that `config` names.
    pub(crate) fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
        Ok(Tls {
            current: RwLock::new(certificates::server_config(config)?),
            handshake_failures: Failures::new(WARNING_INTERVAL),
        })
    }

    /// Reads them again, for new handshakes. If they do not load, the ones
    /// in use stay, and the error says why.
    pub(crate) fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let new = certificates::server_config(config)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    /// A session for a connection just accepted, with the certificate in
    /// use now.
    pub(crate) fn accept(&self) -> Result<Session, rustls::Error> {
        let config = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        Session::new(config)
    }

    /// Counts a failed handshake and says so without flooding the log.
    pub(crate) fn handshake_failed(&self, peer: SocketAddr, failure: &Failure) {
        let (total, logged) = self.handshake_failures.count();
        if let Some(suppressed) = logged {
            warn!(%peer, reason = %failure, suppressed, total,
                "TLS handshake failed (a client that does not trust the certificate, offers no common protocol version, cipher or ALPN protocol, or lacks a client certificate [tls] client_ca asks for)");
        }
    }
}
