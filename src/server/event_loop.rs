//! The TCP echo (RFC 862): one worker's event loop, which accepts
//! connections and sends every byte back.
//!
//! Why an event loop of its own rather than a tokio task per connection:
//! cost per round trip. An echo server is a measuring instrument, held to
//! the bar of a tight epoll loop in C (`scripts/bench.sh`). With a task per
//! connection, tokio's own work (waking, scheduling and polling a task, the
//! cache misses of hundreds of them) was about 10% of the server's CPU at
//! 500 busy connections, against 2 to 3% for the whole C loop. Here, as in
//! that loop, a readiness event leads straight to the connection's reads and
//! writes, the clock is read once per wake-up, and idle timeouts are found
//! by a sweep at the earliest moment one can expire, not by a timer per
//! connection. The loop serves the ready connections in the order the
//! kernel reports them, a few reads each per turn, so none waits many
//! rounds while others are served (see `workers`).
//!
//! Two more properties shape it. Memory: an idle connection owns no buffer
//! at all. Data is read into the worker's scratch buffer and written
//! straight back; only when the peer is not reading fast enough does the
//! unsent rest (at most one scratch buffer) move into a buffer the
//! connection owns, and no more is read until it is sent. So a peer that
//! sends but never reads costs at most `SCRATCH_SIZE` bytes, and the
//! kernel's flow control does the rest. Robustness: accept errors such as
//! EMFILE must neither stop nor spin the loop, so it backs off and logs
//! without flooding.
//!
//! UDP is not served here but by threads of its own (`udp`).
//!
//! Listeners with `proxy_protocol` add one state in front of the echo: a
//! connection first reads its PROXY protocol header (`proxy_header`), from
//! the same scratch buffer, and echoes what follows it in the same read.
//! Only a header that arrives in pieces is kept, in a side table that holds
//! nothing for any other connection; the header's deadline is kept by the
//! same sweep as idle timeouts. A connection on any other listener pays one
//! branch on a flag that fits in its padding.
//!
//! TLS listeners (`[tls]`) add one more, the same way: a TLS connection's
//! rustls session (`tls::Session`) waits in a side table beside it, and its
//! turns go through the session rather than straight to the socket. The
//! loop, the turns, the limits and the idle sweep are the same; a handshake
//! must complete within `tls_handshake_timeout` of the accept, however the
//! bytes of it trickle in and whatever the idle timeout (which may be
//! never), kept by the same sweep.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tracing::{debug, error, info, warn};

use crate::server::limits::{ConnectionPermit, Limits};
use crate::server::listeners::TcpEndpoint;
use crate::server::mailbox::{Command, Inbox, WAKE_TOKEN};
use crate::server::metrics::counters::{AcceptError, CloseReason, WorkerCounters};
use crate::server::proxy_header::{HeaderError, PartialHeader};
use crate::server::shutdown::TaskGuard;
use crate::server::throttle::{Throttle, WARNING_INTERVAL};
use crate::server::tls::{self, Tls};
use crate::shared::readiness::{Readiness, SHORT_READ_DRAINS};
use crate::shared::socket_calls;

/// The most a connection reads at once, and so the most it ever buffers.
pub(crate) const SCRATCH_SIZE: usize = 16 * 1024;

/// Readiness events taken from the kernel per wake-up.
const EVENTS_PER_POLL: usize = 1024;
/// Reads one connection may do before the others get their turn: a peer
/// that sends as fast as the worker echoes must not hold the loop (the
/// other connections, accepts, the watchdog's ping).
pub(crate) const READS_PER_TURN: usize = 4;

/// How finely idle timeouts are kept: a connection idle for the timeout
/// is closed within a sixteenth of it more.
const SWEEPS_PER_TIMEOUT: u32 = 16;

const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The token of listener `index`, counted down from below `WAKE_TOKEN`.
/// Connections count up from zero.
fn listener_token(index: usize) -> Token {
    Token(usize::MAX - 1 - index)
}

