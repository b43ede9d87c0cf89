//! The TCP echo over real loopback sockets: payloads of every kind, many
//! clients at once, half-close and a peer that never reads. (The classic
//! Python tutorial's client is in tests/privileged.rs: it needs the default
//! port, so a network namespace of its own.)

#![cfg(unix)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{PATIENCE, Server, clients_at_once_get_their_own_bytes, random_bytes, round_trip};

#[test]
fn empty_payload_gets_an_empty_echo_and_a_clean_close() {
    let server = Server::start("");
    assert_eq!(round_trip(server.addr(), b""), b"");
}

#[test]
fn one_byte_comes_back() {
    let server = Server::start("");
    assert_eq!(round_trip(server.addr(), b"x"), b"x");
}

#[test]
fn one_mebibyte_of_random_bytes_comes_back_in_order() {
    let server = Server::start("");
    let payload = random_bytes(1 << 20, 42);
    let echo = round_trip(server.addr(), &payload);
    assert_eq!(echo.len(), payload.len());
    assert!(echo == payload, "the echo differs from what was sent");
}

#[test]
fn every_byte_value_survives() {
    let server = Server::start("");
    let payload: Vec<u8> = (0..=255u8).cycle().take(256 * 64).collect();
    assert_eq!(round_trip(server.addr(), &payload), payload);
}

#[test]
fn two_hundred_concurrent_clients_each_get_their_own_bytes() {
    let server = Server::start("");
    clients_at_once_get_their_own_bytes(server.addr(), 200, 5);
}

#[test]
fn after_a_half_close_everything_still_comes_back_then_the_server_closes() {
    let server = Server::start("");
    let mut stream = server.connect();
    let payload = random_bytes(300_000, 7);
    // Write all of it before reading anything: it sits in the socket buffers
    // and in the server's flow control until we read.
    let mut writer = stream.try_clone().unwrap();
    let sent = payload.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut echo = Vec::new();
    stream.read_to_end(&mut echo).unwrap();
    sender.join().unwrap();
    assert!(
        echo == payload,
        "got {} of {} bytes back, or different ones",
        echo.len(),
        payload.len()
    );
}

#[test]
fn a_peer_that_never_reads_cannot_grow_the_server() {
    const PEERS: usize = 16;
    /// More than the kernel's socket buffers can hold (net.ipv4.tcp_rmem
    /// and tcp_wmem allow up to tens of MiB per connection), so a server
    /// that buffered without bound would show it.
    const PUSH_AT_MOST: usize = 128 << 20;
    // At debug level the log says when each connection has closed.
    let server = Server::start("[log]\nlevel = \"debug\"\n");
    // Peers that push until the server stops taking more, and how much
    // they pushed.
    let hog_round = || {
        let hogs: Vec<TcpStream> = (0..PEERS)
            .map(|_| connect_with_small_receive_buffer(server.addr()))
            .collect();
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut pushed = 0usize;
        for hog in &hogs {
            hog.set_nonblocking(true).unwrap();
            // Write until nothing more is taken for a while (the kernel's
            // buffers on both sides and the server's own are full), or
            // enough is pushed.
            let mut pushed_here = 0usize;
            let mut stalled_since: Option<Instant> = None;
            while pushed_here < PUSH_AT_MOST {
                match (&*hog).write(&chunk) {
                    Ok(n) => {
                        pushed_here += n;
                        stalled_since = None;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        let since = *stalled_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(300) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("write failed: {e}"),
                }
            }
            assert!(
                pushed_here < PUSH_AT_MOST,
                "the server took {pushed_here} bytes from a peer that reads nothing"
            );
            pushed += pushed_here;
        }
        (hogs, pushed)
    };
    // Warm up with a round of the same, closed again: every worker's
    // allocator then has its arena and the buffers' pages (which it keeps
    // once freed), so what the measured round adds is what the server
    // holds for its peers, not the allocator's first growth on a thread
    // (up to a few hundred KiB, whichever worker the peers land on).
    drop(hog_round());
    let give_up = Instant::now() + PATIENCE;
    // Peers that go away with their echo unread end in a reset: "failed".
    let ended = || server.log.count("connection closed") + server.log.count("connection failed");
    while ended() < PEERS {
        assert!(
            Instant::now() < give_up,
            "the warm-up's peers were not closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = server.rss_kib();
    let (_hogs, pushed) = hog_round();
    let grown = server.rss_kib().saturating_sub(before);
    // The kernel holds the data; the server holds at most one 16 KiB buffer
    // per connection (plus the connection itself).
    assert!(
        grown < (PEERS as u64) * 24,
        "server RSS grew by {grown} KiB for {PEERS} non-reading peers that pushed {pushed} bytes"
    );
    // And the server still serves everyone else.
    assert_eq!(round_trip(server.addr(), b"still here"), b"still here");
}

#[test]
fn ipv4_and_ipv6_wildcards_share_a_port() {
    // Pick a free port on both families, then ask for it twice. Only the
    // wildcards conflict unless the IPv6 one is IPv6-only.
    let probe = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let server = common::Launcher::new(&format!(
        "[server]\nlisten = [\"0.0.0.0:{port}\", \"[::]:{port}\"]\n"
    ))
    .start();
    assert_eq!(server.tcp.len(), 2);
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let addr = addr.parse().unwrap();
        assert_eq!(round_trip(addr, b"both families"), b"both families");
    }
}

/// A client socket whose receive buffer stays small, so the echo backs up
/// into the server quickly.
fn connect_with_small_receive_buffer(addr: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}
