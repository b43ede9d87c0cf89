//! A real HAProxy (Debian's, installed by scripts/test.sh) in front of
//! echo-server, as in docs/PROXY_PROTOCOL.md: one frontend relays with
//! `send-proxy` (v1), one with `send-proxy-v2`, both to a `proxy_protocol`
//! listener, with HAProxy's health checks on (they send v1 `UNKNOWN` and
//! v2 `LOCAL` headers). `echo-client send`/`check`/`pipe` and the README's
//! Python client get byte-exact echoes through both, and the server's log
//! names the real client, not HAProxy. A third frontend relays with
//! `send-proxy` to a plain listener, which echoes the header as data.
//!
//! HAProxy connects to the server from 127.0.0.4 (v1) and 127.0.0.5 (v2),
//! and the raw client connects from 127.0.0.2, so that the log shows which
//! address is whose. Behind the `host-tests` feature: it needs a program
//! the plain `cargo test` does not.

#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::process::{Child, Command, Stdio};

use common::{CLIENT, Finished, Launcher, LogLines, TestDir, random_bytes};

/// HAProxy's source address towards the server, per PROXY protocol version.
const V1_SOURCE: &str = "127.0.0.4";
const V2_SOURCE: &str = "127.0.0.5";
/// The raw client's own address.
const CLIENT_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// HAProxy in the foreground, stopped when the test ends.
struct Haproxy {
    child: Child,
    log: LogLines,
    _dir: TestDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The frontends' ports.
struct Frontends {
    v1: u16,
    v2: u16,
    v1_to_plain: u16,
}

impl Haproxy {
    /// Starts HAProxy with a generated config: the three frontends, each to
    /// its own backend.
    fn start(proxied: SocketAddr, plain: SocketAddr) -> (Haproxy, Frontends) {
        let frontends = Frontends {
            v1: common::free_port(),
            v2: common::free_port(),
            v1_to_plain: common::free_port(),
        };
        let config = format!(
            "global
    maxconn 200

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend echo_v1
    bind 127.0.0.1:{v1}
    default_backend echo_v1

backend echo_v1
    server echo {proxied} send-proxy check inter 200ms source {V1_SOURCE}

frontend echo_v2
    bind 127.0.0.1:{v2}
    default_backend echo_v2

backend echo_v2
    server echo {proxied} send-proxy-v2 check inter 200ms source {V2_SOURCE}

frontend plain
    bind 127.0.0.1:{v1_to_plain}
    default_backend plain

backend plain
    server echo {plain} send-proxy
",
            v1 = frontends.v1,
            v2 = frontends.v2,
            v1_to_plain = frontends.v1_to_plain,
        );
        let dir = TestDir::new();
        let path = dir.write("haproxy.cfg", &config);
        let path = path.to_str().unwrap();
        let checked = haproxy(&["-c", "-f", path]);
        assert_eq!(
            checked.code,
            0,
            "haproxy -c: {}{}",
            checked.stdout(),
            checked.stderr
        );
        let mut child = Command::new("haproxy")
            .args(["-db", "-f", path])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy (package haproxy) is installed by scripts/test.sh");
        let log = LogLines::default();
        log.clone().collect(child.stderr.take().unwrap());
        (
            Haproxy {
                child,
                log,
                _dir: dir,
            },
            frontends,
        )
    }
}

fn haproxy(args: &[&str]) -> Finished {
    let mut command = Command::new("haproxy");
    command.args(args);
    common::finish_with_patience(command, b"")
}

fn echo_client(args: &[&str], input: &[u8]) -> Finished {
    let mut command = Command::new(CLIENT);
    command.args(args);
    common::finish_with_patience(command, input)
}

/// The README's Python client, pointed at `port`.
fn readme_python_client(port: u16) -> Finished {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find_map(|line| line.strip_prefix("$ python3 -c '"))
        .and_then(|line| line.strip_suffix('\''))
        .expect("the README shows its Python client as `$ python3 -c '...'`");
    assert!(line.contains("65432"), "{line}");
    let code = line.replace("65432", &port.to_string());
    let mut command = Command::new("python3");
    command.args(["-c", &code]);
    common::finish_with_patience(command, b"")
}

/// Connects from `CLIENT_SOURCE`, sends `data`, half-closes and returns
/// the echo and the client's own address.
fn raw_round_trip(port: u16, data: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut stream = common::connect_from(CLIENT_SOURCE, port);
    let own = stream.local_addr().unwrap();
    stream.write_all(data).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut echo = Vec::new();
    stream.read_to_end(&mut echo).unwrap();
    (echo, own)
}

/// The `peer=` and `proxy=` of a "connection opened" line.
fn peer_and_proxy(line: &str) -> (&str, &str) {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("peer="), field("proxy="))
}

