//! The MTU search on Linux: probes of one size after another on a connected
//! UDP socket with the Don't-Fragment bit set (IPv4) or fragmentation off
//! (IPv6), bisecting between the largest size that came back and the
//! smallest that did not.
//!
//! Why it is built this way: a path says "too big" in one of two ways. If
//! ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) gets
//! through, the kernel records the path MTU and the socket reports
//! `EMSGSIZE` (on that send, or on the next send or receive); `IP_MTU` then
//! tells the limit, and the next probe tries just that. If the ICMP is
//! dropped (a black hole), a too-big probe is simply never answered, which
//! looks like loss; so a size counts as too big only after `attempts`
//! probes of it went unanswered, and the smallest probe must come back
//! first, so that a dead server is not reported as a tiny MTU. The search
//! is bounded: about log2(65,507) ≈ 16 sizes, each at most `attempts` ×
//! `timeout`; the report says how long it took.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
use serde::Serialize;

use super::MtuOptions;
use crate::client::path::{KIND_MTU, ProbeHeader, UDP_PROBE_HEADER};
use crate::client::{
    Failure, MAX_UDP_PAYLOAD, judge_echo, print_result, resolve, tcp_echo_keeping_stream,
    udp_local_for,
};
use crate::shared::exit_code;
use crate::shared::protocol::MAX_DATAGRAM;

/// IPv4 (20) and UDP (8) header bytes around a payload.
const IPV4_UDP_OVERHEAD: usize = 28;
/// IPv6 (40) and UDP (8) header bytes around a payload.
const IPV6_UDP_OVERHEAD: usize = 48;
/// The largest payload a UDP datagram carries over IPv6 (without jumbograms).
const MAX_UDP_PAYLOAD_V6: usize = 65_527;
/// Bytes sent through the TCP connection before its MSS is read: enough
/// for many full-size segments each way, so the report also proves that
/// segments of that size cross the path.
const TCP_PAYLOAD: usize = 64 * 1024;

pub(super) async fn run(options: MtuOptions) -> i32 {
    let outcome = if options.tcp {
        tcp_report(&options).await
    } else {
        udp_report(&options).await
    };
    match outcome {
        Ok(report) => {
            let text = if options.json {
                let mut json = serde_json::to_string_pretty(&report).expect("serialisable");
                json.push('\n');
                json
            } else {
                report.human()
            };
            print_result(text.as_bytes(), exit_code::OK)
        }
        Err(failure) => {
            eprintln!("echo-client: mtu {}: {failure}", options.target);
            failure.verdict.exit_code()
        }
    }
}

/// What `mtu` found, as JSON shows it.
#[derive(Debug, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
enum Report {
    Udp(UdpFindings),
    Tcp(TcpFindings),
}

#[derive(Debug, Serialize)]
struct UdpFindings {
    target: String,
    address: SocketAddr,
    /// The largest payload that came back intact, plus the IP and UDP
    /// headers.
    path_mtu: usize,
    largest_payload: usize,
    /// The MTU the kernel knew for the route when the search began (the
    /// first hop's, unless a path MTU was already cached).
    first_hop_mtu: Option<usize>,
    limit: Limit,
    sizes_tried: u32,
    /// Unanswered probes of one size before it counts as too big.
    attempts_per_size: u32,
    probes_sent: u32,
    seconds: f64,
}

/// What set the limit the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Limit {
    /// Everything up to the first hop's MTU (or the protocol's largest
    /// datagram) came back: nothing further on is smaller.
    FirstHop,
    /// The path answered a larger probe with ICMP "fragmentation needed" or
    /// "packet too big".
    Signalled,
    /// Larger probes vanished without an ICMP answer: a black hole.
    BlackHole,
}

#[derive(Debug, Serialize)]
struct TcpFindings {
    target: String,
    address: SocketAddr,
    /// The maximum segment size the connection ended up with (TCP_MAXSEG:
    /// the peer's advertised MSS, after any clamp on the way, less the TCP
    /// options this connection carries in each segment).
    mss: u32,
    echoed_bytes: usize,
    seconds: f64,
}

