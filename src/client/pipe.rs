//! `echo-client pipe`: standard input to the server, the echo to standard
//! output, like `nc`, but checked: every byte that comes back is compared
//! with the byte sent at that position while the data streams, so
//! `echo-client pipe < big.iso > copy.iso` fails loudly instead of leaving a
//! quietly different copy.
//!
//! Bytes sent but not yet echoed are kept for the comparison, at most
//! `MAX_UNECHOED` of them: beyond that, reading standard input waits for the
//! echo to catch up, so memory stays bounded whatever the server does. When
//! input ends, the sending side is shut down (a TCP half-close) and the
//! command ends once the server has sent everything back and closed. Over
//! TLS the half-close (`close_notify`) waits until the echo has caught up,
//! as in `tcp_echo`: a TLS 1.2 peer, or stunnel, may close at once on it
//! and drop the rest of the echo.
//!
//! A transfer may take as long as it needs, but a server that owes an echo
//! (or, once input has ended, the end of its stream) and sends nothing for
//! the timeout is given up on. Quiet standard input is no fault of the
//! server's: while it owes nothing, no time counts.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::tls::Tls;
use super::{Failure, Verdict, connect_tcp, within};
use crate::shared::address::HostPort;
use crate::shared::exit_code;

/// Bytes sent and not yet echoed, at most.
const MAX_UNECHOED: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct PipeOptions {
    pub target: HostPort,
    /// Bound on connecting, and on waiting for the server while it owes
    /// something and sends nothing.
    pub timeout: Duration,
    /// Over TLS, with this configuration.
    pub tls: Option<Arc<Tls>>,
}

/// Why a pipe failed: at the server's end, or at ours (standard input or
/// output), which gets its own exit code.
enum PipeError {
    Remote(Failure),
    Local(String),
}

pub async fn run(options: PipeOptions) -> i32 {
    match pipe(&options).await {
        Ok(()) => exit_code::OK,
        Err(PipeError::Remote(failure)) => {
            eprintln!("echo-client: {}: {failure}", options.target);
            failure.verdict.exit_code()
        }
        Err(PipeError::Local(message)) => {
            eprintln!("echo-client: {message}");
            exit_code::IO_ERROR
        }
    }
}

/// Bytes in flight, in order, and room for more.
struct Unechoed {
    owed: Mutex<Owed>,
    room: Semaphore,
}

/// What the server owes: the echo of the bytes in flight and, once input
/// has ended, the end of its stream.
#[derive(Default)]
struct Owed {
    bytes: VecDeque<u8>,
    input_ended: bool,
    /// Since when the server has owed something without sending any of it;
    /// `None` while it owes nothing.
    since: Option<Instant>,
}

impl Unechoed {
    fn owed(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().expect("never poisoned")
    }
}

impl Owed {
    /// Their echo is owed now; the clock starts unless it already runs.
    fn sent(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes);
        self.since.get_or_insert_with(Instant::now);
    }

    /// The end of the server's stream is owed now, after any echo.
    fn end_of_input(&mut self) {
        self.input_ended = true;
        self.since.get_or_insert_with(Instant::now);
    }
}

async fn pipe(options: &PipeOptions) -> Result<(), PipeError> {
    let stream = within(options.timeout, connect_tcp(&options.target))
        .await
        .map_err(PipeError::Remote)?;
    match &options.tls {
        None => pipe_over(stream, options.timeout, false).await,
        Some(tls) => {
            let stream = within(options.timeout, tls.handshake(stream, &options.target))
                .await
                .map_err(PipeError::Remote)?;
            pipe_over(stream, options.timeout, true).await
        }
    }
}

/// The pipe on a connected stream, half-closed when input ends or,
/// `after_echo`, once the echo has caught up with it.
async fn pipe_over<S: AsyncRead + AsyncWrite>(
    stream: S,
    timeout: Duration,
    after_echo: bool,
) -> Result<(), PipeError> {
    let (from_server, to_server) = tokio::io::split(stream);
    let unechoed = Arc::new(Unechoed {
        owed: Mutex::default(),
        room: Semaphore::new(MAX_UNECHOED),
    });
    let upload = upload(to_server, Arc::clone(&unechoed), after_echo);
    let download = download(from_server, Arc::clone(&unechoed), timeout);
    tokio::pin!(upload, download);
    let mut input_done = false;
    let echoed = loop {
        tokio::select! {
            sent = &mut upload, if !input_done => {
                if let Err(PipeError::Remote(failure)) = sent {
                    return Err(PipeError::Remote(why_cut_off(failure, &mut download).await));
                }
                sent?;
                input_done = true;
            }
            echoed = &mut download => break echoed?,
        }
    };
    let unechoed = unechoed.owed().bytes.len();
    if !input_done || unechoed > 0 {
        return Err(PipeError::Remote(Failure::closed(format!(
            "the server closed the connection after echoing {echoed} bytes, {unechoed} short"
        ))));
    }
    Ok(())
}

