//! The UDP echo (RFC 862): every datagram is answered with the same bytes.
//!
//! A UDP echo is a classic traffic reflector (CERT CA-1996-01): a spoofed
//! source address makes it send to a victim, or to another echo/chargen
//! service, which answers back forever. So UDP is off unless configured,
//! datagrams from the ports of the answering services are never answered, and
//! each source address gets a token bucket of `udp_rate_limit` datagrams per
//! second.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::server::limits::Limits;
use crate::server::metrics::counters::{UdpCounters, UdpDrop};
use crate::server::shutdown::{Shutdown, TaskGuard};
use crate::server::throttle::Throttle;
use crate::shared::protocol::MAX_DATAGRAM;

/// Source ports of services that answer whatever they receive (tcpmux/0,
/// echo/7, daytime/13, qotd/17, chargen/19, time/37): answering them could
/// start an endless ping-pong between two servers.
pub(crate) const REFLECTING_PORTS: [u16; 6] = [0, 7, 13, 17, 19, 37];

/// How many source addresses the rate limiter tracks at once. Beyond it, new
/// sources are dropped: that only happens under a flood of spoofed sources.
const MAX_TRACKED_SOURCES: usize = 65_536;

const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Answers datagrams on one socket until shutdown.
pub(crate) async fn serve(
    socket: UdpSocket,
    limits: Arc<Limits>,
    counters: Arc<UdpCounters>,
    mut shutdown: Shutdown,
    _guard: TaskGuard,
) {
    let local = socket.local_addr().ok();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut rate_limiter = SourceRateLimiter::default();
    let mut guarded_drops = Throttle::new(WARNING_INTERVAL);
    let mut rate_drops = Throttle::new(WARNING_INTERVAL);
    let mut errors = Throttle::new(WARNING_INTERVAL);
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = shutdown.recv() => return,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(e) => {
                if let Some(suppressed) = errors.event() {
                    warn!(listener = ?local, error = %e, suppressed, "UDP receive failed");
                }
                // Whatever it was, do not spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.bytes_received.add(len as u64);
        if REFLECTING_PORTS.contains(&peer.port()) {
            counters.dropped(UdpDrop::ReflectingPort).add(1);
            if let Some(suppressed) = guarded_drops.event() {
                warn!(%peer, suppressed, "dropped a UDP datagram from the port of an answering service (possible reflection loop)");
            }
            continue;
        }
        if !rate_limiter.allow(peer.ip(), limits.udp_rate_limit(), Instant::now()) {
            counters.dropped(UdpDrop::RateLimit).add(1);
            if let Some(suppressed) = rate_drops.event() {
                warn!(%peer, udp_rate_limit = limits.udp_rate_limit(), suppressed, "UDP source over its rate limit; dropping");
            }
            continue;
        }
        match send(&socket, &buf[..len], peer).await {
            Ok(()) => {
                counters.answered.add(1);
                counters.bytes_sent.add(len as u64);
            }
            Err(e) => {
                counters.dropped(UdpDrop::SendFailed).add(1);
                debug!(%peer, error = %e, "UDP reply failed");
            }
        }
    }
}

async fn send(socket: &UdpSocket, datagram: &[u8], peer: std::net::SocketAddr) -> io::Result<()> {
    let sent = socket.send_to(datagram, peer).await?;
    if sent != datagram.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            datagram.len()
        )));
    }
    Ok(())
}

/// A token bucket per source address, holding at most one second's worth.
#[derive(Debug, Default)]
struct SourceRateLimiter {
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl SourceRateLimiter {
    fn allow(&mut self, source: IpAddr, per_second: u32, now: Instant) -> bool {
        if per_second == 0 {
            return true;
        }
        let capacity = f64::from(per_second);
        self.sweep(capacity, now);
        if self.buckets.len() >= MAX_TRACKED_SOURCES && !self.buckets.contains_key(&source) {
            return false;
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * capacity).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Once a second, forgets sources whose bucket has refilled: a full
    /// bucket behaves exactly like a source never seen.
    fn sweep(&mut self, capacity: f64, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets.retain(|_, bucket| {
            bucket.tokens + now.saturating_duration_since(bucket.updated).as_secs_f64() * capacity
                < capacity
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_of_one_second_then_the_rate() {
        let mut limiter = SourceRateLimiter::default();
        let source: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        let allowed = (0..20).filter(|_| limiter.allow(source, 10, start)).count();
        assert_eq!(allowed, 10);
        assert!(
            limiter.allow(other, 10, start),
            "sources are limited separately"
        );
        assert!(!limiter.allow(source, 10, start + Duration::from_millis(50)));
        assert!(limiter.allow(source, 10, start + Duration::from_millis(150)));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut limiter = SourceRateLimiter::default();
        let source: IpAddr = "::1".parse().unwrap();
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.allow(source, 0, now)));
    }

    #[test]
    fn refilled_sources_are_forgotten() {
        let mut limiter = SourceRateLimiter::default();
        let start = Instant::now();
        limiter.allow("192.0.2.1".parse().unwrap(), 10, start);
        assert_eq!(limiter.buckets.len(), 1);
        limiter.allow(
            "192.0.2.2".parse().unwrap(),
            10,
            start + Duration::from_secs(5),
        );
        assert_eq!(limiter.buckets.len(), 1);
    }
}