impl Report {
    fn human(&self) -> String {
        match self {
            Report::Udp(found) => {
                let how = match found.limit {
                    Limit::FirstHop => {
                        "the first hop's limit: every size up to it came back".to_string()
                    }
                    Limit::Signalled => "signalled: the path answered larger probes with ICMP \
                         \"fragmentation needed\" / \"packet too big\""
                        .to_string(),
                    Limit::BlackHole => format!(
                        "a black hole: probes of {} bytes and more were lost without any ICMP answer \
                         ({} of each size)",
                        found.largest_payload + 1,
                        found.attempts_per_size
                    ),
                };
                format!(
                    "{} ({}) over UDP: path MTU {} bytes (largest echo {} bytes)\n  \
                     limit: {how}\n  search: {} sizes, {} probes, {:.3} s{}\n",
                    found.target,
                    found.address,
                    found.path_mtu,
                    found.largest_payload,
                    found.sizes_tried,
                    found.probes_sent,
                    found.seconds,
                    found
                        .first_hop_mtu
                        .map(|mtu| format!(", first hop MTU {mtu}"))
                        .unwrap_or_default(),
                )
            }
            Report::Tcp(found) => format!(
                "{} ({}) over TCP: MSS {} bytes ({} bytes echoed intact in {:.3} s)\n",
                found.target, found.address, found.mss, found.echoed_bytes, found.seconds
            ),
        }
    }
}

async fn tcp_report(options: &MtuOptions) -> Result<Report, Failure> {
    let payload: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(TCP_PAYLOAD)
        .collect();
    let started = Instant::now();
    let (echo, stream) =
        tcp_echo_keeping_stream(&options.target, &payload, options.timeout).await?;
    judge_echo(&payload, &echo.bytes)?;
    let mss = socket2::SockRef::from(&stream)
        .tcp_mss()
        .map_err(|e| Failure::io(&e))?;
    Ok(Report::Tcp(TcpFindings {
        target: options.target.to_string(),
        address: echo.address,
        mss,
        echoed_bytes: echo.bytes.len(),
        seconds: started.elapsed().as_secs_f64(),
    }))
}

async fn udp_report(options: &MtuOptions) -> Result<Report, Failure> {
    let address = resolve(&options.target).await?[0];
    let (timeout, attempts) = (options.timeout, options.attempts);
    let target = options.target.to_string();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut prober =
            Prober::connect(address, timeout, attempts).map_err(|e| Failure::io(&e))?;
        let first_hop_mtu = prober.known_mtu();
        let ceiling = first_hop_mtu
            .map_or(prober.max_payload, |mtu| {
                mtu.saturating_sub(prober.overhead)
            })
            .clamp(UDP_PROBE_HEADER, prober.max_payload);
        let overhead = prober.overhead;
        let found = search(UDP_PROBE_HEADER, ceiling, overhead, |size| {
            prober.probe(size)
        })?;
        Ok(Report::Udp(UdpFindings {
            target,
            address,
            path_mtu: found.largest_payload + overhead,
            largest_payload: found.largest_payload,
            first_hop_mtu,
            limit: found.limit,
            sizes_tried: found.sizes_tried,
            attempts_per_size: attempts,
            probes_sent: prober.probes_sent,
            seconds: started.elapsed().as_secs_f64(),
        }))
    })
    .await
    .expect("the search does not panic")
}

/// How one size fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Echoed,
    /// The kernel refused it as larger than the path MTU it knows, which
    /// it tells if it can.
    TooBig {
        path_mtu: Option<usize>,
    },
    /// No probe of this size came back.
    Lost,
}

#[derive(Debug, PartialEq, Eq)]
struct Found {
    largest_payload: usize,
    limit: Limit,
    sizes_tried: u32,
}

