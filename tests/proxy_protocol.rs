//! Listeners with `proxy_protocol`, over real loopback sockets: a raw client
//! writes PROXY protocol headers (v1 and v2) the way load balancers do, in
//! one piece with data behind them and byte by byte, and the echo comes
//! back without the header while the log names the client the header
//! named. Garbage, a peer that goes away and one that never finishes its
//! header are closed and counted; a plain listener echoes a header like any
//! other bytes; sockets passed by a service manager take the protocol by
//! their name. (A real HAProxy in front is tests/haproxy.rs.)

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};

use common::{Launcher, LogLines, PATIENCE, Server, Signal, closed_by_server, random_bytes};

/// A server with one listener that takes the PROXY protocol and one that
/// does not, logging every connection (debug).
fn start(extra: &str) -> Server {
    Launcher::new(&format!(
        "[server]\nlisten = [{{ address = \"127.0.0.1:0\", proxy_protocol = true }}, \"127.0.0.1:0\"]\n{extra}\n[log]\nlevel = \"debug\"\n"
    ))
    .start()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    // Every write its own segment, for the byte-by-byte tests.
    stream.set_nodelay(true).unwrap();
    stream
}

/// Half-closes and reads the rest of the echo.
fn finish(mut stream: TcpStream) -> Vec<u8> {
    stream.shutdown(Shutdown::Write).unwrap();
    let mut echo = Vec::new();
    stream.read_to_end(&mut echo).unwrap();
    echo
}

/// A v2 header: PROXY (or LOCAL) over TCP/IPv4 from `source`, with a TLV
/// the daemon must skip.
fn v2_header(local: bool, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else {
        panic!("IPv4 only");
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(if local { 0x20 } else { 0x21 });
    header.push(0x11);
    let mut body = source.ip().octets().to_vec();
    body.extend_from_slice(&destination.ip().octets());
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    // PP2_TYPE_AUTHORITY "echo.example".
    body.extend_from_slice(&[0x02, 0, 12]);
    body.extend_from_slice(b"echo.example");
    header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&body);
    header
}

fn opened_line(log: &LogLines, peer: &str) -> String {
    log.wait_for(&format!("connection opened peer={peer}"))
}

#[test]
fn v1_header_and_data_in_one_write_echo_only_the_data() {
    let server = start("");
    let proxied = server.tcp[0];
    let mut stream = connect(proxied);
    let data = random_bytes(100_000, 18);
    let mut bytes = format!(
        "PROXY TCP4 192.0.2.7 {} 40000 {}\r\n",
        proxied.ip(),
        proxied.port()
    )
    .into_bytes();
    bytes.extend_from_slice(&data);
    stream.write_all(&bytes).unwrap();
    assert!(finish(stream) == data, "the echo is not exactly the data");
    let opened = opened_line(&server.log, "192.0.2.7:40000");
    assert!(opened.contains("proxy=127.0.0.1:"), "{opened}");
    server
        .log
        .wait_for("connection closed peer=192.0.2.7:40000 echoed=100000");
}

#[test]
fn v1_tcp6_names_an_ipv6_client() {
    let server = start("");
    let mut stream = connect(server.tcp[0]);
    stream
        .write_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 7\r\n")
        .unwrap();
    stream.write_all(b"six").unwrap();
    assert_eq!(finish(stream), b"six");
    opened_line(&server.log, "[2001:db8::7]:65535");
}

#[test]
fn headers_written_byte_by_byte_are_put_together() {
    let server = start("");
    let proxied = server.tcp[0];
    let v1 = b"PROXY TCP4 192.0.2.8 127.0.0.1 40001 7\r\n".to_vec();
    let v2 = v2_header(false, "192.0.2.9:40002".parse().unwrap(), proxied);
    for (header, client) in [(v1, "192.0.2.8:40001"), (v2, "192.0.2.9:40002")] {
        let mut stream = connect(proxied);
        for byte in &header {
            stream.write_all(&[*byte]).unwrap();
        }
        // The first byte of data alone, too, then the rest.
        stream.write_all(b"h").unwrap();
        stream.write_all(b"ello").unwrap();
        let mut echo = [0; 5];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"hello", "{client}");
        assert_eq!(finish(stream), b"", "{client}");
        opened_line(&server.log, client);
    }
}

