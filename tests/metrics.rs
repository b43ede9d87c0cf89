//! The daemon's `/metrics` endpoint, on real sockets: what a scrape says
//! after real traffic (connections opened, echoed, refused over
//! `max_connections`, closed by their peer, by the idle timeout and for a
//! missing PROXY protocol header; UDP datagrams answered and dropped;
//! reloads that worked and one that did not), the formats it speaks, how
//! it answers what is not a scrape, and the socket systemd can pass it.
//! (`tests/monitoring.rs` has a real Prometheus and `promtool` read it.)

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{PATIENCE, Server, Signal, closed_by_server, echo_once, run_server, udp_client};

/// Sends `request` as it is and returns the whole response: head and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    (head.to_string(), body.to_string())
}

/// A scrape as `curl` makes it: the classic text format.
fn scrape(server: &Server) -> String {
    let addr = server.metrics.expect("the server serves /metrics");
    let (head, body) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body
}

/// The sum of the samples named `name` whose labels contain every one of
/// `labels` (`worker="1"`), in the text format.
fn value(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, "}"));
            (series_name == name && labels.iter().all(|l| series_labels.contains(l)))
                .then(|| value.parse::<u64>().unwrap())
        })
        .sum()
}

/// Scrapes until `name{labels}` sums to `expected`: counts are read at
/// scrape time and the workers keep them as they get to the events.
fn wait_for_value(server: &Server, name: &str, labels: &[&str], expected: u64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = scrape(server);
        let found = value(&text, name, labels);
        if found == expected {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} stayed {found}, expected {expected}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const METRICS_CONFIG: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

#[test]
fn a_scrape_counts_real_tcp_traffic_refusals_closes_and_reloads() {
    let config = |idle: &str| {
        format!(
            "[server]\nport = 0\nworkers = 2\nmax_connections = 2\nidle_timeout = \"{idle}\"\n{METRICS_CONFIG}"
        )
    };
    let server = common::Launcher::new(&config("0")).start();
    let text = scrape(&server);
    assert_eq!(
        value(
            &text,
            "echo_server_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ),
        1,
        "{text}"
    );
    assert_eq!(value(&text, "echo_server_tcp_max_connections", &[]), 2);
    assert_eq!(
        value(&text, "echo_server_tcp_connections_accepted_total", &[]),
        0
    );
    // One series per worker, so an imbalance shows.
    for worker in ["worker=\"1\"", "worker=\"2\""] {
        assert!(
            text.contains(&format!("echo_server_tcp_connections_open{{{worker}}} 0")),
            "{text}"
        );
    }

    let mut first = server.connect();
    echo_once(&mut first, &common::random_bytes(1000, 1));
    let mut second = server.connect();
    echo_once(&mut second, &common::random_bytes(500, 2));
    // The third is over max_connections: accepted, then closed at once.
    let mut third = server.connect();
    assert!(closed_by_server(&mut third));
    let text = wait_for_value(&server, "echo_server_tcp_connections_refused_total", &[], 1);
    assert_eq!(
        value(&text, "echo_server_tcp_connections_accepted_total", &[]),
        2,
        "{text}"
    );
    assert_eq!(
        value(&text, "echo_server_tcp_connections_open", &[]),
        2,
        "{text}"
    );
    assert_eq!(
        value(&text, "echo_server_tcp_received_bytes_total", &[]),
        1500,
        "{text}"
    );
    assert_eq!(
        value(&text, "echo_server_tcp_sent_bytes_total", &[]),
        1500,
        "{text}"
    );

    drop(first);
    let text = wait_for_value(
        &server,
        "echo_server_tcp_connections_closed_total",
        &["reason=\"peer\""],
        1,
    );
    assert_eq!(
        value(&text, "echo_server_tcp_connections_open", &[]),
        1,
        "{text}"
    );

    // A reload that shortens the idle timeout closes the idle connection.
    server.rewrite_config(&config("100ms"));
    server.signal(Signal::SIGHUP);
    let text = wait_for_value(
        &server,
        "echo_server_tcp_connections_closed_total",
        &["reason=\"idle_timeout\""],
        1,
    );
    assert!(closed_by_server(&mut second));
    assert_eq!(
        value(&text, "echo_server_tcp_connections_open", &[]),
        0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "echo_server_config_reloads_total",
            &["result=\"success\""]
        ),
        1
    );
    assert_eq!(
        value(&text, "echo_server_config_last_reload_successful", &[]),
        1
    );

    // A reload of a broken file is counted as failed; the old one runs on.
    server.rewrite_config("[server]\nport = \"seven\"\n");
    server.signal(Signal::SIGHUP);
    let text = wait_for_value(
        &server,
        "echo_server_config_reloads_total",
        &["result=\"failure\""],
        1,
    );
    assert_eq!(
        value(&text, "echo_server_config_last_reload_successful", &[]),
        0,
        "{text}"
    );
    assert_eq!(
        value(&text, "echo_server_tcp_accept_errors_total", &[]),
        0,
        "{text}"
    );
    let loaded = value(
        &text,
        "echo_server_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(
        loaded >= value(&text, "echo_server_start_time_seconds", &[]),
        "{text}"
    );
}

#[test]
fn a_scrape_counts_udp_datagrams_answered_and_dropped_over_the_rate_limit() {
    let server = Server::start(&format!("udp = true\nudp_rate_limit = 3\n{METRICS_CONFIG}"));
    let socket = udp_client();
    socket.connect(server.udp[0]).unwrap();
    let sent = 20;
    for i in 0..sent {
        socket.send(&[i; 10]).unwrap();
    }
    server.log.wait_for("over its rate limit");
    let text = wait_for_value(
        &server,
        "echo_server_udp_received_bytes_total",
        &[],
        u64::from(sent) * 10,
    );
    let answered = common::count_udp_answers_until_quiet(&socket);
    let listener = format!("listener=\"{}\"", server.udp[0]);
    assert_eq!(
        value(
            &text,
            "echo_server_udp_datagrams_answered_total",
            &[&listener]
        ),
        answered,
        "{text}"
    );
    assert_eq!(
        value(&text, "echo_server_udp_sent_bytes_total", &[]),
        answered * 10,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "echo_server_udp_datagrams_dropped_total",
            &["reason=\"rate_limit\""]
        ),
        u64::from(sent) - answered,
        "{text}"
    );
    assert!(answered >= 3 && answered < u64::from(sent), "{answered}");
}

