//! One TLS connection's echo: rustls's state machine between the socket and
//! the worker's scratch buffer.
//!
//! It keeps the plain echo's rule that bounds memory: nothing more is read
//! from the socket while encrypted bytes wait to be sent, so a peer that
//! sends but never reads costs one read's worth of records, and the
//! kernel's flow control does the rest. Decrypted bytes pass through the
//! worker's scratch buffer straight into the next outgoing records. What a
//! connection owns while idle is rustls's: its state, keys and a 4 KiB read
//! buffer (docs/TLS.md has the measured total).
//!
//! The half-close is TLS's: when the peer has sent everything (its
//! close_notify, or the end of the stream), everything read is sent back,
//! then a close_notify, then the TCP half-close.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::server::event_loop::{Ending, READS_PER_TURN, Turn};
use crate::server::metrics::counters::WorkerCounters;
use crate::shared::readiness::{Readiness, SHORT_READ_DRAINS};
use crate::shared::socket_calls;

/// A TLS connection's state beside its socket.
pub(crate) struct Session {
    tls: ServerConnection,
    /// Reported readable and not read dry since (readiness is reported
    /// once per change).
    readable: bool,
    /// The peer has closed its end (or there is an error to report): read
    /// on until a read says so, whatever a short read suggests.
    closing: bool,
    /// The peer has sent all it will.
    input_ended: bool,
    /// Our close_notify is queued.
    said_goodbye: bool,
    /// A byte came: a peer that closes before that is a health check or a
    /// port scan, not a failed handshake.
    received: bool,
}

/// What a turn did.
pub(crate) struct Served {
    pub(crate) turn: Turn,
    /// Bytes moved either way, so the connection is not idle.
    pub(crate) moved: bool,
    /// Decrypted bytes queued back to the peer.
    pub(crate) echoed: u64,
}

/// Why a TLS connection ended before its time.
pub(crate) enum Failure {
    /// The handshake failed (the alert that says why has been sent).
    Handshake(rustls::Error),
    /// The peer closed during the handshake.
    Abandoned,
    /// The handshake was not complete this long after the accept
    /// (`tls_handshake_timeout`, or `idle_timeout` if shorter).
    TimedOut(Duration),
    /// After the handshake: a broken record, or the socket failed.
    Io(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Handshake(e) => e.fmt(f),
            Failure::Abandoned => f.write_str("the peer closed during the handshake"),
            Failure::TimedOut(limit) => write!(
                f,
                "no complete handshake {limit:?} after the accept (tls_handshake_timeout, or idle_timeout if shorter)"
            ),
            Failure::Io(e) => e.fmt(f),
        }
    }
}

impl Session {
    pub(super) fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            tls: ServerConnection::new(config)?,
            readable: false,
            closing: false,
            input_ended: false,
            said_goodbye: false,
            received: false,
        })
    }

    /// Does what the readiness allows, within one turn: sends what waits,
    /// reads, decrypts and echoes what came, and finishes a half-close.
    pub(crate) fn echo(
        &mut self,
        socket: &TcpStream,
        ready: Readiness,
        scratch: &mut [u8],
        counters: &WorkerCounters,
    ) -> Result<Served, Failure> {
        self.readable |= ready.readable || ready.closing;
        self.closing |= ready.closing;
        let mut served = Served {
            turn: Turn::Waiting,
            moved: false,
            echoed: 0,
        };
        let mut reads = 0;
        loop {
            if !self.flush(socket, counters, &mut served.moved)? {
                // The writable event brings it back.
                return Ok(served);
            }
            if self.input_ended {
                if self.tls.is_handshaking() {
                    return Err(Failure::Abandoned);
                }
                if !self.said_goodbye {
                    self.tls.send_close_notify();
                    self.said_goodbye = true;
                    continue;
                }
                // Closing the socket sends the FIN after it.
                served.turn = Turn::Ended(Ending::PeerClosed);
                return Ok(served);
            }
            if !self.readable {
                return Ok(served);
            }
            if reads == READS_PER_TURN {
                served.turn = Turn::Unfinished;
                return Ok(served);
            }
            reads += 1;
            let mut wire = Wire::new(socket);
            match self.tls.read_tls(&mut wire) {
                Ok(0) if self.tls.is_handshaking() && !self.received => {
                    served.turn = Turn::Ended(Ending::PeerClosed);
                    return Ok(served);
                }
                Ok(0) => {
                    // The end of the stream without close_notify: echoed
                    // all the same, as a plain half-close is.
                    self.input_ended = true;
                    continue;
                }
                Ok(read) => {
                    self.received = true;
                    served.moved = true;
                    counters.bytes_received.add(read as u64);
                    // As in the plain echo: no read that fails with
                    // WouldBlock after every message.
                    if wire.drained && SHORT_READ_DRAINS && !self.closing {
                        self.readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Io(e)),
            }
            let state = match self.tls.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // The alert that tells the peer why, if the socket
                    // takes it now.
                    let _ = self.tls.write_tls(&mut Wire::new(socket));
                    return Err(if self.tls.is_handshaking() {
                        Failure::Handshake(e)
                    } else {
                        Failure::Io(io::Error::new(io::ErrorKind::InvalidData, e))
                    });
                }
            };
            let (mut pending, peer_closed) =
                (state.plaintext_bytes_to_read(), state.peer_has_closed());
            while pending > 0 {
                let take = pending.min(scratch.len());
                let read = self
                    .tls
                    .reader()
                    .read(&mut scratch[..take])
                    .map_err(Failure::Io)?;
                self.tls
                    .writer()
                    .write_all(&scratch[..read])
                    .map_err(Failure::Io)?;
                served.echoed += read as u64;
                pending -= read;
            }
            self.input_ended |= peer_closed;
        }
    }

    /// Whether the handshake is still under way.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Sends a close_notify, as far as the socket takes it now: the daemon
    /// is closing the connection (idle, or shutting down).
    pub(crate) fn close(&mut self, socket: &TcpStream) {
        if !self.tls.is_handshaking() && !self.said_goodbye {
            self.tls.send_close_notify();
            self.said_goodbye = true;
        }
        while self.tls.wants_write() {
            if !matches!(self.tls.write_tls(&mut Wire::new(socket)), Ok(written) if written > 0) {
                break;
            }
        }
    }

    /// Sends what rustls has ready. `false` when the socket takes no more.
    fn flush(
        &mut self,
        socket: &TcpStream,
        counters: &WorkerCounters,
        moved: &mut bool,
    ) -> Result<bool, Failure> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Wire::new(socket)) {
                Ok(0) => return Err(Failure::Io(io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    *moved = true;
                    counters.bytes_sent.add(written as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
        Ok(true)
    }
}

/// The socket, as rustls reads and writes it: through the same calls as the
/// plain echo (see `socket_calls`).
struct Wire<'a> {
    socket: &'a TcpStream,
    /// The last read got less than rustls asked for: the socket is empty.
    drained: bool,
}

impl Wire<'_> {
    fn new(socket: &TcpStream) -> Wire<'_> {
        Wire {
            socket,
            drained: false,
        }
    }
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = socket_calls::recv(self.socket, buf)?;
        self.drained = read < buf.len();
        Ok(read)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket_calls::send(self.socket, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
