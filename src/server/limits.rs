//! The settings a SIGHUP can change while connections are open, the count
//! of open connections that `max_connections` is checked against, and the
//! count of connections refused for a missing or broken PROXY protocol
//! header: the daemon-wide total that each warning in the log carries, with
//! the throttle of that warning (the daemon's, not each worker's). The
//! metrics count the same closes per worker, as
//! `tcp_connections_closed{reason="proxy_header"}`, where no worker has to
//! read another's counts.
//!
//! They are plain atomics, read on every accept and every idle sweep, so a
//! reload reaches connections that are already open without any locking on
//! the echo path. A reload also makes every TCP worker sweep at once, so a
//! changed idle timeout applies to open connections at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::server::config::ServerConfig;
use crate::server::throttle::{Failures, WARNING_INTERVAL};

#[derive(Debug)]
pub(crate) struct Limits {
    max_connections: AtomicUsize,
    /// Nanoseconds; 0 means never.
    idle_timeout_ns: AtomicU64,
    udp_rate_limit: AtomicU32,
    /// Nanoseconds; never 0 (the configuration refuses it).
    proxy_protocol_timeout_ns: AtomicU64,
    /// Nanoseconds; never 0 (the configuration refuses it).
    tls_handshake_timeout_ns: AtomicU64,
    open_connections: AtomicUsize,
    /// Connections closed without a valid PROXY protocol header in time,
    /// by all workers since the start, and the throttle of their warning.
    proxy_header_failures: Failures,
    reloaded: watch::Sender<()>,
}

impl Limits {
    pub(crate) fn new(config: &ServerConfig) -> Arc<Limits> {
        let limits = Limits {
            max_connections: AtomicUsize::new(0),
            idle_timeout_ns: AtomicU64::new(0),
            udp_rate_limit: AtomicU32::new(0),
            proxy_protocol_timeout_ns: AtomicU64::new(0),
            tls_handshake_timeout_ns: AtomicU64::new(0),
            open_connections: AtomicUsize::new(0),
            proxy_header_failures: Failures::new(WARNING_INTERVAL),
            reloaded: watch::Sender::new(()),
        };
        limits.update(config);
        Arc::new(limits)
    }

    /// Applies a reloaded configuration.
    pub(crate) fn update(&self, config: &ServerConfig) {
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idle_ns = nanos(config.idle_timeout.0);
        self.proxy_protocol_timeout_ns
            .store(nanos(config.proxy_protocol_timeout.0), Ordering::Relaxed);
        self.tls_handshake_timeout_ns
            .store(nanos(config.tls_handshake_timeout.0), Ordering::Relaxed);
        self.max_connections
            .store(config.max_connections, Ordering::Relaxed);
        self.idle_timeout_ns.store(idle_ns, Ordering::Relaxed);
        self.udp_rate_limit
            .store(config.udp_rate_limit, Ordering::Relaxed);
        self.reloaded.send_replace(());
    }

    /// Changes whenever the limits are updated.
    pub(crate) fn watch_reloads(&self) -> watch::Receiver<()> {
        self.reloaded.subscribe()
    }

    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// `None` when idle connections are never closed.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// How long a connection to a `proxy_protocol` listener may take to
    /// send its header.
    pub(crate) fn proxy_protocol_timeout(&self) -> Duration {
        Duration::from_nanos(self.proxy_protocol_timeout_ns.load(Ordering::Relaxed))
    }

    /// How long a connection to a TLS listener may take to complete its
    /// handshake.
    pub(crate) fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_nanos(self.tls_handshake_timeout_ns.load(Ordering::Relaxed))
    }

    /// Counts a connection closed for its PROXY protocol header. Returns
    /// how many there have been, and, when this one is to be logged, how
    /// many went unlogged since the last line.
    pub(crate) fn count_proxy_header_failure(&self) -> (u64, Option<u64>) {
        self.proxy_header_failures.count()
    }

    /// Datagrams per second per source address; 0 means unlimited.
    pub(crate) fn udp_rate_limit(&self) -> u32 {
        self.udp_rate_limit.load(Ordering::Relaxed)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Counts a new connection in, unless `max_connections` are already open.
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let max = self.max_connections();
        self.open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| ConnectionPermit {
                limits: Arc::clone(self),
            })
    }
}

/// One open connection; counted out again when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limits: Arc<Limits>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.open_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config::Config;

    #[test]
    fn admits_up_to_the_limit_and_again_after_a_close() {
        let mut config = Config::default().server;
        config.max_connections = 2;
        let limits = Limits::new(&config);
        let first = limits.try_admit().unwrap();
        let _second = limits.try_admit().unwrap();
        assert!(limits.try_admit().is_none());
        drop(first);
        assert!(limits.try_admit().is_some());
    }

    #[test]
    fn a_reload_lowers_the_limit_without_touching_open_connections() {
        let limits = Limits::new(&Config::default().server);
        let _open: Vec<_> = (0..3).map(|_| limits.try_admit().unwrap()).collect();
        let mut config = Config::default().server;
        config.max_connections = 1;
        limits.update(&config);
        assert_eq!(limits.open_connections(), 3);
        assert!(limits.try_admit().is_none());
    }
}
