//! The client side: sending bytes to an echo server and judging what comes
//! back.
//!
//! Every subcommand ends in the same few ways, so one [`Verdict`] type maps
//! outcomes to exit codes for all of them, and monitoring scripts can treat
//! `send`, `check` and `bench` alike. Nothing here is Unix-specific: the
//! client builds and behaves the same on Windows.
//!
//! The client uses `shared` and never `server`. The hosts file parser
//! (`inventory`) lives here because the client is its only reader in Rust;
//! `deploy/echo-deploy` reads the same grammar, which
//! `tests/data/inventory-lines.json` pins for both.

pub mod bench;
pub mod check;
pub(crate) mod hexdump;
pub mod inventory;
pub mod mtu;
pub(crate) mod path;
pub mod pipe;
pub mod send;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use self::tls::Tls;
use crate::shared::address::HostPort;
use crate::shared::exit_code;
use crate::shared::protocol::MAX_DATAGRAM;

/// The largest payload a UDP datagram carries over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

pub use self::path::UDP_PROBE_HEADER;

/// After a whole TCP echo has arrived, how long to watch for a stray extra
/// byte. A correct server closes right after the half-close, so this
/// rarely costs anything.
const TRAILING_BYTES_WAIT: Duration = Duration::from_millis(100);

/// Prints a subcommand's result; see [`crate::shared::output::print`].
fn print_result(output: &[u8], code: i32) -> i32 {
    crate::shared::output::print("echo-client", output, code)
}

/// How an exchange ended. With several, the worst one decides the exit
/// code: a wrong echo (something corrupts data) is worse than a refused
/// TLS certificate (a person must act), which is worse than a timeout,
/// which is worse than a refused connection (the service is plainly down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Healthy,
    Unreachable,
    #[serde(rename = "timeout")]
    TimedOut,
    Certificate,
    Mismatch,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Healthy => exit_code::OK,
            Verdict::Mismatch => exit_code::MISMATCH,
            Verdict::Unreachable => exit_code::UNREACHABLE,
            Verdict::TimedOut => exit_code::TIMED_OUT,
            Verdict::Certificate => exit_code::CERTIFICATE,
        }
    }

    fn severity(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Unreachable => 1,
            Verdict::TimedOut => 2,
            Verdict::Certificate => 3,
            Verdict::Mismatch => 4,
        }
    }

    pub(crate) fn worst(self, other: Verdict) -> Verdict {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The verdict's name, the same in human output and in JSON.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Unreachable => "unreachable",
            Verdict::TimedOut => "timeout",
            Verdict::Certificate => "certificate",
            Verdict::Mismatch => "mismatch",
        }
    }
}

/// An exchange that did not succeed, and why, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) verdict: Verdict,
    /// The server ended the connection (closed or reset it) before the
    /// whole echo came back: unreachable, not corrupt, and counted apart by
    /// `bench`.
    pub(crate) closed: bool,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn mismatch(message: impl Into<String>) -> Failure {
        Failure {
            verdict: Verdict::Mismatch,
            closed: false,
            message: message.into(),
        }
    }

    pub(crate) fn timed_out(limit: Duration) -> Failure {
        Failure {
            verdict: Verdict::TimedOut,
            closed: false,
            message: format!(
                "no complete echo within {}",
                humantime::format_duration(limit)
            ),
        }
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            verdict: Verdict::Unreachable,
            closed: false,
            message: message.into(),
        }
    }

    pub(crate) fn certificate(message: impl Into<String>) -> Failure {
        Failure {
            verdict: Verdict::Certificate,
            ..Failure::unreachable(message)
        }
    }

    pub(crate) fn closed(message: impl Into<String>) -> Failure {
        Failure {
            closed: true,
            ..Failure::unreachable(message)
        }
    }

    /// Classifies an I/O error on a connection (over TLS, a refused
    /// certificate comes as one too).
    pub(crate) fn io(error: &io::Error) -> Failure {
        if let Some(failure) = tls::certificate_failure(error).or_else(|| tls::echoed_hello(error))
        {
            return failure;
        }
        let hint = match error.kind() {
            io::ErrorKind::ConnectionRefused => " (is the echo server running on that port?)",
            io::ErrorKind::TimedOut => {
                return Failure {
                    verdict: Verdict::TimedOut,
                    ..Failure::unreachable(error.to_string())
                };
            }
            _ => "",
        };
        Failure::unreachable(format!("{error}{hint}"))
    }

    /// Classifies an I/O error on an established TCP connection, where a
    /// reset or a broken pipe is the server ending it.
    pub(crate) fn stream(error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::closed(error.to_string()),
            _ => Failure::io(error),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The runtime for a client command: one thread, since what a command
/// does at once is waiting on the network (`bench` runs its load on threads
/// of its own).
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `exchange`, turning an overrun of `limit` into a timeout failure.
pub(crate) async fn within<T>(
    limit: Duration,
    exchange: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(Failure::timed_out(limit)))
}