/// The largest payload from `floor` to `ceiling` that `probe` reports
/// echoed. `floor` must come back, else the server or the path is down
/// whatever the MTU. The first size tried is `ceiling` (most paths carry
/// their first hop's MTU); after a signalled limit, that limit; otherwise
/// the middle of what is still open.
fn search(
    floor: usize,
    ceiling: usize,
    overhead: usize,
    mut probe: impl FnMut(usize) -> Result<Outcome, Failure>,
) -> Result<Found, Failure> {
    let mut found = Found {
        largest_payload: floor,
        limit: Limit::FirstHop,
        sizes_tried: 1,
    };
    match probe(floor)? {
        Outcome::Echoed => {}
        Outcome::Lost => {
            return Err(Failure {
                verdict: crate::client::Verdict::TimedOut,
                ..Failure::unreachable(format!(
                    "not even a {floor}-byte probe came back: the server or the path is down"
                ))
            });
        }
        Outcome::TooBig { .. } => {
            return Err(Failure::unreachable(format!(
                "the kernel refuses even a {floor}-byte datagram as too big"
            )));
        }
    }
    let mut highest_open = ceiling;
    let mut next = ceiling;
    while found.largest_payload < highest_open {
        found.sizes_tried += 1;
        match probe(next)? {
            Outcome::Echoed => found.largest_payload = next,
            Outcome::TooBig { path_mtu } => {
                found.limit = Limit::Signalled;
                let signalled = path_mtu.map_or(next - 1, |mtu| mtu.saturating_sub(overhead));
                highest_open = signalled.min(next - 1).max(found.largest_payload);
                next = highest_open;
                continue;
            }
            Outcome::Lost => {
                found.limit = Limit::BlackHole;
                highest_open = next - 1;
            }
        }
        next = found.largest_payload + (highest_open - found.largest_payload).div_ceil(2);
    }
    Ok(found)
}

/// A connected UDP socket that sends probes with fragmentation off.
struct Prober {
    socket: UdpSocket,
    ipv6: bool,
    overhead: usize,
    max_payload: usize,
    timeout: Duration,
    attempts: u32,
    session: u32,
    sequence: u32,
    probes_sent: u32,
    /// Random bytes after each probe's header, the same for every size.
    filler: Vec<u8>,
    started: Instant,
}

impl Prober {
    fn connect(address: SocketAddr, timeout: Duration, attempts: u32) -> io::Result<Prober> {
        let socket = UdpSocket::bind(udp_local_for(address))?;
        socket.connect(address)?;
        let ipv6 = address.is_ipv6();
        // DO, not PROBE: the kernel then refuses a datagram larger than a
        // path MTU it has learnt, which is how a signalled limit shows.
        if ipv6 {
            sockopt::set_ipv6_mtu_discover(&socket, Ipv6PathMtuDiscovery::DO)?;
        } else {
            sockopt::set_ip_mtu_discover(&socket, Ipv4PathMtuDiscovery::DO)?;
        }
        let max_payload = if ipv6 {
            MAX_UDP_PAYLOAD_V6
        } else {
            MAX_UDP_PAYLOAD
        };
        Ok(Prober {
            socket,
            ipv6,
            overhead: if ipv6 {
                IPV6_UDP_OVERHEAD
            } else {
                IPV4_UDP_OVERHEAD
            },
            max_payload,
            timeout,
            attempts,
            session: fastrand::u32(..),
            sequence: 0,
            probes_sent: 0,
            filler: std::iter::repeat_with(|| fastrand::u8(..))
                .take(max_payload)
                .collect(),
            started: Instant::now(),
        })
    }

    /// The path MTU the kernel knows for the socket's route.
    fn known_mtu(&self) -> Option<usize> {
        let mtu = if self.ipv6 {
            sockopt::ipv6_mtu(&self.socket)
        } else {
            sockopt::ip_mtu(&self.socket)
        };
        mtu.ok().map(|mtu| mtu as usize)
    }

