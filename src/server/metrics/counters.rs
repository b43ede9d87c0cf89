//! The counts behind the metrics, kept where the work happens.
//!
//! Why this shape: the echo path must not pay for being watched. Each TCP
//! worker and each UDP socket owns its counters, written by that one thread
//! only, with a plain load and store (no locked read-modify-write), in a
//! block aligned to 128 bytes so that no two threads' counters share a cache
//! line (nor the line the CPU prefetches beside it). The scraper only reads
//! them, at scrape time; a relaxed read of a value another thread stores is
//! never torn, at worst one event old.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A count written by one thread only (its owner) and read by any.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Adds `n`. Only the owning thread may call it: two writers would lose
    /// counts, which is the price of not locking the bus.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value, for a gauge (only the owning thread, as for `add`).
    #[inline]
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a TCP connection was closed by the server or its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed (or half-closed) and got everything back.
    Peer,
    /// Nothing moved for `idle_timeout`.
    IdleTimeout,
    /// No valid PROXY protocol header came in time.
    ProxyHeader,
    /// The socket failed (reset by the peer, for instance).
    Error,
    /// Still open when the daemon stopped, after `shutdown_grace`.
    Shutdown,
    /// The TLS handshake failed, or the peer closed in the middle of it.
    TlsHandshake,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 6] = [
        CloseReason::Peer,
        CloseReason::IdleTimeout,
        CloseReason::ProxyHeader,
        CloseReason::Error,
        CloseReason::Shutdown,
        CloseReason::TlsHandshake,
    ];

    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ProxyHeader => "proxy_header",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TlsHandshake => "tls_handshake",
        }
    }
}

/// Why `accept` failed, as far as an operator can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The peer went away before it was accepted (ECONNABORTED, ECONNRESET).
    PeerGone,
    /// The process is out of descriptors: `LimitNOFILE` against `max_connections`.
    Emfile,
    /// The system is out of descriptors.
    Enfile,
    /// The kernel is out of socket buffers.
    Enobufs,
    /// The kernel is out of memory.
    Enomem,
    Other,
}

impl AcceptError {
    pub(crate) const ALL: [AcceptError; 6] = [
        AcceptError::PeerGone,
        AcceptError::Emfile,
        AcceptError::Enfile,
        AcceptError::Enobufs,
        AcceptError::Enomem,
        AcceptError::Other,
    ];

    /// The `kind` label: the errno's name where there is one.
    pub(crate) fn label(self) -> &'static str {
        match self {
            AcceptError::PeerGone => "ECONNABORTED",
            AcceptError::Emfile => "EMFILE",
            AcceptError::Enfile => "ENFILE",
            AcceptError::Enobufs => "ENOBUFS",
            AcceptError::Enomem => "ENOMEM",
            AcceptError::Other => "other",
        }
    }

    pub(crate) fn of(error: &std::io::Error) -> AcceptError {
        use std::io::ErrorKind;
        if matches!(
            error.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
        ) {
            return AcceptError::PeerGone;
        }
        #[cfg(unix)]
        {
            use nix::errno::Errno;
            match error.raw_os_error().map(Errno::from_raw) {
                Some(Errno::EMFILE) => return AcceptError::Emfile,
                Some(Errno::ENFILE) => return AcceptError::Enfile,
                Some(Errno::ENOBUFS) => return AcceptError::Enobufs,
                Some(Errno::ENOMEM) => return AcceptError::Enomem,
                _ => {}
            }
        }
        AcceptError::Other
    }
}

/// One TCP worker's counters, on cache lines no other thread writes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    /// Connections accepted and admitted.
    pub(crate) accepted: Count,
    /// Connections accepted and closed at once: `max_connections` were open.
    pub(crate) refused: Count,
    /// Connections this worker holds now (a gauge).
    pub(crate) open: Count,
    pub(crate) bytes_received: Count,
    pub(crate) bytes_sent: Count,
    closed: [Count; CloseReason::ALL.len()],
    accept_errors: [Count; AcceptError::ALL.len()],
}

impl WorkerCounters {
    pub(crate) fn closed(&self, reason: CloseReason) -> &Count {
        &self.closed[reason as usize]
    }

    pub(crate) fn accept_error(&self, kind: AcceptError) -> &Count {
        &self.accept_errors[kind as usize]
    }
}

/// Why a UDP datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpDrop {
    /// It came from the port of an answering service (`udp::REFLECTING_PORTS`).
    ReflectingPort,
    /// Its source was over `udp_rate_limit`.
    RateLimit,
    /// The answer could not be sent (ENOBUFS, an unreachable source, ...).
    SendFailed,
}

impl UdpDrop {
    pub(crate) const ALL: [UdpDrop; 3] = [
        UdpDrop::ReflectingPort,
        UdpDrop::RateLimit,
        UdpDrop::SendFailed,
    ];

    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            UdpDrop::ReflectingPort => "reflecting_port",
            UdpDrop::RateLimit => "rate_limit",
            UdpDrop::SendFailed => "send_failed",
        }
    }
}

/// One UDP socket's counters, written by the task that serves it.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct UdpCounters {
    pub(crate) answered: Count,
    pub(crate) bytes_received: Count,
    pub(crate) bytes_sent: Count,
    dropped: [Count; UdpDrop::ALL.len()],
}

impl UdpCounters {
    pub(crate) fn dropped(&self, reason: UdpDrop) -> &Count {
        &self.dropped[reason as usize]
    }
}

/// The outcome of SIGHUPs, written by the control thread.
#[derive(Debug)]
pub(crate) struct Reloads {
    pub(crate) succeeded: Count,
    pub(crate) failed: Count,
    last_successful: AtomicBool,
    /// Seconds since the epoch of the last successful load: the start, until
    /// a reload succeeds (as Prometheus's own metric has it).
    last_success_at: AtomicU64,
}

impl Reloads {
    pub(crate) fn new() -> Reloads {
        Reloads {
            succeeded: Count::default(),
            failed: Count::default(),
            last_successful: AtomicBool::new(true),
            last_success_at: AtomicU64::new(unix_seconds(SystemTime::now())),
        }
    }

    pub(crate) fn record(&self, success: bool) {
        if success {
            self.succeeded.add(1);
            self.last_success_at
                .store(unix_seconds(SystemTime::now()), Ordering::Relaxed);
        } else {
            self.failed.add(1);
        }
        self.last_successful.store(success, Ordering::Relaxed);
    }

    pub(crate) fn last_successful(&self) -> bool {
        self.last_successful.load(Ordering::Relaxed)
    }

    pub(crate) fn last_success_at(&self) -> u64 {
        self.last_success_at.load(Ordering::Relaxed)
    }
}

pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_different_threads_share_no_cache_line() {
        assert_eq!(std::mem::align_of::<WorkerCounters>(), 128);
        assert_eq!(std::mem::size_of::<WorkerCounters>() % 128, 0);
        assert_eq!(std::mem::align_of::<UdpCounters>(), 128);
    }

    #[cfg(unix)]
    #[test]
    fn accept_errors_are_told_apart_by_errno() {
        use nix::errno::Errno;
        let error = |errno: Errno| std::io::Error::from_raw_os_error(errno as i32);
        assert_eq!(AcceptError::of(&error(Errno::EMFILE)), AcceptError::Emfile);
        assert_eq!(AcceptError::of(&error(Errno::ENFILE)), AcceptError::Enfile);
        assert_eq!(
            AcceptError::of(&error(Errno::ECONNABORTED)),
            AcceptError::PeerGone
        );
        assert_eq!(AcceptError::of(&error(Errno::EINVAL)), AcceptError::Other);
    }
}
