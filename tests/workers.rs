//! `[server] workers`: TCP served by several threads, each with its own
//! event loop, behaves as one server.

#![cfg(target_os = "linux")]

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{
    Launcher, PATIENCE, Server, Signal, clients_at_once_get_their_own_bytes, closed_by_server,
    echo_once,
};

/// Asserts that the server's worker threads are those named `expected`. A
/// thread names itself once it runs, so this waits for them a while.
fn assert_worker_threads(server: &Server, expected: &[&str]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap();
        let mut names: Vec<String> = tasks
            .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .filter(|name| name.starts_with("echo-worker"))
            .collect();
        names.sort();
        if names == expected || Instant::now() > deadline {
            assert_eq!(names, expected);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_configured_number_of_workers_serve_many_clients_at_once() {
    let server = Server::start("workers = 3\n");
    assert!(
        server
            .log
            .wait_for("echo-server started")
            .contains("workers=3"),
        "{:?}",
        server.log.all()
    );
    assert_worker_threads(
        &server,
        &["echo-worker-1", "echo-worker-2", "echo-worker-3"],
    );
    clients_at_once_get_their_own_bytes(server.addr(), 60, 20);
}

#[test]
fn zero_workers_means_one_per_cpu_the_server_may_run_on() {
    let server = Launcher::new("[server]\nport = 0\nworkers = 0\n")
        .wrapped_in(&["taskset", "--cpu-list", "0"])
        .start();
    assert!(
        server
            .log
            .wait_for("echo-server started")
            .contains("workers=1"),
        "{:?}",
        server.log.all()
    );
    assert_worker_threads(&server, &["echo-worker-1"]);
    echo_once(&mut server.connect(), b"one CPU, one worker");
}

#[test]
fn a_stop_waits_for_connections_on_every_worker_and_a_second_stop_ends_them_all() {
    let mut server = Server::start("workers = 4\nshutdown_grace = \"1h\"\n");
    let mut open: Vec<TcpStream> = (0..16).map(|_| server.connect()).collect();
    for stream in &mut open {
        echo_once(stream, b"before");
    }
    server.signal(Signal::SIGTERM);
    server.log.wait_for("no longer accepting connections");
    for stream in &mut open {
        echo_once(stream, b"during the grace period");
    }
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait().code(), Some(0));
    for stream in &mut open {
        assert!(closed_by_server(stream), "a connection outlived the server");
    }
}
