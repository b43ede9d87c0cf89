//! The TCP echo (RFC 862): accepting connections and sending every byte back.
//!
//! Two properties shape this module. Memory: an idle connection owns no
//! buffer at all. Data is read into a per-thread scratch buffer and written
//! straight back; only when the peer is not reading fast enough does the
//! unsent rest (at most one scratch buffer) move into a buffer the connection
//! owns, and no more is read until it is sent. So a peer that sends but never
//! reads costs at most `SCRATCH_SIZE` bytes, and the kernel's flow control
//! does the rest. Robustness: accept errors such as EMFILE must neither stop
//! nor spin the accept loop, so it backs off and logs without flooding.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::limits::{ConnectionPermit, Limits};
use crate::rarely::{self, First, Stamp};
use crate::shutdown::{Shutdown, TaskGuard};
use crate::throttle::Throttle;

/// The most a connection reads at once, and so the most it ever buffers.
pub const SCRATCH_SIZE: usize = 16 * 1024;

const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Accepts connections on one listener until shutdown. Its timers are kept
/// by the runtime behind `timers`, so the runtime it runs on needs none of
/// its own (see [`idle`]).
pub async fn serve(
    listener: TcpListener,
    limits: Arc<Limits>,
    timers: Handle,
    mut shutdown: Shutdown,
    guard: TaskGuard,
) {
    let local = listener.local_addr().ok();
    let mut refusals = Throttle::new(WARNING_INTERVAL);
    let mut accept_errors = Throttle::new(WARNING_INTERVAL);
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    let mut failed_accepts: u64 = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.recv() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_peer_error(&e) => {
                debug!(error = %e, "a connection went away before it was accepted");
                continue;
            }
            Err(e) => {
                // Out of descriptors or memory: waiting is the only cure, and
                // retrying at once would spin on the same error.
                failed_accepts += 1;
                if let Some(suppressed) = accept_errors.event() {
                    error!(listener = ?local, error = %e, retry_in = ?backoff, suppressed,
                        "cannot accept connections; retrying (check `ulimit -n` / LimitNOFILE against max_connections)");
                }
                tokio::select! {
                    () = sleep_until(&timers, Some(Instant::now() + backoff)) => {}
                    () = shutdown.recv() => return,
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        if failed_accepts > 0 {
            info!(listener = ?local, failed_accepts, "accepting connections again");
            failed_accepts = 0;
            backoff = FIRST_ACCEPT_BACKOFF;
        }
        match limits.try_admit() {
            Some(permit) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    Arc::clone(&limits),
                    timers.clone(),
                    permit,
                    guard.clone(),
                ));
            }
            None => {
                drop(stream);
                if let Some(suppressed) = refusals.event() {
                    warn!(max_connections = limits.max_connections(), %peer, suppressed,
                        "connection limit reached; refusing new connections");
                }
            }
        }
    }
}

/// Errors that concern one connection attempt, not the listener.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The peer closed (or half-closed) and got everything back.
    PeerClosed,
    /// Nothing moved for `idle_timeout`.
    IdleTimeout,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    limits: Arc<Limits>,
    timers: Handle,
    permit: ConnectionPermit,
    guard: TaskGuard,
) {
    debug!(%peer, "connection opened");
    let mut echoed = 0u64;
    match echo(stream, &limits, &timers, &mut echoed).await {
        Ok(ending) => debug!(%peer, echoed, ?ending, "connection closed"),
        Err(e) => debug!(%peer, echoed, error = %e, "connection failed"),
    }
    drop(permit);
    drop(guard);
}

/// Echoes until the peer closes its side (then closes ours) or the
/// connection has been idle for the idle timeout.
async fn echo(
    stream: TcpStream,
    limits: &Limits,
    timers: &Handle,
    echoed: &mut u64,
) -> io::Result<Ending> {
    stream.set_nodelay(true)?;
    // When bytes last moved. The idle timer reads it when it fires and
    // moves on to the new deadline, which spares the echo a timer reset
    // per message.
    let activity = Stamp::now();
    let echo = pin!(echo_until_closed(stream, &activity, echoed));
    let idle = pin!(idle(limits, timers, &activity));
    // The echo wakes the task for every message, the idle timer rarely.
    match rarely::select(echo, idle).await {
        First::Busy(ended) => ended,
        First::Rare(()) => Ok(Ending::IdleTimeout),
    }
}

async fn echo_until_closed(
    mut stream: TcpStream,
    activity: &Stamp,
    echoed: &mut u64,
) -> io::Result<Ending> {
    loop {
        let step = std::future::poll_fn(|cx| {
            SCRATCH.with_borrow_mut(|scratch| poll_echo(&mut stream, cx, scratch))
        })
        .await?;
        match step {
            Step::Echoed(n) => *echoed += n as u64,
            Step::Unsent { read, rest } => {
                stream.write_all(&rest).await?;
                *echoed += read as u64;
            }
            Step::EndOfInput => {
                // Everything read has been written back: finish the half-close.
                stream.shutdown().await?;
                return Ok(Ending::PeerClosed);
            }
        }
        activity.set_now();
    }
}

/// Returns once nothing has moved for the idle timeout. A reload re-reads
/// the timeout, still counted from the latest activity, so a changed timeout
/// applies to connections that are already open.
///
/// The timer lives in the runtime behind `timers`, not in the one serving
/// the connection: a runtime with a timer pending sleeps in `epoll_wait`
/// with a timeout, and arming the kernel's timer for that on every wake-up
/// cost about 5% more CPU per round trip (a trip to the hypervisor on a
/// virtual machine). The control thread's runtime sleeps rarely enough not
/// to mind, and waking a connection when its timer fires is the exception.
async fn idle(limits: &Limits, timers: &Handle, activity: &Stamp) {
    let mut reloads = limits.watch_reloads();
    loop {
        let deadline = limits
            .idle_timeout()
            .map(|limit| Instant::from_std(activity.get()) + limit);
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return;
        }
        tokio::select! {
            () = sleep_until(timers, deadline) => {}
            changed = reloads.changed() => if changed.is_err() {
                // The daemon is going away; shutdown closes the connection.
                std::future::pending::<()>().await;
            },
        }
    }
}

/// Sleeps until `deadline` on the timers of `timers`, or forever without one.
fn sleep_until(timers: &Handle, deadline: Option<Instant>) -> impl Future<Output = ()> {
    let sleep = deadline.map(|deadline| rarely::sleep_on(timers, deadline));
    async move {
        match sleep {
            Some(sleep) => sleep.await,
            None => std::future::pending().await,
        }
    }
}

enum Step {
    Echoed(usize),
    /// `read` bytes came in; the kernel took only part, `rest` still has to go.
    Unsent {
        read: usize,
        rest: Vec<u8>,
    },
    EndOfInput,
}

/// Waits until there is something to read, then reads it into the scratch
/// buffer and writes it straight back.
///
/// Reading through `poll_read` rather than `try_read` matters: a read that
/// does not fill the buffer tells tokio the socket is drained, which saves
/// the read that would otherwise fail with `WouldBlock` after every message.
fn poll_echo(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    scratch: &mut [u8],
) -> Poll<io::Result<Step>> {
    let mut buf = ReadBuf::new(scratch);
    ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
    let read = buf.filled().len();
    if read == 0 {
        return Poll::Ready(Ok(Step::EndOfInput));
    }
    let written = match stream.try_write(&scratch[..read]) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Poll::Ready(Err(e)),
    };
    Poll::Ready(Ok(if written == read {
        Step::Echoed(read)
    } else {
        Step::Unsent {
            read,
            rest: scratch[written..read].to_vec(),
        }
    }))
}
