//! The UDP echo (RFC 862): every datagram is answered with the same bytes.
//!
//! Why on the workers' event loops: cost. Served by a tokio task of its own,
//! UDP went through the runtime's wake-ups and two system calls per datagram,
//! and measured at 0.59 of a plain C `recvfrom`/`sendto` loop's echoes per
//! second. Here each UDP socket is one more source of readiness in one
//! worker's loop (`event_loop`), beside that worker's TCP connections, and is
//! read and answered in batches (`batch`): one `recvmmsg` and one `sendmmsg`
//! for every datagram waiting. Each socket belongs to one worker, so its
//! rate limiter and counters have a single owner and need no lock; more UDP
//! sockets spread over the workers.
//!
//! The guarantees are those of any UDP echo worth running on the internet
//! (`guard`): no answer to the ports of answering services, a rate limit per
//! source with bounded memory, and never more bytes back than came in (a
//! reply is the received datagram itself, up to the protocol's maximum).
//! Fairness: a socket gets a few batches per turn, like a connection's few
//! reads, and the rate limit keeps one source from taking a batch's worth
//! of every turn. A reply the kernel will not take yet is kept, with the
//! rest of its batch, and nothing more is read until it is sent: the same
//! back-pressure as TCP's, and at most one batch held. Only then does the
//! socket ask to hear of room to write: a UDP socket reports it after every
//! datagram it sends (whenever a send's buffer is freed), which would wake
//! the loop once more for every reply.

mod batch;
pub(crate) mod guard;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::{Interest, Registry, Token};
use tracing::{debug, warn};

use crate::server::limits::Limits;
use crate::server::metrics::counters::{UdpCounters, UdpDrop};
use crate::server::throttle::{Throttle, WARNING_INTERVAL};
use crate::shared::readiness::{Readiness, SHORT_READ_DRAINS};

use batch::Batch;
use guard::{REFLECTING_PORTS, SourceRateLimiter};

/// Batches one socket may read before the rest of the loop gets its turn.
const BATCHES_PER_TURN: usize = 4;

/// A bound UDP socket and its counters, on the way to the worker that will
/// serve it.
pub(crate) struct UdpEndpoint {
    pub(crate) socket: std::net::UdpSocket,
    pub(crate) counters: Arc<UdpCounters>,
}

/// One UDP socket as a worker serves it.
pub(crate) struct UdpService {
    socket: mio::net::UdpSocket,
    token: Token,
    /// Registered for writability too, while replies wait for room.
    awaiting_room: bool,
    local: Option<SocketAddr>,
    batch: Batch,
    /// Readiness reported and not yet used up.
    readable: bool,
    rate_limiter: SourceRateLimiter,
    counters: Arc<UdpCounters>,
    guarded_drops: Throttle,
    rate_drops: Throttle,
    errors: Throttle,
}

impl UdpService {
    /// Serves `endpoint` in the loop whose registry this is, under `token`.
    pub(crate) fn register(
        endpoint: UdpEndpoint,
        registry: &Registry,
        token: Token,
    ) -> io::Result<UdpService> {
        endpoint.socket.set_nonblocking(true)?;
        let local = endpoint.socket.local_addr().ok();
        let mut socket = mio::net::UdpSocket::from_std(endpoint.socket);
        registry.register(&mut socket, token, Interest::READABLE)?;
        Ok(UdpService {
            socket,
            token,
            awaiting_room: false,
            local,
            batch: Batch::new(),
            readable: false,
            rate_limiter: SourceRateLimiter::default(),
            counters: endpoint.counters,
            guarded_drops: Throttle::new(WARNING_INTERVAL),
            rate_drops: Throttle::new(WARNING_INTERVAL),
            errors: Throttle::new(WARNING_INTERVAL),
        })
    }

    /// Stops serving: the socket closes once no worker holds it.
    pub(crate) fn deregister(mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }

    /// One turn: sends the replies that wait, then reads and answers up to
    /// `BATCHES_PER_TURN` batches. True if the turn ended with more to read.
    pub(crate) fn serve(
        &mut self,
        ready: Readiness,
        limits: &Limits,
        registry: &Registry,
        now: Instant,
    ) -> bool {
        self.readable |= ready.readable || ready.closing;
        let more = self.take_turn(limits, now);
        let blocked = self.batch.has_pending();
        if blocked != self.awaiting_room {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match registry.reregister(&mut self.socket, self.token, interest) {
                Ok(()) => self.awaiting_room = blocked,
                Err(e) => {
                    if let Some(suppressed) = self.errors.event() {
                        warn!(listener = ?self.local, error = %e, suppressed, "cannot wait for room to send UDP replies");
                    }
                }
            }
        }
        more
    }

    /// Sends what waits, then reads and answers up to `BATCHES_PER_TURN`
    /// batches; true if there is more to read.
    fn take_turn(&mut self, limits: &Limits, now: Instant) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            if !self.send_replies() || !self.readable {
                // Blocked: room to write wakes it again.
                return false;
            }
            let received = match self.batch.receive(&self.socket) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Not one a UDP socket should see; the next datagram's
                    // arrival tries again, so this cannot spin.
                    self.readable = false;
                    if let Some(suppressed) = self.errors.event() {
                        warn!(listener = ?self.local, error = %e, suppressed, "UDP receive failed");
                    }
                    return false;
                }
            };
            // A batch that was not full found the socket empty.
            if received < self.batch.capacity() && SHORT_READ_DRAINS {
                self.readable = false;
            }
            self.answer(received, limits.udp_rate_limit(), now);
        }
        self.send_replies() && self.readable
    }

    /// Queues a reply to each datagram of the batch that passes the guard.
    fn answer(&mut self, received: usize, rate_limit: u32, now: Instant) {
        let mut bytes = 0;
        for slot in 0..received {
            bytes += self.batch.len(slot) as u64;
            let Some(peer) = self.batch.peer(slot) else {
                continue;
            };
            if REFLECTING_PORTS.contains(&peer.port()) {
                self.counters.dropped(UdpDrop::ReflectingPort).add(1);
                if let Some(suppressed) = self.guarded_drops.event() {
                    warn!(%peer, suppressed, "dropped a UDP datagram from the port of an answering service (possible reflection loop)");
                }
            } else if !self.rate_limiter.allow(peer.ip(), rate_limit, now) {
                self.counters.dropped(UdpDrop::RateLimit).add(1);
                if let Some(suppressed) = self.rate_drops.event() {
                    warn!(%peer, udp_rate_limit = rate_limit, suppressed, "UDP source over its rate limit; dropping");
                }
            } else {
                self.batch.queue_reply(slot);
            }
        }
        self.counters.bytes_received.add(bytes);
    }

    /// Sends the waiting replies; false while the kernel takes no more.
    fn send_replies(&mut self) -> bool {
        while self.batch.has_pending() {
            match self.batch.send_pending(&self.socket) {
                Ok(delivered) => {
                    self.counters.answered.add(delivered.datagrams);
                    self.counters.bytes_sent.add(delivered.bytes);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // This reply cannot go (no route, a firewall): the
                    // sender counts it lost, as it would on the wire.
                    let peer = self.batch.drop_first_pending();
                    self.counters.dropped(UdpDrop::SendFailed).add(1);
                    debug!(?peer, error = %e, "UDP reply failed");
                }
            }
        }
        true
    }
}