/// What a readiness event is about.
enum Source {
    Wake,
    Listener(usize),
    Connection(usize),
}

/// One worker thread's event loop: its listeners, its connections and the
/// loop that serves them.
pub(crate) struct EventLoop {
    poll: Poll,
    /// Closed (`None`) once the worker stops accepting.
    listeners: Vec<Option<Listening>>,
    connections: Slab<Connection>,
    limits: Arc<Limits>,
    /// Cloned into every connection, so that shutdown knows when the last
    /// one has ended; dropped when the worker stops accepting.
    guard: Option<TaskGuard>,
    commands: Inbox,
    scratch: Box<[u8]>,
    accepting: Accepting,
    /// When the connection idle the longest can time out, if any is open
    /// and idle connections are closed at all.
    next_sweep: Option<Instant>,
    /// Connections that used up their turn with more to read: readiness
    /// is reported once, so they are served again without an event.
    unfinished: Vec<usize>,
    /// The PROXY protocol headers that came in pieces, by connection, until
    /// they are complete.
    partial_headers: HashMap<usize, PartialHeader>,
    /// The TLS listeners' certificate, when there are any.
    tls: Option<Arc<Tls>>,
    /// The TLS connections' sessions, by connection.
    sessions: HashMap<usize, Box<tls::Session>>,
    /// What this worker has done, for the metrics; written by it alone.
    counters: Arc<WorkerCounters>,
}

/// A listening socket and its address, for the log.
struct Listening {
    listener: TcpListener,
    address: Option<SocketAddr>,
    /// Its connections begin with a PROXY protocol header.
    proxy_protocol: bool,
    /// Its connections speak TLS.
    tls: bool,
}

/// The accept side's state: a backoff after errors, and throttled warnings.
struct Accepting {
    /// After an accept error, no accept is tried before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    failed: u64,
    refusals: Throttle,
    errors: Throttle,
}

