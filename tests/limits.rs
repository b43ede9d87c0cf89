//! Limits that protect the daemon: the connection cap, the idle timeout and
//! running out of file descriptors.

#![cfg(unix)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Launcher, PATIENCE, Server, Signal, closed_by_server, echo_once, round_trip};

#[test]
fn connections_beyond_max_connections_are_closed_and_the_rest_keep_working() {
    let server = Server::start("max_connections = 2\n");
    let mut first = server.connect();
    let mut second = server.connect();
    echo_once(&mut first, b"one");
    echo_once(&mut second, b"two");

    for _ in 0..20 {
        let mut refused = server.connect();
        assert!(
            closed_by_server(&mut refused),
            "a connection beyond the limit was kept open"
        );
    }
    echo_once(&mut first, b"still one");
    echo_once(&mut second, b"still two");
    server.log.wait_for("connection limit reached");
    assert!(
        server.log.count("connection limit reached") < 5,
        "the refusals flooded the log"
    );

    // A closed connection frees its place, once its worker has seen it
    // close: on a busy machine that can take longer than a hundred quick
    // refusals, so the attempts go on for as long as the patience lasts.
    drop(first);
    let give_up = Instant::now() + PATIENCE;
    let mut third = std::iter::repeat_with(|| std::thread::sleep(Duration::from_millis(20)))
        .take_while(|()| Instant::now() < give_up)
        .find_map(|()| {
            let mut candidate = server.connect();
            candidate
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            candidate.write_all(b"three").ok()?;
            let mut echo = [0u8; 5];
            candidate.read_exact(&mut echo).ok()?;
            Some(candidate)
        })
        .expect("a new connection is served once one has closed");
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    echo_once(&mut third, b"three again");
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let server = Server::start("idle_timeout = \"1s\"\n");
    let mut idle = server.connect();
    let mut busy = server.connect();
    echo_once(&mut idle, b"hello");
    // The busy one keeps talking for longer than the timeout and survives.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        echo_once(&mut busy, b"ping");
    }
    assert!(
        closed_by_server(&mut idle),
        "the idle connection was not closed"
    );
    echo_once(&mut busy, b"still open");
}

#[test]
fn a_peer_that_stops_reading_its_echo_is_closed_after_idle_timeout() {
    let server = Server::start("idle_timeout = \"1s\"\n");
    let mut hog = server.connect();
    // Fill the kernel's buffers both ways, so the server's echo is stuck.
    hog.set_nonblocking(true).unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut stalled_since: Option<Instant> = None;
    while stalled_since.is_none_or(|since| since.elapsed() < Duration::from_millis(300)) {
        match hog.write(&chunk) {
            Ok(_) => stalled_since = None,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stalled_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    // Read nothing for longer than the timeout...
    std::thread::sleep(Duration::from_secs(2));
    // ...and the server has given up: reading ends in a close or reset,
    // not in an echo that goes on until the read times out.
    hog.set_nonblocking(false).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let closed = loop {
        match hog.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            Err(_) => break true,
        }
    };
    assert!(closed, "a peer that stopped reading was never closed");
}

#[test]
fn sub_millisecond_idle_timeouts_are_not_rounded_to_never() {
    let server = Server::start("idle_timeout = \"500us\"\n");
    let mut idle = server.connect();
    assert!(
        closed_by_server(&mut idle),
        "a 500 µs idle timeout never fired"
    );
}

#[test]
fn a_reload_applies_a_new_idle_timeout_to_open_connections() {
    let server = Server::start("idle_timeout = \"0\"\n");
    let mut open = server.connect();
    echo_once(&mut open, b"before");
    let seen = server.log.all().len();
    server.rewrite_config("[server]\nport = 0\nidle_timeout = \"300ms\"\n");
    server.signal(Signal::SIGHUP);
    server.log.wait_for_after(seen, "configuration reloaded");
    assert!(
        closed_by_server(&mut open),
        "the new idle timeout did not reach the open connection"
    );
}

#[test]
fn zero_idle_timeout_keeps_connections_open() {
    // Start with a short timeout and switch to "never", so that a connection
    // outliving the short one proves that 0 means never.
    let server = Server::start("idle_timeout = \"300ms\"\n");
    let seen = server.log.all().len();
    server.rewrite_config("[server]\nport = 0\nidle_timeout = \"0\"\n");
    server.signal(Signal::SIGHUP);
    server.log.wait_for_after(seen, "configuration reloaded");
    let mut stream = server.connect();
    std::thread::sleep(Duration::from_millis(1200));
    echo_once(&mut stream, b"after a pause four times the old timeout");
}

#[test]
fn running_out_of_file_descriptors_neither_stops_nor_spins_the_server() {
    // 32 descriptors: the runtime takes a handful, the rest go to connections.
    let server = Launcher::new("[server]\nport = 0\n")
        .wrapped_in(&["prlimit", "--nofile=32:32", "--"])
        .start();
    let mut held: Vec<TcpStream> = Vec::new();
    // The kernel completes handshakes into the backlog even when the server
    // cannot accept them, so these all "connect".
    for _ in 0..60 {
        held.push(server.connect());
    }
    server.log.wait_for("cannot accept connections");
    let cpu_before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let cpu_spent = cpu_ticks(server.pid()) - cpu_before;
    // A spinning accept loop would burn the whole second (100 ticks).
    assert!(
        cpu_spent < 50,
        "the server used {cpu_spent} ticks of CPU in one second while out of descriptors"
    );

    // Once descriptors are free again, the server serves again.
    held.clear();
    assert_eq!(round_trip(server.addr(), b"recovered"), b"recovered");
    server.log.wait_for("accepting connections again");
    assert!(
        server.log.count("cannot accept connections") < 5,
        "accept errors flooded the log"
    );
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of /proc/PID/stat, counted from the state (field 3).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
