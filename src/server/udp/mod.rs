//! The UDP echo (RFC 862): every datagram is answered with the same bytes.
//!
//! Why a thread per socket: cost. Served by a tokio task of its own, UDP
//! went through the runtime's wake-ups and two system calls per datagram,
//! and measured at 0.59 of a plain C `recvfrom`/`sendto` loop's echoes per
//! second. Served next on the TCP workers' event loops, in batches, it paid
//! an `epoll_wait` before nearly every batch: the echo is the faster side of
//! a ping-pong, so each batch empties the socket and the loop goes back to
//! wait. Here a thread of its own sleeps in a blocking `recvmmsg` that waits
//! for the first datagram only and takes every other one waiting, and
//! answers them all with one `sendmmsg` (`batch`): two system calls per
//! batch, the C batch loop of `scripts/bench.sh`. Side by side with the
//! event loops' UDP that was 2 to 12% less CPU per datagram in every cell of
//! `bench.sh udp` (docs/PERFORMANCE.md). Each socket has one thread, so its
//! rate limiter and counters have a single owner and need no lock; more UDP
//! sockets are more threads, which the kernel spreads over the cores.
//!
//! Why a stop interrupts the thread (`wake`): a receive or a send waits as
//! long as it takes, with no timer armed for every wait, and a stop sends
//! the thread a signal that makes its blocked call return, so that it looks
//! at its stop flag.
//!
//! The guarantees are those of any UDP echo worth running on the internet
//! (`guard`): no answer to the ports of answering services, a rate limit per
//! source with bounded memory (read from `Limits` for every batch, so a
//! reload applies at once), and never more bytes back than came in (a reply
//! is the received datagram itself, up to the protocol's maximum). A reply
//! the kernel will not take yet is waited for, with the rest of its batch,
//! and nothing more is read until it is sent: the same back-pressure as
//! TCP's, and at most one batch held. Fairness: between UDP and TCP, the
//! kernel's scheduler shares the cores among the threads; between sources,
//! the rate limit keeps one from taking every batch.

mod batch;
pub(crate) mod guard;
mod wake;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::server::limits::Limits;
use crate::server::metrics::counters::{UdpCounters, UdpDrop};
use crate::server::throttle::{Throttle, WARNING_INTERVAL};

use batch::Batch;
use guard::{REFLECTING_PORTS, SourceRateLimiter};

/// How long to wait after a receive error that is not one a UDP socket
/// should see, so that one that persists cannot spin the thread.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A bound UDP socket and its counters, on the way to the thread that will
/// serve it.
pub(crate) struct UdpEndpoint {
    pub(crate) socket: std::net::UdpSocket,
    pub(crate) counters: Arc<UdpCounters>,
}

/// The thread serving one UDP socket, as the control side holds it.
pub(crate) struct UdpThread {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    /// Alive while the thread is.
    running: Weak<()>,
}

/// Whether a UDP thread still runs, for the watchdog: one that ended by a
/// panic (a bug) would leave the daemon up without its UDP echo.
#[derive(Clone)]
pub(crate) struct UdpWatch(Weak<()>);

impl UdpWatch {
    pub(crate) fn is_running(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl UdpThread {
    /// Serves `service` on a thread of its own, named `name`.
    pub(crate) fn start(service: UdpService, name: String) -> io::Result<UdpThread> {
        let stop = Arc::clone(&service.stop);
        let alive = Arc::new(());
        let running = Arc::downgrade(&alive);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // Dropped when the thread ends, whether it returns or unwinds.
            let _alive = alive;
            service.run();
        })?;
        Ok(UdpThread {
            stop,
            thread,
            running,
        })
    }

    /// Asks the thread to stop, which it does as soon as its receive or
    /// send returns.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        wake::interrupt(&self.thread);
    }

    pub(crate) fn watch(&self) -> UdpWatch {
        UdpWatch(Weak::clone(&self.running))
    }

    /// Waits for the thread to end, which closes its socket; after `stop`.
    pub(crate) fn join(self) {
        // The interrupt of `stop` is lost if it came just before the
        // thread blocked.
        while !self.thread.is_finished() {
            wake::interrupt(&self.thread);
            std::thread::sleep(wake::INTERRUPT_AGAIN);
        }
        let _ = self.thread.join();
    }
}

/// One UDP socket as its thread will serve it.
pub(crate) struct UdpService {
    socket: std::net::UdpSocket,
    local: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    limits: Arc<Limits>,
    batch: Batch,
    rate_limiter: SourceRateLimiter,
    counters: Arc<UdpCounters>,
    guarded_drops: Throttle,
    rate_drops: Throttle,
    errors: Throttle,
}

impl UdpService {
    /// Makes `endpoint`'s socket ready for its thread: everything about a
    /// UDP socket that can fail, done before any thread starts, so that a
    /// daemon that cannot serve all its sockets serves none.
    pub(crate) fn new(endpoint: UdpEndpoint, limits: Arc<Limits>) -> io::Result<UdpService> {
        let socket = endpoint.socket;
        // A socket passed by the service manager may come non-blocking.
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(wake::WAIT_BOUND)?;
        socket.set_write_timeout(wake::WAIT_BOUND)?;
        wake::prepare()?;
        Ok(UdpService {
            local: socket.local_addr().ok(),
            socket,
            stop: Arc::new(AtomicBool::new(false)),
            limits,
            batch: Batch::new(),
            rate_limiter: SourceRateLimiter::default(),
            counters: endpoint.counters,
            guarded_drops: Throttle::new(WARNING_INTERVAL),
            rate_drops: Throttle::new(WARNING_INTERVAL),
            errors: Throttle::new(WARNING_INTERVAL),
        })
    }

    /// Reads and answers batches until told to stop.
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.batch.receive(&self.socket) {
                Ok(received) => {
                    // Read live, so that a reload applies from the next batch.
                    let rate_limit = self.limits.udp_rate_limit();
                    self.answer(received, rate_limit, Instant::now());
                    self.send_replies();
                }
                // A stop (or another signal) interrupted the wait, or
                // nothing came within the wait's bound.
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                // Windows reports an earlier reply's ICMP "port
                // unreachable" on the next receive: that reply is lost,
                // the socket is fine.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => {
                    if let Some(suppressed) = self.errors.event() {
                        warn!(listener = ?self.local, error = %e, suppressed, "UDP receive failed");
                    }
                    std::thread::sleep(ERROR_PAUSE);
                }
            }
        }
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

    /// Sends the batch's replies, waiting for room as long as the kernel
    /// takes no more: nothing more is read meanwhile (back-pressure). On the
    /// stop signal the replies still waiting are given up.
    fn send_replies(&mut self) {
        while self.batch.has_pending() {
            match self.batch.send_pending(&self.socket) {
                Ok(delivered) => {
                    self.counters.answered.add(delivered.datagrams);
                    self.counters.bytes_sent.add(delivered.bytes);
                }
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Err(e) => {
                    // This reply cannot go (no route, a firewall): the
                    // sender counts it lost, as it would on the wire.
                    let peer = self.batch.drop_first_pending();
                    self.counters.dropped(UdpDrop::SendFailed).add(1);
                    debug!(?peer, error = %e, "UDP reply failed");
                }
            }
        }
    }
}

/// Whether `e` says a socket timeout ran out, where the socket has one
/// (`wake::WAIT_BOUND`: on Windows, which says TimedOut or WouldBlock).
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