#[test]
fn v2_proxy_and_local_headers() {
    let server = start("");
    let proxied = server.tcp[0];
    // PROXY, with data in the same write.
    let mut stream = connect(proxied);
    let mut bytes = v2_header(false, "198.51.100.20:50000".parse().unwrap(), proxied);
    bytes.extend_from_slice(b"after v2");
    stream.write_all(&bytes).unwrap();
    assert_eq!(finish(stream), b"after v2");
    opened_line(&server.log, "198.51.100.20:50000");
    // LOCAL, as HAProxy's health checks send it: the addresses in it are
    // ignored, and the connection's own peer is the one logged.
    let mut stream = connect(proxied);
    let own = stream.local_addr().unwrap();
    let mut bytes = v2_header(true, "198.51.100.21:50001".parse().unwrap(), proxied);
    bytes.extend_from_slice(b"local");
    stream.write_all(&bytes).unwrap();
    assert_eq!(finish(stream), b"local");
    let opened = opened_line(&server.log, &own.to_string());
    assert!(opened.contains(&format!("proxy={own}")), "{opened}");
    assert_eq!(server.log.count("198.51.100.21"), 0);
}

#[test]
fn garbage_is_closed_unechoed_and_counted() {
    let server = start("");
    for (attempt, bytes) in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"PROXY TCP4 192.0.2.300 127.0.0.1 1 2\r\nhello",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
    ]
    .into_iter()
    .enumerate()
    {
        let mut stream = connect(server.tcp[0]);
        stream.write_all(bytes).unwrap();
        let mut echo = Vec::new();
        // Closed without a byte back (a reset is as good as an end).
        let _ = stream.read_to_end(&mut echo);
        assert_eq!(echo, b"", "attempt {attempt}");
    }
    // The first failure is logged at once, the others counted into the next
    // line (at most one every 10 seconds).
    let warning = server
        .log
        .wait_for("closed a connection without a valid PROXY protocol header");
    assert!(
        warning.contains("reason=not a PROXY protocol header"),
        "{warning}"
    );
    assert!(warning.contains("total=1"), "{warning}");
    server.log.wait_for("ending=NoProxyHeader");
    assert_eq!(server.log.count("connection opened"), 0);
}

#[test]
fn an_unfinished_header_is_closed_at_its_deadline() {
    let server = start("proxy_protocol_timeout = \"300ms\"");
    let mut stream = connect(server.tcp[0]);
    stream.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
    assert!(closed_by_server(&mut stream));
    let warning = server
        .log
        .wait_for("closed a connection without a valid PROXY protocol header");
    assert!(
        warning.contains("no complete header within 300ms (proxy_protocol_timeout)"),
        "{warning}"
    );
}

#[test]
fn a_reload_shortens_the_deadline_of_headers_already_awaited() {
    let config = |timeout: &str| {
        format!(
            "[server]\nlisten = [{{ address = \"127.0.0.1:0\", proxy_protocol = true }}]\nproxy_protocol_timeout = \"{timeout}\"\n"
        )
    };
    let server = Launcher::new(&config("1h")).start();
    let mut stream = connect(server.tcp[0]);
    stream.write_all(b"\r\n\r\n\0\r\n").unwrap();
    server.rewrite_config(&config("200ms"));
    server.signal(Signal::SIGHUP);
    server.log.wait_for("configuration reloaded");
    assert!(closed_by_server(&mut stream));
    let warning = server
        .log
        .wait_for("closed a connection without a valid PROXY protocol header");
    assert!(warning.contains("within 200ms"), "{warning}");
}

#[test]
fn a_peer_that_leaves_before_its_header_is_counted() {
    let server = start("");
    let stream = connect(server.tcp[0]);
    (&stream).write_all(b"PROXY ").unwrap();
    drop(stream);
    let warning = server
        .log
        .wait_for("closed a connection without a valid PROXY protocol header");
    assert!(
        warning.contains("the peer closed before its header was complete"),
        "{warning}"
    );
}