#[test]
fn openmetrics_when_asked_for_and_the_classic_text_format_otherwise() {
    let server = Server::start(METRICS_CONFIG);
    let addr = server.metrics.unwrap();
    let (head, body) = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
    );
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE echo_server_tcp_connections_accepted counter\n"),
        "{body}"
    );
    let (head, body) = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!body.contains("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE echo_server_tcp_connections_accepted_total counter\n"),
        "{body}"
    );
}

#[test]
fn only_get_metrics_is_answered_and_a_stuck_scraper_does_not_stop_the_echo() {
    let server = Server::start(METRICS_CONFIG);
    let addr = server.metrics.unwrap();
    let status = |request: &[u8]| {
        exchange(addr, request)
            .0
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    let (head, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 405 ") && head.contains("Allow: GET"),
        "{head}"
    );
    assert_eq!(status(b"HELLO\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(
        status(huge.as_bytes()),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );

    // A scraper that connects and says nothing holds only the metrics
    // thread: the echo goes on.
    let _stuck = TcpStream::connect(addr).unwrap();
    let mut client = server.connect();
    echo_once(&mut client, b"still echoing");
    // And scrapes are answered again once it has timed out.
    assert!(scrape(&server).contains("echo_server_build_info"));
}

#[test]
fn metrics_are_off_by_default_and_never_on_an_echo_address() {
    let server = Server::start("");
    assert_eq!(server.metrics, None);
    assert!(
        !server
            .log
            .wait_for("echo-server started")
            .contains("metrics=")
    );

    let dir = common::TestDir::new();
    let clash = dir.write(
        "clash.toml",
        "[server]\nlisten = [\"0.0.0.0:7\"]\n[metrics]\nlisten = \"127.0.0.1:7\"\n",
    );
    let (code, _, stderr) = run_server(
        &["--check-config", "--config", clash.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("line 4") && stderr.contains("a port of its own"),
        "{stderr}"
    );

    // The address is read at start only; --check-config --running says so.
    let running = dir.write("running.toml", "");
    let new = dir.write("new.toml", METRICS_CONFIG);
    let stdout = common::check_config_against_running(&new, &running);
    assert!(
        stdout.contains("# Takes effect only on a restart: metrics.listen"),
        "{stdout}"
    );
}

#[test]
fn a_socket_named_metrics_from_the_service_manager_serves_the_metrics() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (echo, metrics) = (free(), free());
    // `[metrics] listen` does not apply under socket activation, as `listen`
    // does not: were it bound, this address (held here) would stop the start.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = common::TestDir::new();
    let config = dir.write(
        "config.toml",
        &format!("[metrics]\nlisten = \"{}\"\n", held.local_addr().unwrap()),
    );
    // As echo-server.socket and echo-server-metrics.socket pass them.
    let (mut child, log) = common::socket_activate(&[
        "-l",
        &echo.to_string(),
        "-l",
        &metrics.to_string(),
        "--fdname=echo:metrics",
        common::SERVER,
        "--config",
        config.to_str().unwrap(),
    ]);
    // A scrape starts the daemon, as an echo would.
    let (head, body) = exchange(metrics, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(body.contains("echo_server_build_info"), "{body}");
    let started = log.wait_for("echo-server started");
    assert!(
        started.contains(&format!("metrics=\"http://{metrics}/metrics\"")),
        "{started}"
    );
    // The metrics socket is not an echo socket.
    assert!(!started.contains(&format!("tcp://{metrics}")), "{started}");
    assert_eq!(common::round_trip(echo, b"activated"), b"activated");
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));

    // Without a socket named metrics, no metrics: still no bind.
    let echo = free();
    let (mut child, log) = common::socket_activate(&[
        "-l",
        &echo.to_string(),
        common::SERVER,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(common::round_trip(echo, b"activated"), b"activated");
    let started = log.wait_for("echo-server started");
    assert!(!started.contains("metrics="), "{started}");
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
}

#[test]
fn a_connection_without_a_proxy_protocol_header_is_counted_as_closed_for_it() {
    let server = common::Launcher::new(&format!(
        "[server]\nlisten = [{{ address = \"127.0.0.1:0\", proxy_protocol = true }}]\n{METRICS_CONFIG}"
    ))
    .start();
    let mut client = server.connect();
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut client));
    let text = wait_for_value(
        &server,
        "echo_server_tcp_connections_closed_total",
        &["reason=\"proxy_header\""],
        1,
    );
    assert_eq!(
        value(&text, "echo_server_tcp_received_bytes_total", &[]),
        18,
        "{text}"
    );
    assert_eq!(
        value(&text, "echo_server_tcp_sent_bytes_total", &[]),
        0,
        "{text}"
    );
}
