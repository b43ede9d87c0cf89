//! What keeps a UDP echo from being a traffic reflector (CERT CA-1996-01):
//! a spoofed source address makes an echo send to a victim, or to another
//! echo/chargen service, which answers back forever. So datagrams from the
//! ports of the answering services are never answered, and each source
//! address gets a token bucket of `udp_rate_limit` datagrams per second.
//!
//! Why its memory is bounded: a flood of spoofed sources would otherwise
//! grow the table of buckets without end. It tracks at most
//! `MAX_TRACKED_SOURCES` sources; a source whose bucket has refilled is
//! forgotten (it behaves exactly like one never seen), and past the bound
//! new sources are dropped until the table sweeps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Source ports of services that answer whatever they receive (tcpmux/0,
/// echo/7, daytime/13, qotd/17, chargen/19, time/37): answering them could
/// start an endless ping-pong between two servers.
pub(crate) const REFLECTING_PORTS: [u16; 6] = [0, 7, 13, 17, 19, 37];

/// How many source addresses the rate limiter tracks at once. Beyond it, new
/// sources are dropped: that only happens under a flood of spoofed sources.
pub(crate) const MAX_TRACKED_SOURCES: usize = 65_536;

/// A token bucket per source address, holding at most one second's worth.
#[derive(Debug, Default)]
pub(crate) struct SourceRateLimiter {
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl SourceRateLimiter {
    pub(crate) fn allow(&mut self, source: IpAddr, per_second: u32, now: Instant) -> bool {
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
        // After a flood, give back what the table grew to (at most once a
        // second, and only when most of it stands empty).
        if self.buckets.capacity() > 4 * self.buckets.len().max(64) {
            self.buckets.shrink_to(2 * self.buckets.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// The most the table of buckets may take at `MAX_TRACKED_SOURCES`, the
    /// hash table's own overhead included: the bound the README states.
    const MAX_TRACKER_BYTES: usize = 7 << 20;

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
    fn a_flood_of_spoofed_sources_stays_within_the_bound() {
        let mut limiter = SourceRateLimiter::default();
        let now = Instant::now();
        let flood = u32::try_from(MAX_TRACKED_SOURCES).unwrap() + 10_000;
        // Every source a new one, as a spoofing flood makes them.
        for n in 0..flood {
            limiter.allow(IpAddr::from(Ipv4Addr::from(0xC612_0000 + n)), 10, now);
        }
        assert_eq!(limiter.buckets.len(), MAX_TRACKED_SOURCES);
        assert!(
            !limiter.allow("192.0.2.1".parse().unwrap(), 10, now),
            "past the bound a new source is dropped"
        );
        let bytes = limiter.buckets.capacity() * (std::mem::size_of::<(IpAddr, Bucket)>() + 1);
        assert!(bytes <= MAX_TRACKER_BYTES, "{bytes} bytes");
        // A second later every bucket has refilled: the table empties.
        assert!(limiter.allow(
            "192.0.2.1".parse().unwrap(),
            10,
            now + Duration::from_secs(2)
        ));
        assert_eq!(limiter.buckets.len(), 1);
        assert!(limiter.buckets.capacity() < 1024, "the table shrinks");
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
