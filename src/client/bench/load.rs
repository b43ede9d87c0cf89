//! The load generator of `echo-client bench`: threads that each drive their
//! share of the connections from one event loop.
//!
//! Why an event loop of its own rather than a tokio task per connection:
//! a load generator must not be what limits the measurement, and at
//! hundreds of busy connections tokio's per-task work (waking, scheduling,
//! polling a future, re-checking readiness) made echo-client 12 to 18%
//! slower than a plain epoll loop in C on the same core. Here, as in that C
//! loop, a readiness event leads straight to the connection's state and its
//! read and write calls, and the clock is read once per wake-up rather than
//! per message. mio is the portable layer under tokio itself (epoll on
//! Linux, kqueue on the BSDs and macOS, IOCP on Windows), so the client
//! still builds and runs the same everywhere.
//!
//! Over TLS, each connection drives its own `rustls::ClientConnection` in
//! the same loop: records are read and written with the same readiness,
//! and at most one write window of plaintext is encrypted ahead of what the
//! socket takes, so memory stays bounded as over plain TCP.
//!
//! Timers stay out of the hot path too: a round trip's timeout is checked by
//! a sweep at the earliest moment one can expire, not by a timer armed per
//! batch, and only paced or paused connections wait in a queue.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use super::batch::{Answer, Batch, Outbox};
use crate::client::path::StreamAccount;
use crate::client::tls::TargetTls;
use crate::client::{Failure, MAX_UDP_PAYLOAD, Verdict, udp_local_for};
use crate::shared::protocol::MAX_DATAGRAM;
use crate::shared::readiness::{Readiness, SHORT_READ_DRAINS};
use crate::shared::socket_calls;

/// Pause before reconnecting after a failure, so a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// The most of an echo read at once.
const READ_WINDOW: usize = 64 * 1024;
/// The most of a batch written at once: a whole datagram at the least.
const WRITE_WINDOW: usize = 64 * 1024;
const _: () = assert!(WRITE_WINDOW >= MAX_UDP_PAYLOAD);
/// Readiness events taken from the kernel per wake-up.
const EVENTS_PER_POLL: usize = 1024;

/// What every load thread runs to.
pub(crate) struct Plan {
    pub(crate) addr: SocketAddr,
    pub(crate) udp: bool,
    /// Over TLS, with this configuration.
    pub(crate) tls: Option<TargetTls>,
    /// Every message's body (see `batch`).
    pub(crate) block: Arc<[u8]>,
    pub(crate) pipeline: usize,
    pub(crate) timeout: Duration,
    /// Time between one connection's batches under `--rate`.
    pub(crate) interval: Option<Duration>,
    /// Round trips that end before this are warm-up: they run, but are
    /// neither counted nor timed.
    pub(crate) measured_from: Instant,
    pub(crate) deadline: Instant,
}

/// Counts shared by all load threads, read by the progress bar and the report.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) io_errors: AtomicU64,
    /// Connections the server ended before their echo was whole.
    pub(crate) closed: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) mismatches: AtomicU64,
    /// UDP answers that came again, as the path copied them: not errors.
    pub(crate) duplicated: AtomicU64,
    /// UDP messages given up at their timeout (those answered late among
    /// them), as `check --udp` counts its lost probes.
    pub(crate) lost: AtomicU64,
    /// Each UDP socket's late and reordered answers and jitter, added as
    /// its load thread ends.
    pub(crate) streams: Mutex<Vec<StreamAccount>>,
}