    fn too_big(&self) -> Outcome {
        Outcome::TooBig {
            path_mtu: self.known_mtu(),
        }
    }

    /// Sends probes of `size` bytes, one at a time, until one comes back or
    /// `attempts` have gone unanswered. An echo of any of this size's
    /// probes counts, however late within the size's turn.
    fn probe(&mut self, size: usize) -> Result<Outcome, Failure> {
        let first_sequence = self.sequence + 1;
        let mut datagram = self.filler[..size].to_vec();
        let mut answer = vec![0u8; MAX_DATAGRAM];
        for _ in 0..self.attempts {
            self.sequence += 1;
            ProbeHeader {
                session: self.session,
                sequence: self.sequence,
                sent_ns: self.started.elapsed().as_nanos() as u64,
            }
            .write_kind_to(&mut datagram, KIND_MTU);
            match self.socket.send(&datagram) {
                Ok(_) => self.probes_sent += 1,
                Err(e) if is_too_big(&e) => return Ok(self.too_big()),
                Err(e) => return Err(Failure::io(&e)),
            }
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket
                    .set_read_timeout(Some(left))
                    .map_err(|e| Failure::io(&e))?;
                match self.socket.recv(&mut answer) {
                    Ok(len) => {
                        let Some(header) = ProbeHeader::read_kind_from(&answer[..len], KIND_MTU)
                            .filter(|header| {
                                header.session == self.session && header.sequence >= first_sequence
                            })
                        else {
                            // An earlier size's late echo, or not ours.
                            continue;
                        };
                        judge_echo(
                            &datagram[UDP_PROBE_HEADER..],
                            &answer[UDP_PROBE_HEADER..len],
                        )
                        .map_err(|wrong| {
                            Failure::mismatch(format!(
                                "the echo of probe {} ({size} bytes): {wrong}",
                                header.sequence
                            ))
                        })?;
                        return Ok(Outcome::Echoed);
                    }
                    Err(e) if is_too_big(&e) => return Ok(self.too_big()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    Err(e) => return Err(Failure::io(&e)),
                }
            }
        }
        Ok(Outcome::Lost)
    }
}

fn is_too_big(error: &io::Error) -> bool {
    Errno::from_io_error(error) == Some(Errno::MSGSIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path that carries payloads up to `limit`; above it, it signals
    /// `signalled` (a path MTU) or, with `None`, drops them.
    fn path(
        limit: usize,
        signalled: Option<usize>,
    ) -> impl FnMut(usize) -> Result<Outcome, Failure> {
        move |size| {
            Ok(if size <= limit {
                Outcome::Echoed
            } else if let Some(mtu) = signalled {
                Outcome::TooBig {
                    path_mtu: Some(mtu),
                }
            } else {
                Outcome::Lost
            })
        }
    }

    #[test]
    fn a_signalled_limit_is_tried_at_once() {
        let found = search(24, 1472, 28, path(1372, Some(1400))).unwrap();
        assert_eq!(
            found,
            Found {
                largest_payload: 1372,
                limit: Limit::Signalled,
                sizes_tried: 3,
            }
        );
    }

    #[test]
    fn a_black_hole_is_bisected_to_the_exact_size() {
        for limit in [24, 25, 1252, 1372, 1471, 1472] {
            let found = search(24, 1472, 28, path(limit, None)).unwrap();
            assert_eq!(found.largest_payload, limit);
            let expected = if limit == 1472 {
                Limit::FirstHop
            } else {
                Limit::BlackHole
            };
            assert_eq!(found.limit, expected, "{limit}");
            assert!(found.sizes_tried <= 13, "{found:?}");
        }
    }

    #[test]
    fn a_dead_path_is_no_tiny_mtu() {
        let failure = search(24, 1472, 28, path(0, None)).unwrap_err();
        assert_eq!(failure.verdict, crate::client::Verdict::TimedOut);
    }
}
