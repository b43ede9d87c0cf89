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
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::limits::{ConnectionPermit, Limits};
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

/// Accepts connections on one listener until shutdown.
pub async fn serve(
    listener: TcpListener,
    limits: Arc<Limits>,
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
                    () = tokio::time::sleep(backoff) => {}
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
    permit: ConnectionPermit,
    guard: TaskGuard,
) {
    debug!(%peer, "connection opened");
    let mut echoed = 0u64;
    match echo(stream, &limits, &mut echoed).await {
        Ok(ending) => debug!(%peer, echoed, ?ending, "connection closed"),
        Err(e) => debug!(%peer, echoed, error = %e, "connection failed"),
    }
    drop(permit);
    drop(guard);
}

/// Echoes until the peer closes its side, then closes ours.
async fn echo(mut stream: TcpStream, limits: &Limits, echoed: &mut u64) -> io::Result<Ending> {
    stream.set_nodelay(true)?;
    let mut reloads = limits.watch_reloads();
    loop {
        let readable = idle_wait(limits, &mut reloads, stream.readable()).await;
        if readable.transpose()?.is_none() {
            return Ok(Ending::IdleTimeout);
        }
        let step = SCRATCH.with_borrow_mut(|scratch| echo_from_scratch(&stream, scratch))?;
        match step {
            Step::NotReady => {}
            Step::Echoed(n) => *echoed += n as u64,
            Step::Unsent { read, rest } => {
                let written = idle_wait(limits, &mut reloads, stream.write_all(&rest)).await;
                if written.transpose()?.is_none() {
                    return Ok(Ending::IdleTimeout);
                }
                *echoed += read as u64;
            }
            Step::EndOfInput => {
                // Everything read has been written back: finish the half-close.
                stream.shutdown().await?;
                return Ok(Ending::PeerClosed);
            }
        }
    }
}

/// Runs `operation`, giving up once it has waited for the idle timeout.
/// `None` means the time ran out. A reload re-reads the timeout, still
/// counted from the start of the wait, so a changed timeout applies to
/// connections that are already waiting.
async fn idle_wait<T>(
    limits: &Limits,
    reloads: &mut watch::Receiver<()>,
    operation: impl Future<Output = T>,
) -> Option<T> {
    let since = Instant::now();
    let mut operation = std::pin::pin!(operation);
    loop {
        let deadline = limits.idle_timeout().map(|limit| since + limit);
        tokio::select! {
            output = &mut operation => return Some(output),
            () = sleep_until(deadline) => return None,
            Ok(()) = reloads.changed() => {}
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

enum Step {
    NotReady,
    Echoed(usize),
    /// `read` bytes came in; the kernel took only part, `rest` still has to go.
    Unsent {
        read: usize,
        rest: Vec<u8>,
    },
    EndOfInput,
}

/// One read into the scratch buffer and one write back, without waiting.
fn echo_from_scratch(stream: &TcpStream, scratch: &mut [u8]) -> io::Result<Step> {
    let read = match stream.try_read(scratch) {
        Ok(0) => return Ok(Step::EndOfInput),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::NotReady),
        Err(e) => return Err(e),
    };
    let written = match stream.try_write(&scratch[..read]) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if written == read {
        Ok(Step::Echoed(read))
    } else {
        Ok(Step::Unsent {
            read,
            rest: scratch[written..read].to_vec(),
        })
    }
}