impl Counters {
    fn count_failure(&self, failure: &Failure, connecting: bool) {
        let counter = match failure.verdict {
            Verdict::Mismatch => &self.mismatches,
            Verdict::TimedOut => &self.timeouts,
            _ if connecting => &self.connect_errors,
            _ if failure.closed => &self.closed,
            _ => &self.io_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the connections numbered `ids` on `poll` until the plan's deadline,
/// and returns the latencies of their round trips, in nanoseconds.
pub(crate) fn run(
    plan: &Plan,
    poll: Poll,
    ids: Vec<u64>,
    counters: &Counters,
) -> io::Result<Histogram<u64>> {
    let mut driver = Driver {
        poll,
        plan,
        counters,
        latencies: latency_histogram(),
        answered: 0,
        inbox: vec![0; READ_WINDOW.max(MAX_DATAGRAM) + 1].into_boxed_slice(),
        outbox: Outbox::new(&plan.block, WRITE_WINDOW),
        waiting: BinaryHeap::new(),
        next_sweep: None,
    };
    let now = Instant::now();
    let mut connections: Vec<Connection> = ids
        .into_iter()
        .map(|id| Connection::new(plan, id, now))
        .collect();
    for (index, connection) in connections.iter_mut().enumerate() {
        connection.open(Token(index), &mut driver, now);
    }
    driver.drive(&mut connections)?;
    if plan.udp {
        counters
            .streams
            .lock()
            .expect("not poisoned")
            .extend(connections.iter().map(|connection| connection.account));
    }
    Ok(driver.latencies)
}

/// Round-trip times in nanoseconds, from 1 ns to a minute; slower ones are
/// recorded as a minute.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// One load thread's event loop and what its connections share.
struct Driver<'a> {
    poll: Poll,
    plan: &'a Plan,
    counters: &'a Counters,
    latencies: Histogram<u64>,
    /// Round trips completed since the shared counter last heard of them.
    answered: u64,
    /// Where echoes are read to be checked, and where batches are written
    /// from: one of each for all connections, so that they stay in the
    /// CPU's cache.
    inbox: Box<[u8]>,
    outbox: Outbox,
    /// Connections paced by `--rate` or paused after a failure, by when
    /// they go on.
    waiting: BinaryHeap<Reverse<(Instant, usize)>>,
    /// When the oldest round trip in flight can time out, if one is in flight.
    next_sweep: Option<Instant>,
}

impl Driver<'_> {
    fn drive(&mut self, connections: &mut [Connection]) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            let now = Instant::now();
            if now >= self.plan.deadline {
                break;
            }
            while let Some(&Reverse((at, index))) = self.waiting.peek() {
                if at > now {
                    break;
                }
                self.waiting.pop();
                connections[index].go_on(Token(index), self, at, now);
            }
            if self.next_sweep.is_some_and(|at| at <= now) {
                self.sweep(connections, now);
            }
            let wake_at = [
                Some(self.plan.deadline),
                self.waiting.peek().map(|&Reverse((at, _))| at),
                self.next_sweep,
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("the deadline is always there");
            match self.poll.poll(&mut events, Some(wake_at - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // One clock read for all the events of a wake-up: an echo counts
            // as arrived when the kernel reported it, and the next batch as
            // sent from then on, so no time goes uncounted.
            let now = Instant::now();
            for event in &events {
                let token = event.token();
                connections[token.0].on_ready(token, self, Readiness::of(event), now);
            }
            self.publish();
        }
        self.publish();
        Ok(())
    }

    /// Fails every round trip (or connect) that has waited too long, and
    /// finds when the next one can.
    fn sweep(&mut self, connections: &mut [Connection], now: Instant) {
        self.next_sweep = None;
        for (index, connection) in connections.iter_mut().enumerate() {
            if let Some(expires) = connection.expires(self.plan.timeout) {
                if expires <= now {
                    connection.fail(
                        Token(index),
                        self,
                        Failure::timed_out(self.plan.timeout),
                        now,
                    );
                } else {
                    self.watch(expires);
                }
            }
        }
    }

    /// Makes sure a sweep comes by `expires`.
    fn watch(&mut self, expires: Instant) {
        // A sweep already due earlier finds this one too, and sets the next.
        if self.next_sweep.is_none_or(|at| expires < at) {
            self.next_sweep = Some(expires);
        }
    }

    /// Counts a round trip whose echo arrived at `arrived`, if that falls
    /// in the measured window.
    /// Whether what happens at `at` counts: after the warm-up, before the end.
    fn measures(&self, at: Instant) -> bool {
        (self.plan.measured_from..self.plan.deadline).contains(&at)
    }

    fn record(&mut self, arrived: Instant, latency: Duration) {
        if !self.measures(arrived) {
            return;
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.latencies.saturating_record(nanos);
        self.answered += 1;
    }

    /// Tells the progress bar and the report what was answered.
    fn publish(&mut self) {
        if self.answered > 0 {
            self.counters
                .requests
                .fetch_add(self.answered, Ordering::Relaxed);
            self.answered = 0;
        }
    }
}

enum Socket {
    Tcp(TcpStream),
    Tls(TcpStream, Box<rustls::ClientConnection>),
    Udp(UdpSocket),
}

/// Where a connection is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A TCP connect is under way.
    Connecting,
    /// Connected; the TLS handshake is under way.
    Handshaking,
    /// A batch is out; its echo is awaited.
    InFlight,
    /// Paced by `--rate` until its next batch is due.
    Idle,
    /// Waiting after a failure before it carries on.
    Paused,
    /// Its last batch is done before the run ends, or it could not start.
    Done,
}

struct Connection {
    socket: Option<Socket>,
    phase: Phase,
    batch: Batch,
    /// When the next batch is due, under `--rate`.
    next_due: Instant,
    /// When the connection goes on from `Idle` or `Paused`; an entry in the
    /// driver's queue for any other moment is out of date.
    wake_at: Option<Instant>,
    /// When the batch in flight was due: its latency counts from here.
    due: Instant,
    /// When the batch in flight (or the connect) began: its timeout counts
    /// from here.
    began: Instant,
    /// TCP: bytes of the batch written and echoed. UDP: messages sent and
    /// answered.
    sent: usize,
    echoed: usize,
    /// The socket was reported readable and has not been read dry since.
    /// Readiness is reported once per change, so it is kept until a read
    /// shows there is nothing more.
    readable: bool,
    /// See `Readiness::closing`.
    closing: bool,
    /// UDP: the answers in the measured window, as one stream.
    account: StreamAccount,
}

impl Connection {
    fn new(plan: &Plan, id: u64, now: Instant) -> Connection {
        // Spread paced connections over one interval so they do not fire in step.
        let offset = plan
            .interval
            .map_or(Duration::ZERO, |i| i.mul_f64(fastrand::f64()));
        Connection {
            socket: None,
            phase: Phase::Paused,
            batch: Batch::new(Arc::clone(&plan.block), plan.pipeline, id),
            next_due: now + offset,
            wake_at: None,
            due: now,
            began: now,
            sent: 0,
            echoed: 0,
            readable: false,
            closing: false,
            account: StreamAccount::default(),
        }
    }

    /// Opens the socket: a TCP connect that completes later, or a UDP
    /// socket that starts at once.
    fn open(&mut self, token: Token, driver: &mut Driver, now: Instant) {
        let addr = driver.plan.addr;
        let opened = if driver.plan.udp {
            // Connected, so that only its answers are received and ICMP
            // "port unreachable" surfaces as an error.
            UdpSocket::bind(udp_local_for(addr))
                .and_then(|socket| socket.connect(addr).map(|()| socket))
                .map(Socket::Udp)
        } else {
            TcpStream::connect(addr).and_then(|stream| match &driver.plan.tls {
                None => Ok(Socket::Tcp(stream)),
                Some(tls) => Ok(Socket::Tls(stream, Box::new(tls.connection()?))),
            })
        };
        let registered = opened.and_then(|mut socket| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            match &mut socket {
                Socket::Tcp(stream) | Socket::Tls(stream, _) => {
                    driver.poll.registry().register(stream, token, interest)
                }
                Socket::Udp(udp) => driver.poll.registry().register(udp, token, interest),
            }
            .map(|()| socket)
        });
        match registered {
            Ok(socket @ (Socket::Tcp(_) | Socket::Tls(..))) => {
                self.socket = Some(socket);
                self.phase = Phase::Connecting;
                self.began = now;
                driver.watch(now + driver.plan.timeout);
            }
            Ok(socket @ Socket::Udp(_)) => {
                self.socket = Some(socket);
                self.next_batch(token, driver, now);
            }
            Err(e) => {
                driver.counters.count_failure(&Failure::io(&e), true);
                if driver.plan.udp {
                    // A socket that cannot even be made will not be made later.
                    self.phase = Phase::Done;
                } else {
                    self.pause(token, driver, now);
                }
            }
        }
    }

    /// When what is in flight times out, if anything is.
    fn expires(&self, timeout: Duration) -> Option<Instant> {
        matches!(
            self.phase,
            Phase::Connecting | Phase::Handshaking | Phase::InFlight
        )
        .then(|| self.began + timeout)
    }

    /// Queues the connection to go on at `at`.
    fn wait_until(&mut self, token: Token, driver: &mut Driver, at: Instant) {
        self.wake_at = Some(at);
        driver.waiting.push(Reverse((at, token.0)));
    }

    /// Carries on after waiting in the driver's queue until `at`.
    fn go_on(&mut self, token: Token, driver: &mut Driver, at: Instant, now: Instant) {
        if self.wake_at != Some(at) {
            return;
        }
        self.wake_at = None;
        match self.phase {
            Phase::Idle => self.send_batch(token, driver, now, now),
            Phase::Paused if self.socket.is_none() => return self.open(token, driver, now),
            Phase::Paused => self.next_batch(token, driver, now),
            Phase::Connecting | Phase::Handshaking | Phase::InFlight | Phase::Done => {}
        }
        self.read_what_came(token, driver, now);
    }

    fn on_ready(&mut self, token: Token, driver: &mut Driver, ready: Readiness, now: Instant) {
        self.readable |= ready.readable || ready.closing;
        self.closing |= ready.closing;
        match (self.phase, &self.socket) {
            (Phase::Connecting, Some(Socket::Tcp(stream) | Socket::Tls(stream, _))) => {
                match connected(stream) {
                    Ok(true) if matches!(self.socket, Some(Socket::Tls(..))) => {
                        self.phase = Phase::Handshaking;
                        self.handshake(token, driver, now);
                    }
                    Ok(true) => self.next_batch(token, driver, now),
                    Ok(false) => return,
                    Err(failure) => return self.fail_to_connect(token, driver, failure, now),
                }
            }
            // On to reading after it: the handshake may end on a read that
            // did not block, and where readiness is reported again only
            // after one that did (Windows), the echo would wait forever.
            (Phase::Handshaking, _) => self.handshake(token, driver, now),
            (Phase::InFlight, Some(_)) if ready.writable && !self.all_written() => {
                if let Err(failure) = self.send(&mut driver.outbox) {
                    return self.fail(token, driver, failure, now);
                }
            }
            _ => {}
        }
        self.read_what_came(token, driver, now);
    }

    /// Reads while the socket has something, and the connection expects an
    /// echo or can tell that what came is wrong (between paced batches
    /// nothing should come, not even the end of the stream). After a
    /// failure, or while paused, it reads no more until it goes on.
    fn read_what_came(&mut self, token: Token, driver: &mut Driver, now: Instant) {
        while self.readable && matches!(self.phase, Phase::InFlight | Phase::Idle) {
            let read = match self.socket {
                Some(Socket::Tcp(_)) => self.read_tcp(token, driver, now),
                Some(Socket::Tls(..)) => self.read_tls(token, driver, now),
                Some(Socket::Udp(_)) => self.receive_udp(token, driver, now),
                None => unreachable!("only an open connection is in flight or idle"),
            };
            if let Err(failure) = read {
                return self.fail(token, driver, failure, now);
            }
        }
    }

    /// Starts the next batch now, or queues the connection until it is due.
    fn next_batch(&mut self, token: Token, driver: &mut Driver, now: Instant) {
        let Some(interval) = driver.plan.interval else {
            return self.send_batch(token, driver, now, now);
        };
        let due = self.next_due;
        if due >= driver.plan.deadline {
            self.phase = Phase::Done;
            return;
        }
        self.next_due = due + interval;
        if now >= due {
            // Late because the server was slow: the wait is the server's,
            // and counts (no coordinated omission).
            self.send_batch(token, driver, due, now);
        } else {
            // Early: the timer's own lateness is the client's, and the
            // batch counts from when it goes (`go_on`).
            self.phase = Phase::Idle;
            self.wait_until(token, driver, due);
        }
    }

    fn send_batch(&mut self, token: Token, driver: &mut Driver, due: Instant, now: Instant) {
        self.batch.stamp();
        self.phase = Phase::InFlight;
        self.due = due;
        self.began = now;
        self.sent = 0;
        self.echoed = 0;
        if driver.next_sweep.is_none() {
            driver.watch(now + driver.plan.timeout);
        }
        if let Err(failure) = self.send(&mut driver.outbox) {
            self.fail(token, driver, failure, now);
        }
    }

    fn all_sent(&self) -> bool {
        match self.socket {
            Some(Socket::Tcp(_) | Socket::Tls(..)) => self.sent == self.batch.len(),
            _ => self.sent == self.batch.messages(),
        }
    }

    /// Whether the batch has gone to the socket: over TLS, its records too.
    fn all_written(&self) -> bool {
        self.all_sent()
            && match &self.socket {
                Some(Socket::Tls(_, tls)) => !tls.wants_write(),
                _ => true,
            }
    }

    /// Drives the TLS handshake as far as the socket allows; once it is
    /// done, the first batch goes.
    fn handshake(&mut self, token: Token, driver: &mut Driver, now: Instant) {
        let Some(Socket::Tls(stream, tls)) = &mut self.socket else {
            unreachable!("only a TLS connection shakes hands");
        };
        loop {
            if let Err(failure) = flush(stream, tls) {
                return self.fail_to_connect(token, driver, failure, now);
            }
            if !tls.is_handshaking() {
                return self.next_batch(token, driver, now);
            }
            if !self.readable {
                return;
            }
            match receive_records(stream, tls) {
                Ok(true) => {}
                Ok(false) => self.readable = false,
                Err(failure) => return self.fail_to_connect(token, driver, failure, now),
            }
        }
    }

    /// A failed connect or handshake: counted as a connect error, and
    /// retried after a pause.
    fn fail_to_connect(
        &mut self,
        token: Token,
        driver: &mut Driver,
        failure: Failure,
        now: Instant,
    ) {
        driver.counters.count_failure(&failure, true);
        self.close(driver);
        self.pause(token, driver, now);
    }

    /// Sends what the socket takes of the rest of the batch. Most batches
    /// fit in the socket buffer and go at once; the rest goes as the echo
    /// is read, since a batch larger than the socket buffers would never
    /// finish writing.
    fn send(&mut self, outbox: &mut Outbox) -> Result<(), Failure> {
        while !self.all_sent() {
            let written = match &mut self.socket {
                Some(Socket::Tcp(stream)) => {
                    socket_calls::send(stream, self.batch.outgoing(self.sent, outbox))
                }
                // Plaintext is taken only once the last of it has gone out
                // as records: the window bounds what rustls holds.
                Some(Socket::Tls(stream, tls)) => match flush(stream, tls)? {
                    false => Err(io::ErrorKind::WouldBlock.into()),
                    true => tls.writer().write(self.batch.outgoing(self.sent, outbox)),
                },
                Some(Socket::Udp(socket)) => socket
                    .send(self.batch.message(self.sent, outbox))
                    .map(|_| 1),
                None => unreachable!("a batch goes out only on an open connection"),
            };
            match written {
                Ok(0) => return Err(Failure::io(&io::ErrorKind::WriteZero.into())),
                Ok(written) => self.sent += written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(self.socket, Some(Socket::Tcp(_) | Socket::Tls(..))) => {
                    return Err(Failure::stream(&e));
                }
                Err(e) => return Err(Failure::io(&e)),
            }
        }
        if let Some(Socket::Tls(stream, tls)) = &mut self.socket {
            flush(stream, tls)?;
        }
        Ok(())
    }

    /// One read of the echo, checked; when the echo is whole, moves on to
    /// the next batch.
    fn read_tcp(&mut self, token: Token, driver: &mut Driver, now: Instant) -> Result<(), Failure> {
        let Some(Socket::Tcp(stream)) = &mut self.socket else {
            unreachable!("only a TCP connection reads a stream");
        };
        let expected = if self.phase == Phase::InFlight {
            self.batch.len() - self.echoed
        } else {
            0
        };
        // Asking for one byte more than can come makes the last read a
        // short one, which shows the socket is drained: no read that fails
        // with WouldBlock after every echo.
        let asked = expected.min(READ_WINDOW) + 1;
        let got = match socket_calls::recv(stream, &mut driver.inbox[..asked]) {
            Ok(0) => return Err(Failure::closed("the server closed the connection mid-echo")),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(Failure::stream(&e)),
        };
        if got < asked && SHORT_READ_DRAINS && !self.closing {
            self.readable = false;
        }
        self.take_echo(token, driver, got, expected, now)
    }

    /// Over TLS: the plaintext rustls has, checked as [`read_tcp`] checks a
    /// read; when it has none, one read of records from the socket.
    fn read_tls(&mut self, token: Token, driver: &mut Driver, now: Instant) -> Result<(), Failure> {
        let Some(Socket::Tls(stream, tls)) = &mut self.socket else {
            unreachable!("only a TLS connection reads records");
        };
        let expected = if self.phase == Phase::InFlight {
            self.batch.len() - self.echoed
        } else {
            0
        };
        let asked = expected.min(READ_WINDOW) + 1;
        match tls.reader().read(&mut driver.inbox[..asked]) {
            Ok(0) => return Err(Failure::closed("the server ended the TLS session mid-echo")),
            Ok(got) => return self.take_echo(token, driver, got, expected, now),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Failure::stream(&e)),
        }
        if !receive_records(stream, tls)? {
            self.readable = false;
        }
        // What the server's records ask for (a key update) goes at once.
        flush(stream, tls).map(|_| ())
    }