/// Over TLS, a server that refuses the client (it wants a client
/// certificate, say) sends an alert and closes; sending may fail first,
/// with only a broken pipe to show. The alert is the download's to read:
/// it is given a moment to tell.
async fn why_cut_off(
    failure: Failure,
    download: impl Future<Output = Result<u64, PipeError>>,
) -> Failure {
    const ALERT_WAIT: Duration = Duration::from_millis(100);
    match tokio::time::timeout(ALERT_WAIT, download).await {
        Ok(Err(PipeError::Remote(why))) if why.verdict == Verdict::Certificate => why,
        _ => failure,
    }
}

/// Standard input to the server; returns once input has ended and the
/// sending side is shut down (`after_echo`: once all of it was echoed).
async fn upload(
    mut to_server: impl AsyncWrite + Unpin,
    unechoed: Arc<Unechoed>,
    after_echo: bool,
) -> Result<(), PipeError> {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stdin
            .read(&mut buf)
            .await
            .map_err(|e| local("cannot read standard input", &e))?;
        if n == 0 {
            break;
        }
        let room = unechoed
            .room
            .acquire_many(n as u32)
            .await
            .expect("the semaphore is never closed");
        room.forget();
        unechoed.owed().sent(&buf[..n]);
        to_server
            .write_all(&buf[..n])
            .await
            .map_err(|e| PipeError::Remote(Failure::stream(&e)))?;
    }
    if after_echo {
        // Every byte echoed gives its room back: all of it is there again
        // once nothing is owed.
        let _all_echoed = unechoed
            .room
            .acquire_many(MAX_UNECHOED as u32)
            .await
            .expect("the semaphore is never closed");
    }
    unechoed.owed().end_of_input();
    to_server
        .shutdown()
        .await
        .map_err(|e| PipeError::Remote(Failure::stream(&e)))
}

/// The server's bytes, checked and copied to standard output, until the
/// server closes or owes something for `timeout` without sending any of it;
/// returns how many there were.
async fn download(
    mut from_server: impl AsyncRead + Unpin,
    unechoed: Arc<Unechoed>,
    timeout: Duration,
) -> Result<u64, PipeError> {
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; CHUNK];
    let mut echoed = 0u64;
    loop {
        let n = loop {
            // While nothing is owed, this only looks again a timeout later.
            let since = unechoed.owed().since.unwrap_or_else(Instant::now);
            if let Ok(read) =
                tokio::time::timeout_at(since + timeout, from_server.read(&mut buf)).await
            {
                break read.map_err(|e| PipeError::Remote(Failure::stream(&e)))?;
            }
            let owed = unechoed.owed();
            if owed.since.is_some_and(|since| since.elapsed() >= timeout) {
                return Err(PipeError::Remote(Failure {
                    verdict: Verdict::TimedOut,
                    closed: false,
                    message: format!(
                        "the server sent nothing for {} ({} bytes sent, {echoed} echoed); \
                         a slow server needs a longer --timeout",
                        humantime::format_duration(timeout),
                        echoed + owed.bytes.len() as u64
                    ),
                }));
            }
        };
        if n == 0 {
            break;
        }
        check(&buf[..n], &unechoed, echoed)?;
        unechoed.room.add_permits(n);
        echoed += n as u64;
        stdout
            .write_all(&buf[..n])
            .await
            .map_err(|e| local("cannot write standard output", &e))?;
    }
    stdout
        .flush()
        .await
        .map_err(|e| local("cannot write standard output", &e))?;
    Ok(echoed)
}

/// Compares incoming bytes with the oldest unechoed ones and retires them;
/// the server, having sent something, starts afresh on what it still owes.
fn check(incoming: &[u8], unechoed: &Unechoed, echoed_before: u64) -> Result<(), PipeError> {
    let mut owed = unechoed.owed();
    let pending = &mut owed.bytes;
    if incoming.len() > pending.len() {
        return Err(PipeError::Remote(Failure::mismatch(format!(
            "the server sent {} bytes more than it was sent",
            incoming.len() - pending.len()
        ))));
    }
    if let Some(at) = incoming
        .iter()
        .zip(pending.iter())
        .position(|(a, b)| a != b)
    {
        return Err(PipeError::Remote(Failure::mismatch(format!(
            "the echo differs from what was sent at byte {}",
            echoed_before + at as u64
        ))));
    }
    pending.drain(..incoming.len());
    owed.since = (!owed.bytes.is_empty() || owed.input_ended).then(Instant::now);
    Ok(())
}

fn local(what: &str, error: &io::Error) -> PipeError {
    PipeError::Local(format!("{what}: {error}"))
}