/// Resolves a target; a name that does not resolve makes it unreachable.
pub(crate) async fn resolve(target: &HostPort) -> Result<Vec<SocketAddr>, Failure> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Failure::unreachable(format!("cannot resolve `{}`: {e}", target.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(Failure::unreachable(format!(
            "`{}` has no address",
            target.host
        )));
    }
    Ok(addrs)
}

/// Connects to the first address of `target` that accepts.
pub(crate) async fn connect_tcp(target: &HostPort) -> Result<TcpStream, Failure> {
    let mut last_failure = None;
    for addr in resolve(target).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true).map_err(|e| Failure::io(&e))?;
                return Ok(stream);
            }
            Err(e) => last_failure = Some(Failure::io(&e)),
        }
    }
    Err(last_failure.expect("resolve returns at least one address"))
}

/// The address a UDP socket binds to before it connects to `peer`: any
/// local address of the peer's family, any port.
pub(crate) fn udp_local_for(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// A UDP socket connected to `addr`, so that only its answers are received
/// and ICMP "port unreachable" surfaces as an error.
async fn udp_socket_to(addr: SocketAddr) -> Result<UdpSocket, Failure> {
    let socket = UdpSocket::bind(udp_local_for(addr))
        .await
        .map_err(|e| Failure::io(&e))?;
    socket.connect(addr).await.map_err(|e| Failure::io(&e))?;
    Ok(socket)
}

/// What came back for one payload, from where, and how fast.
#[derive(Debug)]
pub(crate) struct Echo {
    pub(crate) address: SocketAddr,
    pub(crate) bytes: Vec<u8>,
    /// From the first byte sent to the last expected byte received (after
    /// the TLS handshake, if any).
    pub(crate) rtt: Duration,
    /// Over TLS: what the handshake settled.
    pub(crate) tls: Option<tls::Session>,
}

/// One TCP exchange within `timeout`, over TLS with `tls`: connect, send
/// `payload` and half-close, read as many bytes back. Over TLS the
/// half-close (`close_notify`) waits for the whole echo: under TLS 1.2 it
/// asks the peer to close at once, discarding what it has not sent yet
/// (RFC 5246, 7.2.1), and TLS proxies such as stunnel may drop the rest of
/// an echo that is still on its way. If the time allows, one byte more is awaited (briefly: a
/// correct server closes at once), so an echo with extra bytes is caught;
/// one is proof enough, and reading on would let a server that streams
/// without end fill the memory.
pub(crate) async fn tcp_echo(
    target: &HostPort,
    tls: Option<&Tls>,
    payload: &[u8],
    timeout: Duration,
) -> Result<Echo, Failure> {
    let deadline = Instant::now() + timeout;
    let stream = within(timeout, connect_tcp(target)).await?;
    let address = stream.peer_addr().map_err(|e| Failure::io(&e))?;
    let Some(tls) = tls else {
        return echo_over(stream, address, payload, deadline, timeout, false)
            .await
            .map(|(echo, _)| echo);
    };
    let stream = until(deadline, timeout, tls.handshake(stream, target)).await?;
    let session = tls::Session::of(&stream);
    let (echo, _) = echo_over(stream, address, payload, deadline, timeout, true).await?;
    Ok(Echo {
        tls: Some(session),
        ..echo
    })
}

/// A plain [`tcp_echo`], handing back the connection as well, for what
/// only it can still tell (the MSS it ended up with, for Linux's `mtu`).
#[cfg(target_os = "linux")]
pub(crate) async fn tcp_echo_keeping_stream(
    target: &HostPort,
    payload: &[u8],
    timeout: Duration,
) -> Result<(Echo, TcpStream), Failure> {
    let deadline = Instant::now() + timeout;
    let stream = within(timeout, connect_tcp(target)).await?;
    let address = stream.peer_addr().map_err(|e| Failure::io(&e))?;
    echo_over(stream, address, payload, deadline, timeout, false).await
}

/// [`within`], for a part of an exchange that must end by `deadline`,
/// `limit` after the whole began.
async fn until<T>(
    deadline: Instant,
    limit: Duration,
    part: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout_at(deadline, part)
        .await
        .unwrap_or_else(|_| Err(Failure::timed_out(limit)))
}

/// The exchange of [`tcp_echo`] on a connected stream, plain or TLS,
/// half-closed once the payload is sent or, `after_echo`, once its echo is
/// back.
async fn echo_over<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    address: SocketAddr,
    payload: &[u8],
    deadline: Instant,
    timeout: Duration,
    after_echo: bool,
) -> Result<(Echo, S), Failure> {
    let (mut stream, mut echo) = until(deadline, timeout, async {
        let started = Instant::now();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let write = async {
            writer.write_all(payload).await?;
            if !after_echo {
                writer.shutdown().await?;
            }
            Ok(())
        };
        let read = async {
            let mut bytes = Vec::with_capacity(payload.len());
            (&mut reader)
                .take(payload.len() as u64)
                .read_to_end(&mut bytes)
                .await?;
            Ok((bytes, Instant::now()))
        };
        let (written, read) = tokio::join!(write, read);
        let (bytes, finished) = match (written, read) {
            (Ok(()), Ok(read)) => read,
            // Over TLS, why a server cut the connection short (it wants a
            // client certificate, say) comes as an alert that only the read
            // side sees; a write into the closed connection says less.
            (_, Err(e)) if tls::certificate_failure(&e).is_some() => {
                return Err(Failure::io(&e));
            }
            (Err(e), _) | (Ok(()), Err(e)) => return Err(Failure::stream(&e)),
        };
        if after_echo {
            writer.shutdown().await.map_err(|e| Failure::stream(&e))?;
        }
        Ok((
            reader.unsplit(writer),
            Echo {
                address,
                bytes,
                rtt: finished - started,
                tls: None,
            },
        ))
    })
    .await?;
    if echo.bytes.len() == payload.len() {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(TRAILING_BYTES_WAIT);
        let mut extra = [0u8; 1];
        if let Ok(Ok(1)) = tokio::time::timeout(wait, stream.read(&mut extra)).await {
            echo.bytes.extend_from_slice(&extra);
        }
    }
    Ok((echo, stream))
}