    /// `got` bytes of echo in the inbox, of `expected`: checked, counted,
    /// and when the echo is whole, on to the next batch.
    fn take_echo(
        &mut self,
        token: Token,
        driver: &mut Driver,
        got: usize,
        expected: usize,
        now: Instant,
    ) -> Result<(), Failure> {
        if got > expected || !self.batch.matches(self.echoed, &driver.inbox[..got]) {
            return Err(Failure::mismatch("wrong echo"));
        }
        let size = self.batch.size();
        let whole_before = self.echoed / size;
        self.echoed += got;
        for _ in whole_before..self.echoed / size {
            driver.record(now, self.latency(now));
        }
        if self.echoed == self.batch.len() {
            self.next_batch(token, driver, now);
        }
        Ok(())
    }

    /// Takes one answer, if one has come. Datagrams may be lost or
    /// reordered: each answer is matched by its sequence number.
    fn receive_udp(
        &mut self,
        token: Token,
        driver: &mut Driver,
        now: Instant,
    ) -> Result<(), Failure> {
        let Some(Socket::Udp(socket)) = &self.socket else {
            unreachable!("only a UDP socket receives datagrams");
        };
        let len = match socket.recv(&mut driver.inbox) {
            Ok(len) => len,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(Failure::io(&e)),
        };
        let measured = driver.measures(now);
        match self.batch.answer(&driver.inbox[..len]) {
            Answer::Expected(sequence) => {
                if measured {
                    // The jitter is the path's: from when the batch went,
                    // not from when it was due.
                    let rtt_ms = now.saturating_duration_since(self.began).as_secs_f64() * 1e3;
                    self.account.first_answer(sequence, rtt_ms, true);
                }
                driver.record(now, self.latency(now));
                self.echoed += 1;
                if self.echoed == self.batch.messages() {
                    self.next_batch(token, driver, now);
                }
                Ok(())
            }
            Answer::Late(sequence) => {
                if measured {
                    self.account.first_answer(sequence, 0.0, false);
                }
                Ok(())
            }
            Answer::Duplicate => {
                if measured {
                    driver.counters.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Answer::Wrong => Err(Failure::mismatch("wrong echo")),
        }
    }

    /// The latency of an echo that came by `now`, the clock of this
    /// wake-up. An echo of a batch sent during this same wake-up came
    /// after that clock, which would count it as instant.
    fn latency(&self, now: Instant) -> Duration {
        if self.began == now {
            self.due.elapsed()
        } else {
            now - self.due
        }
    }

    /// Counts a failure and recovers: a TCP stream is out of step and is
    /// replaced after a pause; a UDP socket carries on, after a pause if
    /// the port was closed.
    fn fail(&mut self, token: Token, driver: &mut Driver, failure: Failure, now: Instant) {
        driver.counters.count_failure(&failure, false);
        match self.socket {
            Some(Socket::Udp(_)) => {
                if failure.verdict == Verdict::TimedOut && driver.measures(now) {
                    driver
                        .counters
                        .lost
                        .fetch_add(self.batch.unanswered() as u64, Ordering::Relaxed);
                }
                self.batch.forget_unanswered();
                if failure.verdict == Verdict::Unreachable {
                    // A closed port answers at once: do not spin on it.
                    self.pause(token, driver, now);
                } else if self.phase == Phase::InFlight {
                    self.next_batch(token, driver, now);
                }
            }
            _ => {
                self.close(driver);
                self.pause(token, driver, now);
            }
        }
    }

    fn pause(&mut self, token: Token, driver: &mut Driver, now: Instant) {
        self.phase = Phase::Paused;
        self.wait_until(token, driver, now + RECONNECT_PAUSE);
    }

    fn close(&mut self, driver: &mut Driver) {
        self.readable = false;
        self.closing = false;
        if let Some(Socket::Tcp(mut stream) | Socket::Tls(mut stream, _)) = self.socket.take() {
            // Deregistered before it closes, as mio asks of every platform.
            let _ = driver.poll.registry().deregister(&mut stream);
        }
    }
}

/// Writes the TLS records rustls has ready; `Ok(false)` if the socket took
/// not all of them.
fn flush(stream: &mut TcpStream, tls: &mut rustls::ClientConnection) -> Result<bool, Failure> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::stream(&e)),
        }
    }
    Ok(true)
}

/// One read of TLS records from the socket, processed; `Ok(false)` if the
/// socket had none. A refused certificate comes out here as a failure.
fn receive_records(
    stream: &mut TcpStream,
    tls: &mut rustls::ClientConnection,
) -> Result<bool, Failure> {
    match tls.read_tls(stream) {
        Ok(0) => Err(Failure::closed("the server closed the connection")),
        Ok(_) => tls
            .process_new_packets()
            .map(|_| true)
            .map_err(|e| Failure::io(&io::Error::new(io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
        Err(e) => Err(Failure::stream(&e)),
    }
}

/// Whether a non-blocking connect has completed: `Ok(false)` while it is
/// still under way, an error if it failed.
fn connected(stream: &TcpStream) -> Result<bool, Failure> {
    if let Ok(Some(e)) | Err(e) = stream.take_error() {
        return Err(Failure::io(&e));
    }
    match stream.peer_addr() {
        Ok(_) => {
            let _ = stream.set_nodelay(true);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(Failure::io(&e)),
    }
}