#[test]
fn a_plain_listener_echoes_a_proxy_header_as_data() {
    let server = start("");
    let plain = server.tcp[1];
    let mut bytes = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 7\r\n".to_vec();
    bytes.extend_from_slice(&v2_header(false, "192.0.2.7:40000".parse().unwrap(), plain));
    let mut stream = connect(plain);
    stream.write_all(&bytes).unwrap();
    assert_eq!(finish(stream), bytes);
    assert_eq!(server.log.count("192.0.2.7"), 0);
}

#[test]
fn the_start_up_line_names_the_proxied_listeners() {
    let server = start("");
    let started = server.log.wait_for("echo-server started");
    assert!(
        started.contains(&format!("proxy_protocol=\"{}\"", server.tcp[0])),
        "{started}"
    );
    let plain = Server::start("");
    let started = plain.log.wait_for("echo-server started");
    assert!(!started.contains("proxy_protocol"), "{started}");
}

#[test]
fn one_address_cannot_be_both_proxied_and_plain() {
    let dir = common::TestDir::new();
    let port = common::free_port();
    let conflicting = dir.write(
        "conflicting.toml",
        &format!("[server]\nlisten = [\"127.0.0.1:{port}\", {{ address = \"localhost:{port}\", proxy_protocol = true }}]\n"),
    );
    let (code, _, stderr) = common::run_server(&["--config", conflicting.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "127.0.0.1:{port} is listed both with and without proxy_protocol"
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_running_names_a_proxy_protocol_change_as_a_restart() {
    let dir = common::TestDir::new();
    let running = dir.write("running.toml", "[server]\nlisten = [\"127.0.0.1:7007\"]\n");
    let new = dir.write(
        "new.toml",
        "[server]\nlisten = [{ address = \"127.0.0.1:7007\", proxy_protocol = true }]\nproxy_protocol_timeout = \"2s\"\n",
    );
    let stdout = common::check_config_against_running(&new, &running);
    assert!(
        stdout.contains("# Takes effect only on a restart: server.listen\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[[server.listen]]\naddress = \"127.0.0.1:7007\"\nproxy_protocol = true\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("proxy_protocol_timeout = \"2s\""),
        "{stdout}"
    );
    // The effective settings are a config file that means the same.
    let printed = dir.write("printed.toml", &stdout);
    let (code, again, stderr) =
        common::run_server(&["-t", "--config", printed.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    let settings = |out: &str| {
        out.lines()
            .skip_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(settings(&again), settings(&stdout));
}

/// Under socket activation the configuration's listen entries do not apply:
/// the socket's name (`FileDescriptorName=proxy-protocol`) turns it on.
#[test]
fn an_activated_socket_named_proxy_protocol_takes_the_header() {
    let ports = [common::free_port(), common::free_port()];
    let (mut child, log) = common::socket_activate(&[
        "-l",
        &format!("127.0.0.1:{}", ports[0]),
        "-l",
        &format!("127.0.0.1:{}", ports[1]),
        "--fdname=proxy-protocol:plain",
        common::SERVER,
        "--log-level",
        "debug",
    ]);
    // From 127.0.0.2, so that the client named in the header is the only
    // 127.0.0.3 the log can show.
    let mut stream = common::connect_from(Ipv4Addr::new(127, 0, 0, 2), ports[0]);
    stream
        .write_all(b"PROXY TCP4 127.0.0.3 127.0.0.1 40003 7\r\nactivated")
        .unwrap();
    assert_eq!(finish(stream), b"activated");
    let started = log.wait_for("echo-server started");
    assert!(
        started.contains(&format!("proxy_protocol=\"127.0.0.1:{}\"", ports[0])),
        "{started}"
    );
    opened_line(&log, "127.0.0.3:40003");
    let mut stream = common::connect_from(Ipv4Addr::new(127, 0, 0, 2), ports[1]);
    stream.write_all(b"PROXY UNKNOWN\r\n").unwrap();
    assert_eq!(finish(stream), b"PROXY UNKNOWN\r\n");
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
}

#[test]
fn udp_is_unaffected() {
    let server = Launcher::new(
        "[server]\nlisten = [{ address = \"127.0.0.1:0\", proxy_protocol = true }]\nudp = true\n",
    )
    .start();
    let client = common::udp_client();
    let datagram = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 7\r\nudp";
    client.send_to(datagram, server.udp[0]).unwrap();
    let mut buf = [0; 128];
    let (len, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], datagram);
}

/// What kubelet `tcpSocket` probes, NLB TCP health checks, HAProxy's `check`
/// without send-proxy and port scans do: connect and close, sending nothing.
/// That is a plain close (debug), neither warned about nor counted.
#[test]
fn a_connection_that_sends_nothing_is_a_plain_close() {
    let server = start("");
    let stream = connect(server.tcp[0]);
    let own = stream.local_addr().unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let closed = server
        .log
        .wait_for(&format!("connection closed peer={own}"));
    assert!(closed.contains("ending=SentNothing"), "{closed}");
    // The next real failure is the first one counted.
    let mut stream = connect(server.tcp[0]);
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let warning = server
        .log
        .wait_for("closed a connection without a valid PROXY protocol header");
    assert!(warning.contains("total=1"), "{warning}");
    assert_eq!(
        server
            .log
            .count("closed a connection without a valid PROXY protocol header"),
        1
    );
}

/// The warning's throttle is the daemon's, not each worker's: many failures
/// spread over the workers give one line until the interval has passed.
#[test]
fn failures_on_several_workers_give_one_warning() {
    const FAILURES: usize = 40;
    let server = start("workers = 4");
    // One after the other, so that each is accepted by whichever worker
    // wakes first (a burst would be accepted by one worker in one go).
    for _ in 0..FAILURES {
        let mut stream = connect(server.tcp[0]);
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(closed_by_server(&mut stream));
    }
    // Every failure has been counted once its connection is closed.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while server.log.count("ending=NoProxyHeader") < FAILURES {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            server.log.all()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        server
            .log
            .count("closed a connection without a valid PROXY protocol header"),
        1,
        "{:#?}",
        server.log.all()
    );
}

/// `--port` (or `--host`) that makes a PROXY listener and a plain one the
/// same address is refused: either way one kind of client would be broken.
#[test]
fn an_override_that_merges_a_proxied_and_a_plain_listener_is_refused() {
    let dir = common::TestDir::new();
    let plain = "\"127.0.0.1:17007\"";
    let proxied = "{ address = \"127.0.0.1:17008\", proxy_protocol = true }";
    // Whichever comes first, neither may silently win.
    for (name, listen) in [
        ("plain-first.toml", [plain, proxied]),
        ("proxied-first.toml", [proxied, plain]),
    ] {
        let config = dir.write(
            name,
            &format!("[server]\nlisten = [{}]\n", listen.join(", ")),
        );
        let (code, stdout, stderr) = common::run_server(
            &[
                "-t",
                "--config",
                config.to_str().unwrap(),
                "--port",
                "17100",
            ],
            &[],
        );
        assert_eq!(code, 78, "{name}: {stdout}{stderr}");
        assert!(
            stderr.contains(
                "--host/--port make 127.0.0.1:17100 both a PROXY protocol listener and a plain one"
            ),
            "{name}: {stderr}"
        );
    }
}

/// Under socket activation the configuration's `proxy_protocol` does not
/// apply; a warning says so when no passed socket carries the name.
#[test]
fn activation_without_the_name_warns_about_configured_proxy_listeners() {
    let dir = common::TestDir::new();
    let config = dir.write(
        "proxied.toml",
        "[server]\nlisten = [{ address = \"127.0.0.1:7007\", proxy_protocol = true }]\n",
    );
    let port = common::free_port();
    let (mut child, log) = common::socket_activate(&[
        "-l",
        &format!("127.0.0.1:{port}"),
        "--fdname=plain",
        common::SERVER,
        "--config",
        config.to_str().unwrap(),
    ]);
    // The first connection starts the server.
    let stream = connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(finish(stream), b"");
    // The warning comes before the start-up line.
    log.wait_for("echo-server started");
    let warnings: Vec<String> = log
        .all()
        .into_iter()
        .filter(|line| line.contains("FileDescriptorName=proxy-protocol"))
        .collect();
    // Stopped before anything is asserted, so that a failure leaves no
    // daemon behind.
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
    assert_eq!(warnings.len(), 1, "{:#?}", log.all());
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains("127.0.0.1:7007"), "{}", warnings[0]);
}
