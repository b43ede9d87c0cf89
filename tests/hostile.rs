//! Hostile peers against the daemon's TLS and UDP serving: what a careless
//! or malicious client can make it hold, and for how long. Each test drives
//! the daemon with real sockets the way an attacker would.
//!
//! Behind the `host-tests` feature: the certificates are made by the
//! `openssl` command at test time, and the UDP flood runs in network
//! namespaces (`common::netns`) with a `tc` rate limit.

#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::{Network, SERVER_V4};
use common::tls::{Pki, rustls_client, rustls_connect, section, start};
use common::{
    CLIENT, Launcher, PATIENCE, Server, closed_by_server, echo_once, finish_with_patience,
};

/// A server with a TLS listener serving `certificate` and `key` of `pki`,
/// with `server` lines, and that listener's address.
fn start_tls(pki: &Pki, certificate: &str, key: &str, server: &str) -> (Server, SocketAddr) {
    start(&format!("{server}\n{}", section(pki, certificate, key, "")))
}

/// A slowloris on the handshake: a ClientHello that never ends, one byte at
/// a time. rustls keeps the handshake message it is joining (up to 64 KiB)
/// and the connection holds a slot of `max_connections`, so a handshake
/// must end within its own deadline of the accept, as a PROXY protocol
/// header must within its own, even where idle connections are kept for
/// ever (`idle_timeout = "0"`).
#[test]
fn a_trickled_handshake_times_out_though_idle_connections_never_do() {
    let pki = Pki::new();
    let (server, addr) = start_tls(
        &pki,
        "server.pem",
        "server.key",
        "idle_timeout = \"0\"\ntls_handshake_timeout = \"2s\"",
    );
    let mut stream = TcpStream::connect(addr).unwrap();
    // A handshake record of 16 KiB, opening a ClientHello of 64 KiB.
    stream
        .write_all(&[0x16, 3, 1, 0x40, 0, 1, 0, 0xff, 0xfb])
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let give_up = Instant::now() + PATIENCE;
    loop {
        if closed_by_server(&mut stream) || stream.write_all(&[3]).is_err() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "a handshake trickled a byte every 500 ms was still open after {PATIENCE:?} (idle_timeout 0, tls_handshake_timeout 2s)"
        );
    }
    server
        .log
        .wait_for("no complete handshake 2s after the accept");
}

/// The handshake's deadline ends with the handshake: a TLS connection
/// that completed it and then keeps quiet stays open past it, as
/// `idle_timeout = "0"` says.
#[test]
fn a_completed_handshake_is_not_held_to_the_handshake_deadline() {
    let pki = Pki::new();
    let (_server, addr) = start_tls(
        &pki,
        "server.pem",
        "server.key",
        "idle_timeout = \"0\"\ntls_handshake_timeout = \"1s\"",
    );
    let mut quiet = rustls_connect(&rustls_client(&pki), addr);
    std::thread::sleep(Duration::from_secs(3));
    echo_once(&mut quiet, b"still here");
}

/// The certificate every TLS tutorial makes first, `openssl req -x509`,
/// is self-signed and a CA (basicConstraints CA:TRUE): OpenSSL clients take
/// it given as the CA, rustls refuses it as a server's own. The client
/// must say so in words that lead to the fix, not in rustls's debug text.
#[test]
fn a_ca_certificate_served_as_the_servers_own_is_explained() {
    // The test CA itself, made with `openssl req -x509`, served as the
    // server's own certificate.
    let pki = Pki::new();
    let (_server, addr) = start_tls(&pki, "ca.pem", "ca.key", "");
    let ca = pki.file("ca.pem");
    let finished = finish_with_patience(
        {
            let mut command = Command::new(CLIENT);
            command
                .args(["check", "--tls", "--ca"])
                .arg(&ca)
                .arg(addr.to_string());
            command
        },
        b"",
    );
    let said = format!("{}{}", finished.stdout(), finished.stderr);
    assert_eq!(finished.code, 4, "{said}");
    assert!(
        said.contains("is a CA certificate") && !said.contains("Other("),
        "{said}"
    );
}

/// `--tls` against a plain echo port, the likeliest slip: the port sends
/// the ClientHello straight back. The client must say that, not leave the
/// operator with rustls's "got ClientHello when expecting ServerHello".
#[test]
fn tls_to_a_plain_echo_port_says_so() {
    let pki = Pki::new();
    let (server, _) = start_tls(&pki, "server.pem", "server.key", "");
    let finished = finish_with_patience(
        {
            let mut command = Command::new(CLIENT);
            command
                .args(["check", "--tls", "--insecure"])
                .arg(server.addr().to_string());
            command
        },
        b"",
    );
    let said = format!("{}{}", finished.stdout(), finished.stderr);
    assert_eq!(finished.code, 2, "{said}");
    assert!(said.contains("plain TCP there, not TLS"), "{said}");
}

/// A UDP flood into a slow link: the server's replies wait in the link's
/// queue until its socket's send buffer is full, so `sendmmsg` would
/// block. The replies it holds then must go once there is room, without
/// another datagram to wake the socket: once the flood has passed, every
/// byte received has been echoed. The link is a token bucket of 1 Mbit/s
/// on the server's interface whose queue is longer than the send buffer (a
/// shorter queue drops instead, and sends never block).
#[test]
fn udp_replies_that_waited_for_room_all_go_after_the_flood() {
    let network = Network::build();
    network.exec(
        &network.server,
        "tc",
        &[
            "qdisc", "add", "dev", "s0", "root", "tbf", "rate", "1mbit", "burst", "10kb", "limit",
            "20mb",
        ],
    );
    let metrics = format!("{SERVER_V4}:9862");
    let _server = Launcher::new(&format!(
        "[server]\nlisten = [\"{SERVER_V4}:7007\"]\nudp = true\nudp_rate_limit = 0\nworkers = 1\n\
         [metrics]\nlisten = \"{metrics}\"\n"
    ))
    .wrapped_in(&["ip", "netns", "exec", &network.server])
    .start();
    // As fast as the client's socket takes them for 3 s: far more than 1
    // Mbit/s.
    let flood = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
end = time.time() + 3
while time.time() < end:
    try:
        s.sendto(b"x" * 1400, ("{SERVER_V4}", 7007))
    except BlockingIOError:
        time.sleep(0.001)
"#
    );
    in_namespace(&network.client, &flood);
    // Until the link has drained: the bytes sent stand still.
    let scrape = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{metrics}/metrics').read().decode())"
    );
    let udp_bytes = || {
        let text = in_namespace(&network.server, &scrape);
        let total = |name: &str| -> u64 {
            text.lines()
                .filter(|line| line.starts_with(name))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        (
            total("echo_server_udp_received_bytes_total"),
            total("echo_server_udp_sent_bytes_total"),
        )
    };
    let give_up = Instant::now() + PATIENCE;
    let mut last = udp_bytes();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = udp_bytes();
        if now == last || Instant::now() > give_up {
            break;
        }
        last = now;
    }
    let (received, sent) = last;
    assert!(received > 0, "the flood did not arrive");
    assert_eq!(
        sent, received,
        "UDP replies held while the socket waited for room were never sent"
    );
}

/// Runs a Python program in `namespace`, to success; its standard output.
fn in_namespace(namespace: &str, program: &str) -> String {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", namespace, "python3", "-c", program]);
    let finished = finish_with_patience(command, b"");
    assert_eq!(finished.code, 0, "python3: {}", finished.stderr);
    finished.stdout()
}
