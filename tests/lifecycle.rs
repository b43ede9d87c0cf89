//! Start-up, reload and stop, driven by real signals.

#![cfg(unix)]

mod common;

use std::net::TcpStream;

use common::{Launcher, PATIENCE, Server, Signal, closed_by_server, echo_once, round_trip};

#[test]
fn the_start_up_line_names_version_config_and_addresses() {
    let server = Server::start("");
    let line = server.log.wait_for("echo-server started");
    assert!(
        line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(
        line.contains(&server.config_path.display().to_string()),
        "{line}"
    );
    assert!(line.contains(&format!("tcp://{}", server.addr())), "{line}");
}

#[test]
fn sigterm_lets_open_connections_finish_then_exits_zero() {
    let config = "[server]\nport = 0\nshutdown_grace = \"1m\"\n";
    let mut server = Launcher::new(config).start();
    let mut open = server.connect();
    echo_once(&mut open, b"before");

    server.signal(Signal::SIGTERM);
    server
        .log
        .wait_for("stopping: no longer accepting connections");
    // New connections are refused...
    assert!(
        TcpStream::connect(server.addr()).is_err(),
        "still accepting after SIGTERM"
    );
    // ...while the open one is still served, until its client is done.
    echo_once(&mut open, b"during the grace period");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited while a connection was open"
    );
    drop(open);

    let status = server.wait();
    assert_eq!(status.code(), Some(0));
    server.log.wait_for("all connections finished");
}

#[test]
fn sigterm_closes_connections_still_open_when_the_grace_period_ends() {
    let mut server = Server::start("shutdown_grace = \"300ms\"\n");
    let mut lingering = server.connect();
    echo_once(&mut lingering, b"hello");
    server.signal(Signal::SIGTERM);
    let status = server.wait();
    assert_eq!(status.code(), Some(0));
    server.log.wait_for("shutdown grace period over");
    assert!(
        closed_by_server(&mut lingering),
        "the connection outlived the server"
    );
}

#[test]
fn a_second_stop_signal_closes_open_connections_at_once() {
    let mut server = Server::start("shutdown_grace = \"1h\"\n");
    let mut open = server.connect();
    echo_once(&mut open, b"hello");
    server.signal(Signal::SIGINT);
    server.log.wait_for("no longer accepting connections");
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait().code(), Some(0));
    server.log.wait_for("second stop signal");
    assert!(
        closed_by_server(&mut open),
        "the connection outlived the server"
    );
}

#[test]
fn sigint_stops_too() {
    let mut server = Server::start("");
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait().code(), Some(0));
    server.log.wait_for("signal=\"SIGINT\"");
}

#[test]
fn sighup_applies_a_changed_file_without_dropping_connections() {
    let server = Server::start("max_connections = 100\n");
    let mut open = server.connect();
    echo_once(&mut open, b"before reload");
    assert_eq!(
        server.log.count("connection opened"),
        0,
        "debug lines at level info"
    );

    let seen = server.log.all().len();
    server.rewrite_config("[server]\nport = 0\nmax_connections = 1\n[log]\nlevel = \"debug\"\n");
    server.signal(Signal::SIGHUP);
    server.log.wait_for_after(seen, "configuration reloaded");

    // The open connection survived, the new level shows debug lines, and the
    // new limit (1, already taken) refuses a second connection.
    echo_once(&mut open, b"after reload");
    let mut second = server.connect();
    assert!(
        closed_by_server(&mut second),
        "max_connections was not lowered"
    );
    server.log.wait_for("connection limit reached");
    drop(open);
    server.log.wait_for("connection closed");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_configuration() {
    let server = Server::start("");
    let mut open = server.connect();
    let seen = server.log.all().len();
    server.rewrite_config("[server]\nport = 0\nmax_connections = \"lots\"\n");
    server.signal(Signal::SIGHUP);
    let complaint = server.log.wait_for_after(seen, "was not reloaded");
    assert!(complaint.contains("line 3, column 19"), "{complaint}");
    echo_once(&mut open, b"still serving");
    assert_eq!(
        round_trip(server.addr(), b"new connections too"),
        b"new connections too"
    );
}

#[test]
fn sighup_reports_settings_that_need_a_restart() {
    let server = Server::start("workers = 1\n");
    server.rewrite_config("[server]\nport = 0\nudp = true\nworkers = 2\n");
    // Until the restart, every reload still says so.
    for _ in 0..2 {
        let seen = server.log.all().len();
        server.signal(Signal::SIGHUP);
        let warning = server
            .log
            .wait_for_after(seen, "take effect only after a restart");
        assert!(warning.contains("server.udp"), "{warning}");
        assert!(warning.contains("server.workers"), "{warning}");
    }
}

#[test]
fn file_logs_rotate_into_the_directory_and_are_flushed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let config = format!(
        "[server]\nport = 0\n[log]\ndirectory = \"{}\"\nrotation = \"never\"\nformat = \"json\"\n",
        logs.display()
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    // With a directory nothing goes to stderr, so the start-up line is read from the file.
    let mut child = std::process::Command::new(common::SERVER)
        .arg("--config")
        .arg(&config_path)
        .spawn()
        .unwrap();
    let log_file = logs.join("echo-server.log");
    let deadline = std::time::Instant::now() + PATIENCE;
    let started = loop {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("echo-server started")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no start-up line in {}",
            log_file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        started.starts_with('{') && started.contains("\"listening\":\"tcp://"),
        "{started}"
    );

    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
    let text = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .contains("all connections finished"),
        "the last lines were lost:\n{text}"
    );
}