impl EventLoop {
    /// A loop serving `listeners` (each worker accepts from all of them) on
    /// `poll`, taking its commands from `commands` (announced by a waker
    /// registered as `WAKE_TOKEN`).
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<TcpEndpoint>,
        limits: Arc<Limits>,
        guard: TaskGuard,
        commands: Inbox,
        counters: Arc<WorkerCounters>,
        tls: Option<Arc<Tls>>,
    ) -> io::Result<EventLoop> {
        let mut registered = Vec::with_capacity(listeners.len());
        for (index, endpoint) in listeners.into_iter().enumerate() {
            let TcpEndpoint {
                listener,
                proxy_protocol,
                tls,
            } = endpoint;
            listener.set_nonblocking(true)?;
            let address = listener.local_addr().ok();
            let mut listener = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, listener_token(index), Interest::READABLE)?;
            registered.push(Some(Listening {
                listener,
                address,
                proxy_protocol,
                tls,
            }));
        }
        Ok(EventLoop {
            poll,
            listeners: registered,
            connections: Slab::new(),
            limits,
            guard: Some(guard),
            commands,
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            accepting: Accepting {
                retry_at: None,
                backoff: FIRST_ACCEPT_BACKOFF,
                failed: 0,
                refusals: Throttle::new(WARNING_INTERVAL),
                errors: Throttle::new(WARNING_INTERVAL),
            },
            next_sweep: None,
            unfinished: Vec::new(),
            partial_headers: HashMap::new(),
            tls,
            sessions: HashMap::new(),
            counters,
        })
    }

    /// Serves until told to close.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            let wake_at = [self.accepting.retry_at, self.next_sweep]
                .into_iter()
                .flatten()
                .min();
            let timeout = if self.unfinished.is_empty() {
                wake_at.map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // Nothing a worker can do about its own epoll set; the
                // watchdog sees it gone.
                error!(error = %e, "a TCP worker cannot wait for events; closing its connections");
                return;
            }
            // One clock read for all the events of a wake-up.
            let now = Instant::now();
            let unfinished = std::mem::take(&mut self.unfinished);
            for event in &events {
                match self.source(event.token()) {
                    Source::Wake => {}
                    Source::Listener(index) => self.accept(index, now),
                    Source::Connection(key) => self.on_ready(key, Readiness::of(event), now),
                }
            }
            // After the sockets that had news, another turn each for those
            // the last round cut short.
            for key in unfinished {
                self.on_ready(key, Readiness::NOTHING_NEW, now);
            }
            loop {
                let command = match self.commands.next() {
                    Ok(Some(command)) => command,
                    Ok(None) => break,
                    // The daemon is going away without a word.
                    Err(()) => return,
                };
                match command {
                    Command::StopAccepting(done) => {
                        self.stop_accepting();
                        let _ = done.send(());
                    }
                    Command::Reload => self.next_sweep = Some(now),
                    Command::Ping(answer) => {
                        let _ = answer.send(());
                    }
                    Command::Close => {
                        for (key, session) in &mut self.sessions {
                            session.close(&self.connections[*key].stream);
                        }
                        self.counters
                            .closed(CloseReason::Shutdown)
                            .add(self.connections.len() as u64);
                        self.counters.open.set(0);
                        return;
                    }
                }
            }
            if self.accepting.retry_at.is_some_and(|at| at <= now) {
                self.accepting.retry_at = None;
                for index in 0..self.listeners.len() {
                    self.accept(index, now);
                }
            }
            if self.next_sweep.is_some_and(|at| at <= now) {
                self.sweep(now);
            }
        }
    }

    /// What `token` stands for (see `listener_token`).
    fn source(&self, token: Token) -> Source {
        if token == WAKE_TOKEN {
            return Source::Wake;
        }
        let below_wake = usize::MAX - 1 - token.0;
        if below_wake < self.listeners.len() {
            Source::Listener(below_wake)
        } else {
            Source::Connection(token.0)
        }
    }

    /// Accepts every connection waiting on listener `index`.
    fn accept(&mut self, index: usize, now: Instant) {
        if self.accepting.retry_at.is_some() {
            // Backing off: the retry accepts what has come meanwhile.
            return;
        }
        loop {
            let Some(Listening {
                listener,
                address,
                proxy_protocol,
                tls,
            }) = &self.listeners[index]
            else {
                return;
            };
            let (local, proxy_protocol, tls) = (*address, *proxy_protocol, *tls);
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_peer_error(&e) => {
                    self.counters.accept_error(AcceptError::PeerGone).add(1);
                    debug!(error = %e, "a connection went away before it was accepted");
                    continue;
                }
                Err(e) => {
                    // Out of descriptors or memory: waiting is the only cure,
                    // and retrying at once would spin on the same error.
                    self.counters.accept_error(AcceptError::of(&e)).add(1);
                    let accepting = &mut self.accepting;
                    accepting.failed += 1;
                    if let Some(suppressed) = accepting.errors.event() {
                        error!(listener = ?local, error = %e, retry_in = ?accepting.backoff, suppressed,
                            "cannot accept connections; retrying (check `ulimit -n` / LimitNOFILE against max_connections)");
                    }
                    accepting.retry_at = Some(now + accepting.backoff);
                    accepting.backoff = (accepting.backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    return;
                }
            };
            if self.accepting.failed > 0 {
                info!(listener = ?local, failed_accepts = self.accepting.failed, "accepting connections again");
                self.accepting.failed = 0;
                self.accepting.backoff = FIRST_ACCEPT_BACKOFF;
            }
            let Some(permit) = self.limits.try_admit() else {
                drop(stream);
                self.counters.refused.add(1);
                if let Some(suppressed) = self.accepting.refusals.event() {
                    warn!(max_connections = self.limits.max_connections(), %peer, suppressed,
                        "connection limit reached; refusing new connections");
                }
                continue;
            };
            let session = match tls.then(|| self.start_tls()).transpose() {
                Ok(session) => session,
                Err(e) => {
                    debug!(%peer, error = %e, "connection failed");
                    continue;
                }
            };
            self.open(stream, peer, proxy_protocol, session, permit, now);
        }
    }

    /// A session for a connection to a TLS listener.
    fn start_tls(&self) -> Result<Box<tls::Session>, rustls::Error> {
        let tls = self
            .tls
            .as_ref()
            .expect("only a worker given [tls] has TLS listeners");
        tls.accept().map(Box::new)
    }

    fn open(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        awaiting_header: bool,
        session: Option<Box<tls::Session>>,
        permit: ConnectionPermit,
        now: Instant,
    ) {
        let guard = self
            .guard
            .clone()
            .expect("a worker accepts only while it holds its guard");
        let entry = self.connections.vacant_entry();
        let registered = stream.set_nodelay(true).and_then(|()| {
            self.poll.registry().register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        if let Err(e) = registered {
            debug!(%peer, error = %e, "connection failed");
            return;
        }
        if !awaiting_header {
            debug!(%peer, tls = session.is_some(), "connection opened");
        }
        let tls = session.is_some();
        if let Some(session) = session {
            self.sessions.insert(entry.key(), session);
        }
        let deadline = entry
            .insert(Connection {
                stream,
                peer,
                unsent: Vec::new(),
                readable: false,
                closing: false,
                input_ended: false,
                awaiting_header,
                tls,
                handshaking: tls,
                last_active: now,
                echoed: 0,
                _permit: permit,
                _guard: guard,
            })
            .deadline();
        self.counters.accepted.add(1);
        self.counters.open.set(self.connections.len() as u64);
        let expires = deadline.limit(&self.limits).map(|limit| now + limit);
        self.next_sweep = match (self.next_sweep, expires) {
            (Some(at), Some(expires)) => Some(at.min(expires)),
            (at, expires) => at.or(expires),
        };
    }

    fn on_ready(&mut self, key: usize, ready: Readiness, now: Instant) {
        let Some(connection) = self.connections.get_mut(key) else {
            // Readiness for a connection closed earlier in this wake-up.
            return;
        };
        let turn = if connection.awaiting_header {
            match connection.receive_header(
                ready,
                &mut self.scratch,
                &self.counters,
                &mut self.partial_headers,
                key,
                now,
            ) {
                Ok(false) => Ok(Turn::Waiting),
                // On with what is left to read, as if nothing new had come.
                Ok(true) => connection.echo(
                    Readiness::NOTHING_NEW,
                    &mut self.scratch,
                    &self.counters,
                    now,
                ),
                Err(HeaderFailure::Io(e)) => Err(e),
                Err(HeaderFailure::SentNothing) => Ok(Turn::Ended(Ending::SentNothing)),
                Err(failure) => return self.refuse(key, &failure),
            }
        } else if connection.tls {
            let session = self
                .sessions
                .get_mut(&key)
                .expect("a TLS connection has its session");
            match session.echo(&connection.stream, ready, &mut self.scratch, &self.counters) {
                Ok(served) => {
                    // Until the handshake is complete, the connection is
                    // held to its deadline from the accept (`sweep`): one
                    // trickled a byte at a time would hold its slot and
                    // rustls's buffer (up to 64 KiB) for ever.
                    if !session.is_handshaking() && (served.moved || connection.handshaking) {
                        connection.handshaking = false;
                        connection.last_active = now;
                    }
                    connection.echoed += served.echoed;
                    Ok(served.turn)
                }
                Err(tls::Failure::Io(e)) => Err(e),
                Err(failure) => {
                    if let Some(tls) = &self.tls {
                        tls.handshake_failed(connection.peer, &failure);
                    }
                    Ok(Turn::Ended(Ending::TlsHandshake))
                }
            }
        } else {
            connection.echo(ready, &mut self.scratch, &self.counters, now)
        };
        match turn {
            Ok(Turn::Waiting) => {}
            Ok(Turn::Unfinished) => self.unfinished.push(key),
            Ok(Turn::Ended(ending)) => self.close(key, Ok(ending)),
            Err(e) => self.close(key, Err(e)),
        }
    }

    /// Closes the connections past their deadline (`Connection::deadline`):
    /// idle for the idle timeout, still without their PROXY protocol header,
    /// or still in their TLS handshake. Finds when the next one can be.
    /// Sweeps come at most `SWEEPS_PER_TIMEOUT` times per timeout, so a
    /// connection may stay open that much longer than the timeout, and
    /// many connections cost a sweep no more often.
    fn sweep(&mut self, now: Instant) {
        let expiries = |deadline: Deadline| Expiries::new(deadline.limit(&self.limits));
        let mut headers = expiries(Deadline::Header);
        let mut handshakes = expiries(Deadline::Handshake);
        let mut idle = expiries(Deadline::Idle);
        for (key, connection) in &self.connections {
            let expiries = match connection.deadline() {
                Deadline::Header => &mut headers,
                Deadline::Handshake => &mut handshakes,
                Deadline::Idle => &mut idle,
            };
            expiries.check(key, connection.last_active, now);
        }
        self.next_sweep = [&idle, &headers, &handshakes]
            .into_iter()
            .filter_map(|expiries| expiries.next_sweep(now))
            .min();
        for key in idle.expired {
            self.close(key, Ok(Ending::IdleTimeout));
        }
        for key in headers.expired {
            self.refuse(
                key,
                &HeaderFailure::Timeout(self.limits.proxy_protocol_timeout()),
            );
        }
        for key in handshakes.expired {
            if let (Some(tls), Some(limit)) = (&self.tls, handshakes.limit) {
                let failure = tls::Failure::TimedOut(limit);
                tls.handshake_failed(self.connections[key].peer, &failure);
            }
            self.close(key, Ok(Ending::TlsHandshake));
        }
    }

    /// Closes a connection that did not send a valid PROXY protocol header,
    /// counts it, and says so without flooding the log.
    fn refuse(&mut self, key: usize, failure: &HeaderFailure) {
        let (total, logged) = self.limits.count_proxy_header_failure();
        if let Some(suppressed) = logged {
            let peer = self.connections[key].peer;
            warn!(%peer, reason = %failure, suppressed, total,
                "closed a connection without a valid PROXY protocol header (is the load balancer sending it, and only it, to this address?)");
        }
        self.close(key, Ok(Ending::NoProxyHeader));
    }

    fn close(&mut self, key: usize, how: io::Result<Ending>) {
        let connection = self.connections.remove(key);
        if connection.awaiting_header {
            self.partial_headers.remove(&key);
            release_if_empty(&mut self.partial_headers);
        }
        if connection.tls
            && let Some(mut session) = self.sessions.remove(&key)
        {
            if matches!(how, Ok(Ending::IdleTimeout)) {
                session.close(&connection.stream);
            }
            release_if_empty(&mut self.sessions);
        }
        // On Linux, epoll forgets a socket when its last descriptor closes,
        // as dropping the connection does: deregistering it first would be
        // one more system call per connection (`bench.sh churn`).
        #[cfg(not(target_os = "linux"))]
        {
            let mut stream = connection.stream;
            let _ = self.poll.registry().deregister(&mut stream);
        }
        let (peer, echoed) = (connection.peer, connection.echoed);
        let reason = match &how {
            Ok(ending) => ending.reason(),
            Err(_) => CloseReason::Error,
        };
        self.counters.closed(reason).add(1);
        self.counters.open.set(self.connections.len() as u64);
        match how {
            Ok(ending) => debug!(%peer, echoed, ?ending, "connection closed"),
            Err(e) => debug!(%peer, echoed, error = %e, "connection failed"),
        }
    }

    /// Closes the listeners (their sockets close once every worker has
    /// closed its copies), and lets go of the shutdown
    /// guard, so that only the open connections keep the daemon waiting.
    fn stop_accepting(&mut self) {
        for listening in &mut self.listeners {
            if let Some(mut listening) = listening.take() {
                let _ = self.poll.registry().deregister(&mut listening.listener);
            }
        }
        self.accepting.retry_at = None;
        self.guard = None;
    }
}

/// Lets go of a side table (pending headers, TLS sessions) once it is
/// empty: after a burst it would otherwise keep its peak size for the
/// worker's life.
fn release_if_empty<T>(table: &mut HashMap<usize, T>) {
    if table.is_empty() && table.capacity() > 0 {
        *table = HashMap::new();
    }
}

/// Errors that concern one connection attempt, not the listener.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// What a connection must do within a limit of `last_active`, or be closed.
#[derive(Clone, Copy)]
enum Deadline {
    /// Send its whole PROXY protocol header (`proxy_protocol_timeout`).
    Header,
    /// Complete its TLS handshake (`tls_handshake_timeout`, or the idle
    /// timeout if that is shorter: a silent handshake is an idle
    /// connection too).
    Handshake,
    /// Move a byte either way (`idle_timeout`).
    Idle,
}

impl Deadline {
    /// `None`: never.
    fn limit(self, limits: &Limits) -> Option<Duration> {
        match self {
            Deadline::Header => Some(limits.proxy_protocol_timeout()),
            Deadline::Handshake => {
                let limit = limits.tls_handshake_timeout();
                Some(limits.idle_timeout().map_or(limit, |idle| idle.min(limit)))
            }
            Deadline::Idle => limits.idle_timeout(),
        }
    }
}

/// The connections one kind of deadline has closed in a sweep, and when
/// the next of them is due.
struct Expiries {
    /// `None`: this kind never expires.
    limit: Option<Duration>,
    expired: Vec<usize>,
    next: Option<Instant>,
}

impl Expiries {
    fn new(limit: Option<Duration>) -> Expiries {
        Expiries {
            limit,
            expired: Vec::new(),
            next: None,
        }
    }

    /// Connection `key`, held to this deadline from `since`.
    fn check(&mut self, key: usize, since: Instant, now: Instant) {
        let Some(limit) = self.limit else {
            return;
        };
        let expires = since + limit;
        if expires <= now {
            self.expired.push(key);
        } else if self.next.is_none_or(|at| expires < at) {
            self.next = Some(expires);
        }
    }

    /// When to sweep for the next of them: when it is due, but no sooner
    /// than a `SWEEPS_PER_TIMEOUT`th of the limit from now.
    fn next_sweep(&self, now: Instant) -> Option<Instant> {
        let (at, limit) = self.next.zip(self.limit)?;
        Some(at.max(now + limit / SWEEPS_PER_TIMEOUT))
    }
}

/// How a connection's turn ended.
pub(crate) enum Turn {
    /// It waits for the next readiness event.
    Waiting,
    /// It used up its turn with more to read.
    Unfinished,
    Ended(Ending),
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The peer closed (or half-closed) and got everything back.
    PeerClosed,
    /// Nothing moved for `idle_timeout`.
    IdleTimeout,
    /// No valid PROXY protocol header came in time.
    NoProxyHeader,
    /// The peer closed without sending a byte, on a `proxy_protocol`
    /// listener: a health check or a port scan, not a broken header.
    SentNothing,
    /// The TLS handshake failed, or the peer closed in the middle of it.
    TlsHandshake,
}

impl Ending {
    /// How the metrics count it.
    fn reason(self) -> CloseReason {
        match self {
            Ending::PeerClosed => CloseReason::Peer,
            Ending::IdleTimeout => CloseReason::IdleTimeout,
            Ending::NoProxyHeader => CloseReason::ProxyHeader,
            // A health check or a port scan: the peer closed, as any does.
            Ending::SentNothing => CloseReason::Peer,
            Ending::TlsHandshake => CloseReason::TlsHandshake,
        }
    }
}

/// Why a connection to a `proxy_protocol` listener got no further than its
/// header.
enum HeaderFailure {
    /// The bytes are not a PROXY protocol header.
    Invalid(HeaderError),
    /// The peer closed before the header was complete.
    Closed,
    /// The peer closed without sending a byte: what TCP health checks
    /// (kubelet, AWS NLB, HAProxy without send-proxy) and port scans do, so
    /// a plain close rather than a failure.
    SentNothing,
    /// The header was not complete within `proxy_protocol_timeout`.
    Timeout(Duration),
    /// The socket failed: a connection error like any other.
    Io(io::Error),
}

impl fmt::Display for HeaderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderFailure::Invalid(e) => e.fmt(f),
            HeaderFailure::Closed => f.write_str("the peer closed before its header was complete"),
            HeaderFailure::SentNothing => f.write_str("the peer closed without sending anything"),
            HeaderFailure::Timeout(limit) => write!(
                f,
                "no complete header within {limit:?} (proxy_protocol_timeout)"
            ),
            HeaderFailure::Io(e) => e.fmt(f),
        }
    }
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// What the kernel did not take of the last echo; while anything
    /// waits here, nothing more is read.
    unsent: Vec<u8>,
    /// Reported readable and not read dry since: readiness is reported
    /// once per change, so it is kept until a read shows there is nothing
    /// more.
    readable: bool,
    /// The peer has closed its end (or there is an error to report): read
    /// on until a read says so, whatever a short read suggests.
    closing: bool,
    /// The peer has sent all it will: once everything is written back,
    /// the connection closes.
    input_ended: bool,
    /// A PROXY protocol header must come first (its listener says so) and
    /// is not complete yet; `peer` is the load balancer until it is.
    awaiting_header: bool,
    /// It speaks TLS, through its session in `sessions`.
    tls: bool,
    /// It speaks TLS and its handshake is not complete yet.
    handshaking: bool,
    /// When bytes last moved, for the idle timeout; while the header or
    /// the handshake is awaited, when the connection was accepted, for its
    /// deadline.
    last_active: Instant,
    /// Bytes sent back.
    echoed: u64,
    _permit: ConnectionPermit,
    _guard: TaskGuard,
}