/// One UDP datagram and its answer within `timeout`, trying the target's
/// addresses in turn while they refuse (ICMP port unreachable).
pub(crate) async fn udp_echo(
    target: &HostPort,
    payload: &[u8],
    timeout: Duration,
) -> Result<Echo, Failure> {
    within(timeout, async {
        let mut last_failure = None;
        for address in resolve(target).await? {
            match udp_exchange(address, payload).await {
                Err(failure) if failure.verdict == Verdict::Unreachable => {
                    last_failure = Some(failure)
                }
                result => return result,
            }
        }
        Err(last_failure.expect("resolve returns at least one address"))
    })
    .await
}

async fn udp_exchange(address: SocketAddr, payload: &[u8]) -> Result<Echo, Failure> {
    let socket = udp_socket_to(address).await?;
    let started = Instant::now();
    socket.send(payload).await.map_err(|e| Failure::io(&e))?;
    // Always room for the largest datagram: a smaller buffer makes an
    // oversized answer an error on Windows instead of a visible mismatch.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let len = socket.recv(&mut buf).await.map_err(|e| Failure::io(&e))?;
    let rtt = started.elapsed();
    buf.truncate(len);
    Ok(Echo {
        address,
        bytes: buf,
        rtt,
        tls: None,
    })
}

/// Judges an echo. Bytes that differ are a mismatch; an echo that is a
/// correct but incomplete prefix means the connection ended early, which is
/// the server going away (or refusing at its connection limit), not a
/// corruption.
pub(crate) fn judge_echo(sent: &[u8], echo: &[u8]) -> Result<(), Failure> {
    if let Some(at) = sent.iter().zip(echo).position(|(a, b)| a != b) {
        return Err(Failure::mismatch(format!(
            "the echo differs from what was sent at byte {at} of {}",
            sent.len()
        )));
    }
    if echo.len() > sent.len() {
        // Not how many more: over TCP, only the first extra byte is read.
        return Err(Failure::mismatch(format!(
            "the echo has more bytes than the {} sent",
            sent.len()
        )));
    }
    if echo.len() < sent.len() {
        return Err(Failure::closed(format!(
            "the server closed the connection after echoing {} of {} bytes",
            echo.len(),
            sent.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins() {
        use Verdict::*;
        assert_eq!(Healthy.worst(Unreachable), Unreachable);
        assert_eq!(TimedOut.worst(Unreachable), TimedOut);
        assert_eq!(Unreachable.worst(Mismatch), Mismatch);
        assert_eq!(Mismatch.worst(TimedOut), Mismatch);
        assert_eq!(TimedOut.worst(Certificate), Certificate);
        assert_eq!(Mismatch.worst(Certificate), Mismatch);
    }

    #[test]
    fn echoes_are_judged() {
        assert_eq!(judge_echo(b"abc", b"abc"), Ok(()));
        let wrong = judge_echo(b"abc", b"abd").unwrap_err();
        assert_eq!(
            (wrong.verdict, wrong.message.as_str()),
            (
                Verdict::Mismatch,
                "the echo differs from what was sent at byte 2 of 3"
            )
        );
        assert_eq!(
            judge_echo(b"abc", b"abcd").unwrap_err().verdict,
            Verdict::Mismatch
        );
        let short = judge_echo(b"abc", b"ab").unwrap_err();
        assert_eq!((short.verdict, short.closed), (Verdict::Unreachable, true));
        assert!(
            short.message.contains("after echoing 2 of 3 bytes"),
            "{short}"
        );
    }
}
