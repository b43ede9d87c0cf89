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
//! command ends once the server has sent everything back and closed.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Semaphore;

use super::{Failure, connect_tcp, exit_code, within};
use crate::address::HostPort;

/// Bytes sent and not yet echoed, at most.
const MAX_UNECHOED: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct PipeOptions {
    pub target: HostPort,
    /// Bound on connecting; the transfer itself may take as long as it needs.
    pub connect_timeout: Duration,
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
            exit_code::LOCAL_IO
        }
    }
}

/// Bytes in flight, in order, and room for more.
struct Unechoed {
    bytes: Mutex<VecDeque<u8>>,
    room: Semaphore,
}

async fn pipe(options: &PipeOptions) -> Result<(), PipeError> {
    let stream = within(options.connect_timeout, connect_tcp(&options.target))
        .await
        .map_err(PipeError::Remote)?;
    let (from_server, to_server) = stream.into_split();
    let unechoed = Arc::new(Unechoed {
        bytes: Mutex::new(VecDeque::new()),
        room: Semaphore::new(MAX_UNECHOED),
    });
    let upload = upload(to_server, Arc::clone(&unechoed));
    let download = download(from_server, Arc::clone(&unechoed));
    tokio::pin!(upload, download);
    let mut input_done = false;
    let echoed = loop {
        tokio::select! {
            sent = &mut upload, if !input_done => {
                sent?;
                input_done = true;
            }
            echoed = &mut download => break echoed?,
        }
    };
    let unechoed = unechoed.bytes.lock().expect("never poisoned").len();
    if !input_done || unechoed > 0 {
        return Err(PipeError::Remote(Failure::closed(format!(
            "the server closed the connection after echoing {echoed} bytes, {unechoed} short"
        ))));
    }
    Ok(())
}

/// Standard input to the server; returns once input has ended and the
/// sending side is shut down.
async fn upload(mut to_server: OwnedWriteHalf, unechoed: Arc<Unechoed>) -> Result<(), PipeError> {
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
        unechoed
            .bytes
            .lock()
            .expect("never poisoned")
            .extend(&buf[..n]);
        to_server
            .write_all(&buf[..n])
            .await
            .map_err(|e| PipeError::Remote(Failure::stream(&e)))?;
    }
    to_server
        .shutdown()
        .await
        .map_err(|e| PipeError::Remote(Failure::stream(&e)))
}

/// The server's bytes, checked and copied to standard output, until the
/// server closes; returns how many there were.
async fn download(
    mut from_server: OwnedReadHalf,
    unechoed: Arc<Unechoed>,
) -> Result<u64, PipeError> {
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; CHUNK];
    let mut echoed = 0u64;
    loop {
        let n = from_server
            .read(&mut buf)
            .await
            .map_err(|e| PipeError::Remote(Failure::stream(&e)))?;
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

/// Compares incoming bytes with the oldest unechoed ones and retires them.
fn check(incoming: &[u8], unechoed: &Unechoed, echoed_before: u64) -> Result<(), PipeError> {
    let mut pending = unechoed.bytes.lock().expect("never poisoned");
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
    Ok(())
}

fn local(what: &str, error: &io::Error) -> PipeError {
    PipeError::Local(format!("{what}: {error}"))
}