impl Connection {
    /// The deadline it is held to now.
    fn deadline(&self) -> Deadline {
        if self.awaiting_header {
            Deadline::Header
        } else if self.handshaking {
            Deadline::Handshake
        } else {
            Deadline::Idle
        }
    }

    /// Reads until the PROXY protocol header is complete (then echoes the
    /// data that came with it and returns `true`) or the socket is empty
    /// (`false`). Pieces of a header wait in `partial_headers`.
    fn receive_header(
        &mut self,
        ready: Readiness,
        scratch: &mut [u8],
        counters: &WorkerCounters,
        partial_headers: &mut HashMap<usize, PartialHeader>,
        key: usize,
        now: Instant,
    ) -> Result<bool, HeaderFailure> {
        self.readable |= ready.readable || ready.closing;
        self.closing |= ready.closing;
        while self.readable {
            let read = match socket_calls::recv(&self.stream, scratch) {
                Ok(0) if !partial_headers.contains_key(&key) => {
                    return Err(HeaderFailure::SentNothing);
                }
                Ok(0) => return Err(HeaderFailure::Closed),
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HeaderFailure::Io(e)),
            };
            counters.bytes_received.add(read as u64);
            if read < scratch.len() && SHORT_READ_DRAINS && !self.closing {
                self.readable = false;
            }
            // Usually the whole header comes in the first read, and nothing
            // is ever kept.
            let mut partial = partial_headers.remove(&key).unwrap_or_default();
            let Some(header) = partial
                .feed(&scratch[..read])
                .map_err(HeaderFailure::Invalid)?
            else {
                partial_headers.insert(key, partial);
                continue;
            };
            release_if_empty(partial_headers);
            let proxy = self.peer;
            self.peer = header.source.unwrap_or(proxy);
            self.awaiting_header = false;
            self.last_active = now;
            debug!(peer = %self.peer, %proxy, "connection opened");
            if header.data_from < read {
                self.echo_bytes(&scratch[header.data_from..read], counters, now)
                    .map_err(HeaderFailure::Io)?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Does what the readiness allows, within one turn: sends what waits,
    /// reads and echoes what came, and finishes a half-close.
    fn echo(
        &mut self,
        ready: Readiness,
        scratch: &mut [u8],
        counters: &WorkerCounters,
        now: Instant,
    ) -> io::Result<Turn> {
        self.readable |= ready.readable || ready.closing;
        self.closing |= ready.closing;
        if ready.writable && !self.unsent.is_empty() {
            self.send_unsent(counters, now)?;
        }
        let mut reads = 0;
        while self.readable && self.unsent.is_empty() && !self.input_ended {
            if reads == READS_PER_TURN {
                return Ok(Turn::Unfinished);
            }
            reads += 1;
            let read = match socket_calls::recv(&self.stream, scratch) {
                Ok(0) => {
                    self.input_ended = true;
                    break;
                }
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.last_active = now;
            counters.bytes_received.add(read as u64);
            self.echo_bytes(&scratch[..read], counters, now)?;
            // A read that did not fill the buffer found the socket empty:
            // no read that fails with WouldBlock after every message.
            if read < scratch.len() && SHORT_READ_DRAINS && !self.closing {
                self.readable = false;
            }
        }
        if self.input_ended && self.unsent.is_empty() {
            // Everything read has been written back: closing the socket
            // finishes the half-close with its FIN, as a `shutdown` would
            // with one more system call per connection.
            return Ok(Turn::Ended(Ending::PeerClosed));
        }
        Ok(Turn::Waiting)
    }

    /// Sends `bytes` back; what the kernel does not take waits in `unsent`.
    #[inline]
    fn echo_bytes(
        &mut self,
        bytes: &[u8],
        counters: &WorkerCounters,
        now: Instant,
    ) -> io::Result<()> {
        let written = match socket_calls::send(&self.stream, bytes) {
            Ok(written) => written,
            // What was not sent goes as unsent, below.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        self.echoed += written as u64;
        counters.bytes_sent.add(written as u64);
        if written < bytes.len() {
            self.unsent = bytes[written..].to_vec();
            // Until a write would block, no event says when to go on.
            self.send_unsent(counters, now)?;
        }
        Ok(())
    }

    /// Writes what the kernel did not take before, as far as it now goes.
    fn send_unsent(&mut self, counters: &WorkerCounters, now: Instant) -> io::Result<()> {
        let mut sent = 0;
        while sent < self.unsent.len() {
            match socket_calls::send(&self.stream, &self.unsent[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => sent += written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if sent > 0 {
            self.last_active = now;
            self.echoed += sent as u64;
            counters.bytes_sent.add(sent as u64);
        }
        if sent == self.unsent.len() {
            // An idle connection owns no buffer.
            self.unsent = Vec::new();
        } else {
            self.unsent.drain(..sent);
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// What an idle connection costs (the README's "about 120 bytes"): the
    /// PROXY protocol's flag lives in what was padding, and a pending
    /// header's bytes live outside the connection.
    #[test]
    fn a_connection_stays_within_120_bytes() {
        assert!(std::mem::size_of::<Connection>() <= 120);
    }

    #[test]
    fn the_pending_headers_table_shrinks_after_a_burst() {
        let mut partial_headers: HashMap<usize, PartialHeader> = (0..1000)
            .map(|key| (key, PartialHeader::default()))
            .collect();
        partial_headers.remove(&0);
        release_if_empty(&mut partial_headers);
        assert!(partial_headers.capacity() >= 999);
        partial_headers.clear();
        release_if_empty(&mut partial_headers);
        assert_eq!(partial_headers.capacity(), 0);
    }
}
