//! The UDP echo and its guards against being used as a reflector.

#![cfg(unix)]

mod common;

use std::io::ErrorKind;
use std::net::UdpSocket;

use common::{Launcher, Server, Signal, echo_once, udp_client};

#[test]
fn each_datagram_is_answered_with_the_same_bytes() {
    let server = Server::start("udp = true\n");
    assert_eq!(server.udp, server.tcp, "UDP is served on the TCP addresses");
    let socket = udp_client();
    socket.connect(server.udp[0]).unwrap();
    let mut buf = vec![0u8; 70_000];
    for payload in [
        &b""[..],
        b"x",
        &common::random_bytes(1400, 3),
        &common::random_bytes(60_000, 4),
    ] {
        socket.send(payload).unwrap();
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], payload);
    }
}

/// More sources at once than one batch holds (`recvmmsg` takes 32): every
/// datagram goes back whole to the socket that sent it, none to another.
#[test]
fn a_burst_from_many_sources_is_answered_in_full_each_to_its_sender() {
    let server = Server::start("udp = true\nudp_rate_limit = 0\n");
    let (sources, each) = (48, 3);
    let sockets: Vec<UdpSocket> = (0..sources).map(|_| udp_client()).collect();
    let message = |source: usize, n: usize| {
        format!(
            "source {source} datagram {n} {}",
            "x".repeat(n * 7 + source)
        )
        .into_bytes()
    };
    for n in 0..each {
        for (source, socket) in sockets.iter().enumerate() {
            socket.send_to(&message(source, n), server.udp[0]).unwrap();
        }
    }
    let mut buf = [0u8; 1024];
    for (source, socket) in sockets.iter().enumerate() {
        for n in 0..each {
            let (len, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.udp[0]);
            assert_eq!(
                String::from_utf8_lossy(&buf[..len]),
                String::from_utf8_lossy(&message(source, n))
            );
        }
    }
}

/// Datagrams one at a time, which the server comes to read with `recvfrom`
/// and answer with `sendto`, and a burst from many sources, which it reads
/// and answers in batches: over IPv4 and IPv6 every datagram, empty to the
/// protocol's largest (65,507 bytes over IPv4, 65,527 over IPv6: no slot
/// cuts one short), comes back whole to the socket that sent it, before,
/// during and after the burst. What it checks is what senders see; which
/// calls the server made for them, it cannot see (`strace -f -e
/// trace=network` on the server shows them).
#[test]
fn datagrams_alone_and_in_bursts_come_back_whole_to_their_senders() {
    let server = Launcher::new(
        "[server]\nudp = true\nudp_rate_limit = 0\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\n",
    )
    .start();
    let mut buf = vec![0u8; 70_000];
    for address in &server.udp {
        let (local, largest) = if address.is_ipv4() {
            ("127.0.0.1:0", 65_507)
        } else {
            ("[::1]:0", 65_527)
        };
        let bound = || {
            let socket = UdpSocket::bind(local).unwrap();
            socket.set_read_timeout(Some(common::PATIENCE)).unwrap();
            socket
        };
        let alone = bound();
        let ping_pong = |rounds: usize, seed: u64| {
            for round in 0..rounds {
                let size = [0, 1, 1400, largest][round % 4];
                let payload = common::random_bytes(size, seed + round as u64);
                alone.send_to(&payload, address).unwrap();
                let mut echo = vec![0u8; 70_000];
                let (len, from) = alone.recv_from(&mut echo).unwrap();
                assert_eq!(from, *address);
                assert!(echo[..len] == payload[..], "over {address}, round {round}");
            }
        };
        ping_pong(24, 100);
        let burst: Vec<UdpSocket> = (0..40).map(|_| bound()).collect();
        for (source, socket) in burst.iter().enumerate() {
            for n in 0..2 {
                let message = format!("source {source} datagram {n}");
                socket.send_to(message.as_bytes(), address).unwrap();
            }
        }
        ping_pong(8, 200);
        for (source, socket) in burst.iter().enumerate() {
            for n in 0..2 {
                let (len, from) = socket.recv_from(&mut buf).unwrap();
                assert_eq!(from, *address);
                assert_eq!(
                    String::from_utf8_lossy(&buf[..len]),
                    format!("source {source} datagram {n}")
                );
            }
        }
        ping_pong(24, 300);
    }
}

#[test]
fn udp_is_off_unless_enabled() {
    let server = Server::start("");
    assert!(server.udp.is_empty());
    let socket = udp_client();
    socket.connect(server.addr()).unwrap();
    socket.send(b"anyone?").unwrap();
    let mut buf = [0u8; 16];
    let err = socket.recv(&mut buf).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "expected ICMP port unreachable, got {err}"
    );
}

#[test]
fn a_source_over_its_rate_limit_is_dropped() {
    let server = Server::start("udp = true\nudp_rate_limit = 5\n");
    let socket = udp_client();
    socket.connect(server.udp[0]).unwrap();
    for i in 0..50u8 {
        socket.send(&[i]).unwrap();
    }
    server.log.wait_for("over its rate limit");
    let answered = common::count_udp_answers_until_quiet(&socket);
    // A burst of one second's worth (5), plus what refilled while sending.
    assert!(
        (5..=10).contains(&answered),
        "{answered} of 50 datagrams were answered at 5/s"
    );
}

/// The UDP socket closes with the listeners on the stop signal, not when
/// the last connection has finished: its thread wakes from its wait for
/// datagrams to stop. A restarted daemon (or another program) can then bind
/// the port, which the daemon never shares (see below).
#[test]
fn a_stop_signal_closes_the_udp_socket_while_connections_finish() {
    let server = Server::start("udp = true\nshutdown_grace = \"1m\"\n");
    let socket = udp_client();
    socket.connect(server.udp[0]).unwrap();
    socket.send(b"before").unwrap();
    let mut buf = [0u8; 16];
    let len = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"before");
    let mut open = server.connect();
    echo_once(&mut open, b"keeps the daemon in its grace period");

    server.signal(Signal::SIGTERM);
    server
        .log
        .wait_for("stopping: no longer accepting connections");
    assert!(
        UdpSocket::bind(server.udp[0]).is_ok(),
        "the UDP port is still held after the stop signal"
    );
    echo_once(&mut open, b"still served");
}

#[test]
fn a_udp_port_held_by_another_program_is_an_error_not_shared() {
    // Another program holds the port, even with SO_REUSEADDR set, as some do.
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    other.set_reuse_address(true).unwrap();
    other
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let port = other
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .port()
        .to_string();
    let config = common::TestDir::new();
    let path = config.write("c.toml", "[server]\nudp = true\n");
    let (code, _, err) = common::run_server(&["-c", path.to_str().unwrap(), "--port", &port], &[]);
    assert_eq!(code, 69, "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on UDP 127.0.0.1:{port}: the address is already in use"
        )),
        "{err}"
    );
}
