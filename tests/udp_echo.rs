//! The UDP echo and its guards against being used as a reflector.

#![cfg(unix)]

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::{Server, udp_client};

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
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 16];
    while socket.recv(&mut buf).is_ok() {
        answered += 1;
    }
    // A burst of one second's worth (5), plus what refilled while sending.
    assert!(
        (5..=10).contains(&answered),
        "{answered} of 50 datagrams were answered at 5/s"
    );
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