#[test]
fn haproxy_send_proxy_v1_and_v2_relay_byte_exact_echoes_and_the_real_client_is_logged() {
    let server = Launcher::new(
        "[server]\nlisten = [{ address = \"127.0.0.1:0\", proxy_protocol = true }, \"127.0.0.1:0\"]\n[log]\nlevel = \"debug\"\n",
    )
    .start();
    let (proxied, plain) = (server.tcp[0], server.tcp[1]);
    let (haproxy, frontends) = Haproxy::start(proxied, plain);

    // HAProxy's health checks: v1 sends `PROXY UNKNOWN`, v2 a LOCAL header;
    // both name no client, so the check connection itself is logged.
    for source in [V1_SOURCE, V2_SOURCE] {
        let opened = server
            .log
            .wait_for(&format!("connection opened peer={source}:"));
        let (peer, proxy) = peer_and_proxy(&opened);
        assert_eq!(peer, proxy, "{opened}");
    }

    for (port, haproxy_source) in [(frontends.v1, V1_SOURCE), (frontends.v2, V2_SOURCE)] {
        let target = format!("127.0.0.1:{port}");
        // echo-client send and check.
        let sent = echo_client(&["send", "-t", &target, "Hello,", "world"], b"");
        assert_eq!(
            (sent.code, sent.stdout()),
            (0, "Hello, world".to_string()),
            "{}",
            sent.stderr
        );
        let checked = echo_client(&["check", &target, "-n", "3"], b"");
        assert_eq!(checked.code, 0, "{}{}", checked.stdout(), checked.stderr);
        assert!(
            checked.stdout().contains("healthy, 3/3 echoes"),
            "{}",
            checked.stdout()
        );
        // A mebibyte of random bytes through `pipe`, byte-exact.
        let payload = random_bytes(1 << 20, u64::from(port));
        let piped = echo_client(&["pipe", &target], &payload);
        assert_eq!(piped.code, 0, "{}", piped.stderr);
        assert!(piped.stdout == payload, "the echo through HAProxy differs");
        // The README's Python client.
        let python = readme_python_client(port);
        assert_eq!(
            (python.code, python.stdout()),
            (0, "b'Hello, world'\n".to_string()),
            "{}",
            python.stderr
        );
        // A client of a known address and port: exactly it is logged.
        let (echo, own) = raw_round_trip(port, b"who am I?");
        assert_eq!(echo, b"who am I?");
        let opened = server
            .log
            .wait_for(&format!("connection opened peer={own}"));
        assert!(
            opened.contains(&format!("proxy={haproxy_source}:")),
            "{opened}"
        );
        server
            .log
            .wait_for(&format!("connection closed peer={own} echoed=9"));
        // The clients before it came from 127.0.0.1 through HAProxy, and
        // were logged before it was.
        assert!(
            server
                .log
                .all()
                .iter()
                .any(|line| line.contains("connection opened peer=127.0.0.1:")
                    && line.contains(&format!("proxy={haproxy_source}:"))),
            "no client of 127.0.0.1 relayed from {haproxy_source} in the log:\n{}",
            server.log.all().join("\n")
        );
    }

    // A plain listener behind send-proxy echoes the header HAProxy writes.
    let (echo, own) = raw_round_trip(frontends.v1_to_plain, b"data");
    let header = format!(
        "PROXY TCP4 {} 127.0.0.1 {} {}\r\n",
        own.ip(),
        own.port(),
        frontends.v1_to_plain
    );
    assert_eq!(String::from_utf8_lossy(&echo), format!("{header}data"));

    assert_eq!(
        server.log.count("without a valid PROXY protocol header"),
        0,
        "echo-server:\n{}\nHAProxy:\n{}",
        server.log.all().join("\n"),
        haproxy.log.all().join("\n")
    );
}
