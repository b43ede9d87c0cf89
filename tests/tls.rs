//! The TLS echo (`[tls]`) against foreign TLS clients: `openssl s_client`,
//! `socat OPENSSL:` and `ncat --ssl` (Debian's, installed by
//! scripts/test.sh). They get byte-exact echoes over TLS 1.3 and 1.2,
//! through a half-close and 100 MiB streamed; a client without a
//! certificate is refused when `client_ca` asks for one; a SIGHUP serves a
//! new certificate to new connections while an old one keeps echoing, and a
//! broken new key keeps the old certificate. echo-client's `--tls` checks,
//! sends, pipes and benches against it, with and without a client
//! certificate. The CA, certificates and keys are made by the `openssl`
//! command at test time (tests/common/tls.rs).
//!
//! rustls, the daemon's own TLS library, is used as a client only where a
//! foreign program cannot say what is checked: whether the daemon's last
//! word was a close_notify, and how much memory idle connections cost.
//! Behind the `host-tests` feature: it needs programs that the plain
//! `cargo test` does not.

#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::tls::{Pki, rustls_client, rustls_connect, section, start};
use common::{PATIENCE, finish_with_patience, random_bytes, run};
use nix::sys::signal::Signal;

/// `openssl s_client` connected, with its standard input and output.
struct SClient {
    child: Child,
    stdin: ChildStdin,
    stdout: Option<ChildStdout>,
}

impl SClient {
    fn connect(pki: &Pki, addr: SocketAddr, args: &[&str]) -> SClient {
        let mut child = Command::new("openssl")
            .arg("s_client")
            .args(["-connect", &addr.to_string(), "-servername", "localhost"])
            .arg("-CAfile")
            .arg(pki.file("ca.pem"))
            // -quiet: no session details on standard output, and an end of
            // standard input does not close the connection.
            .args(["-verify_return_error", "-quiet"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take();
        SClient {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends `payload` (at most what the pipes hold) and returns what came
    /// back of the same length, or less if the connection ended.
    fn round_trip(&mut self, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 32 * 1024);
        self.stdin.write_all(payload).unwrap();
        self.stdin.flush().unwrap();
        let mut stdout = self.stdout.take().unwrap();
        let len = payload.len();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut echoed = Vec::with_capacity(len);
            let _ = (&mut stdout).take(len as u64).read_to_end(&mut echoed);
            let _ = sender.send((echoed, stdout));
        });
        match receiver.recv_timeout(PATIENCE) {
            Ok((echoed, stdout)) => {
                self.stdout = Some(stdout);
                echoed
            }
            Err(_) => panic!("no echo from s_client within {PATIENCE:?}"),
        }
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The subject of the certificate the server presents to a new connection.
fn served_subject(pki: &Pki, addr: SocketAddr) -> String {
    let mut client = Command::new("openssl");
    client
        .arg("s_client")
        .args(["-connect", &addr.to_string(), "-servername", "localhost"])
        .arg("-CAfile")
        .arg(pki.file("ca.pem"))
        .arg("-verify_return_error");
    let finished = finish_with_patience(client, b"");
    let mut subject = Command::new("openssl");
    subject.args(["x509", "-noout", "-subject"]);
    let subject = finish_with_patience(subject, &finished.stdout);
    assert_eq!(
        subject.code, 0,
        "no certificate from s_client: {}",
        finished.stderr
    );
    subject.stdout().trim().to_string()
}

/// `socat - OPENSSL:` sending `payload` and half-closing: what came back.
fn socat(pki: &Pki, addr: SocketAddr, extra: &str, payload: &[u8]) -> common::Finished {
    let mut command = Command::new("socat");
    command.args([
        "-t",
        "20",
        "-",
        &format!(
            "OPENSSL:{addr},cafile={}{extra}",
            pki.file("ca.pem").display()
        ),
    ]);
    finish_with_patience(command, payload)
}

#[test]
fn s_client_gets_echoes_over_tls_1_3_and_1_2_and_not_over_1_1() {
    let pki = Pki::new();
    let (server, addr) = start(&section(&pki, "server.pem", "server.key", ""));
    for version in ["-tls1_3", "-tls1_2"] {
        let mut client = SClient::connect(&pki, addr, &[version]);
        for (round, len) in [1, 100, 16 * 1024, 32 * 1024].into_iter().enumerate() {
            let payload = random_bytes(len, round as u64);
            assert!(
                client.round_trip(&payload) == payload,
                "{version}: {len} bytes not echoed exactly"
            );
        }
    }
    // TLS 1.1 is not offered: the handshake fails, is counted, and logged.
    let mut client = Command::new("openssl");
    client
        .args(["s_client", "-connect", &addr.to_string(), "-tls1_1"])
        .arg("-CAfile")
        .arg(pki.file("ca.pem"));
    let finished = finish_with_patience(client, b"");
    assert_ne!(
        finished.code, 0,
        "TLS 1.1 was accepted: {}",
        finished.stderr
    );
    server.log.wait_for("TLS handshake failed");
}

#[test]
fn socat_and_ncat_get_100_mib_back_through_a_half_close() {
    let pki = Pki::new();
    let (_server, addr) = start(&section(&pki, "server.pem", "server.key", ""));
    let payload = random_bytes(100 << 20, 7);
    let finished = socat(&pki, addr, "", &payload);
    assert_eq!(finished.code, 0, "socat: {}", finished.stderr);
    assert!(
        finished.stdout == payload,
        "socat: {} of {} bytes came back, or not the same",
        finished.stdout.len(),
        payload.len()
    );
    let mut ncat = Command::new("ncat");
    ncat.args(["--ssl", "--ssl-verify", "--ssl-trustfile"])
        .arg(pki.file("ca.pem"))
        .args(["localhost", &addr.port().to_string()]);
    let finished = finish_with_patience(ncat, &payload);
    assert_eq!(finished.code, 0, "ncat: {}", finished.stderr);
    assert!(
        finished.stdout == payload,
        "ncat: {} of {} bytes came back, or not the same",
        finished.stdout.len(),
        payload.len()
    );
}

#[test]
fn client_ca_refuses_a_client_without_a_certificate_of_its_issue() {
    let pki = Pki::new();
    let client_ca = format!("client_ca = {:?}\n", pki.file("ca.pem"));
    let (server, addr) = start(&section(&pki, "server.pem", "server.key", &client_ca));
    let with_cert = format!(
        ",cert={},key={}",
        pki.file("client.pem").display(),
        pki.file("client.key").display()
    );
    let finished = socat(&pki, addr, &with_cert, b"mutual\n");
    assert_eq!(finished.stdout(), "mutual\n", "{}", finished.stderr);
    // No certificate, and a certificate of another CA.
    for extra in [
        String::new(),
        format!(
            ",cert={},key={}",
            pki.file("stranger.pem").display(),
            pki.file("stranger.key").display()
        ),
    ] {
        let finished = socat(&pki, addr, &extra, b"let me in\n");
        assert!(
            finished.stdout.is_empty(),
            "echoed without a client certificate ({extra}): {}",
            finished.stdout()
        );
    }
    let warning = server.log.wait_for("TLS handshake failed");
    assert!(warning.contains("certificate"), "{warning}");
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_connections_only() {
    let pki = Pki::new();
    let (server, addr) = start(&section(&pki, "server.pem", "server.key", ""));
    assert_eq!(served_subject(&pki, addr), "subject=CN = server");
    let mut old = SClient::connect(&pki, addr, &[]);
    assert_eq!(old.round_trip(b"before\n"), b"before\n");

    server.rewrite_config(&format!(
        "[server]\nport = 0\n{}",
        section(&pki, "server2.pem", "server2.key", "")
    ));
    let reloads = server.log.count("configuration reloaded");
    server.signal(Signal::SIGHUP);
    server.log.wait_for_after(reloads, "configuration reloaded");
    assert_eq!(served_subject(&pki, addr), "subject=CN = server2");
    assert_eq!(old.round_trip(b"after\n"), b"after\n");

    // A key that does not belong to the certificate: the last good one stays.
    server.rewrite_config(&format!(
        "[server]\nport = 0\n{}",
        section(&pki, "server.pem", "other.key", "")
    ));
    server.signal(Signal::SIGHUP);
    let refused = server.log.wait_for("does not belong to certificate");
    assert!(refused.contains("not reloaded"), "{refused}");
    assert_eq!(served_subject(&pki, addr), "subject=CN = server2");
    assert_eq!(old.round_trip(b"still\n"), b"still\n");
}

#[test]
fn broken_files_stop_the_start_with_what_to_do() {
    let pki = Pki::new();
    pki.dir.write("garbage.pem", "not a certificate\n");
    for (certificate, key, code, needle) in [
        ("missing.pem", "server.key", 66, "cannot read it"),
        ("garbage.pem", "server.key", 78, "no certificate in it"),
        ("server.pem", "garbage.pem", 78, "no private key in it"),
        (
            "server.pem",
            "other.key",
            78,
            "does not belong to certificate",
        ),
    ] {
        let config = pki.dir.write(
            "config.toml",
            &format!(
                "[server]\nport = 0\n{}",
                section(&pki, certificate, key, "")
            ),
        );
        let mut command = Command::new(common::SERVER);
        command
            .args(["--check-config", "--config"])
            .arg(&config)
            .env_remove("ECHO_SERVER_CONFIG");
        let finished = finish_with_patience(command, b"");
        assert_eq!(
            finished.code, code,
            "{certificate} {key}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains(needle),
            "{certificate} {key}: {}",
            finished.stderr
        );
    }
}

#[test]
fn shutdown_and_idle_timeout_end_with_close_notify() {
    let pki = Pki::new();
    let (mut server, addr) = start(&format!(
        "idle_timeout = \"1s\"\nshutdown_grace = \"200ms\"\n{}",
        section(&pki, "server.pem", "server.key", "")
    ));
    let config = rustls_client(&pki);
    // Idle: closed with a close_notify, which rustls reads as a clean end
    // (without it, an UnexpectedEof error).
    let mut idle = rustls_connect(&config, addr);
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest)
        .expect("a close_notify before the end");
    // A handshake that never completes is an idle connection too.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    assert!(common::closed_by_server(&mut silent));

    let mut open = rustls_connect(&config, addr);
    server.signal(Signal::SIGTERM);
    open.read_to_end(&mut rest)
        .expect("a close_notify before the end");
    assert!(server.wait().success());
}

#[test]
fn an_idle_tls_connection_costs_under_16_kib() {
    const CONNECTIONS: u64 = 1000;
    let pki = Pki::new();
    let (server, addr) = start(&format!(
        "workers = 1\n{}",
        section(&pki, "server.pem", "server.key", "")
    ));
    let config = rustls_client(&pki);
    // The first connections grow the worker's tables and rustls's session
    // cache, which later ones reuse.
    let warm: Vec<_> = (0..100).map(|_| rustls_connect(&config, addr)).collect();
    let before = server.rss_kib();
    let open: Vec<_> = (0..CONNECTIONS)
        .map(|_| rustls_connect(&config, addr))
        .collect();
    let per_connection = server.rss_kib().saturating_sub(before) * 1024 / CONNECTIONS;
    println!("an idle TLS connection costs {per_connection} bytes of the server's memory");
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per idle TLS connection"
    );
    drop((warm, open));
}

/// The shipped configuration's example `[tls]`, uncommented, is valid.
#[test]
fn the_shipped_example_is_valid_once_uncommented() {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/echo-server.toml"),
    )
    .unwrap();
    let pki = Pki::new();
    let section: String = shipped
        .lines()
        .skip_while(|line| *line != "# [tls]")
        .map_while(|line| line.strip_prefix("# "))
        .map(|line| format!("{line}\n"))
        .collect::<String>()
        .replace(
            "/etc/echo-server/tls/server.pem",
            &pki.file("server.pem").display().to_string(),
        )
        .replace(
            "/etc/echo-server/tls/server.key",
            &pki.file("server.key").display().to_string(),
        )
        .replace(
            "/etc/echo-server/tls/client-ca.pem",
            &pki.file("ca.pem").display().to_string(),
        );
    assert!(section.contains("certificate = "), "{section}");
    let config = pki
        .dir
        .write("shipped.toml", &format!("[server]\nport = 0\n{section}"));
    let finished = run(
        common::SERVER,
        &["--check-config", "--config", config.to_str().unwrap()],
    );
    assert!(finished.stdout().contains("[tls]"), "{}", finished.stdout());
}

#[test]
fn alpn_refuses_a_client_that_offers_only_other_protocols() {
    let pki = Pki::new();
    let (server, addr) = start(&section(
        &pki,
        "server.pem",
        "server.key",
        "alpn = [\"echo\"]\n",
    ));
    let mut client = SClient::connect(&pki, addr, &["-alpn", "h2,echo"]);
    assert_eq!(client.round_trip(b"alpn\n"), b"alpn\n");
    let mut client = SClient::connect(&pki, addr, &["-alpn", "h2"]);
    assert_eq!(client.round_trip(b"alpn\n"), b"");
    let warning = server.log.wait_for("TLS handshake failed");
    assert!(warning.contains("any known protocol"), "{warning}");
}

/// Under socket activation a socket named `tls` is a TLS listener, with
/// the certificate of `[tls]`.
#[test]
fn an_activated_socket_named_tls_speaks_tls() {
    let pki = Pki::new();
    let config = pki.dir.write(
        "activated.toml",
        &section(&pki, "server.pem", "server.key", ""),
    );
    let ports = [common::free_port(), common::free_port()];
    let (mut child, log) = common::socket_activate(&[
        "-l",
        &format!("127.0.0.1:{}", ports[0]),
        "-l",
        &format!("127.0.0.1:{}", ports[1]),
        "--fdname=tls:plain",
        common::SERVER,
        "--config",
        config.to_str().unwrap(),
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    let finished = socat(&pki, addr, "", b"activated\n");
    assert_eq!(finished.stdout(), "activated\n", "{}", finished.stderr);
    let started = log.wait_for("echo-server started");
    assert!(
        started.contains(&format!("tls://127.0.0.1:{}", ports[0]))
            && started.contains(&format!("tcp://127.0.0.1:{}", ports[1])),
        "{started}"
    );
    let plain = common::round_trip(SocketAddr::from(([127, 0, 0, 1], ports[1])), b"plain");
    assert_eq!(plain, b"plain");
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
}

/// echo-client with `args`, `input` on its standard input.
fn echo_client(args: &[&str], input: &[u8]) -> common::Finished {
    let mut command = Command::new(common::CLIENT);
    command.args(args);
    finish_with_patience(command, input)
}

/// The project's own client against its own server: `check --tls` reports
/// TLS 1.3, the cipher suite and the days until the certificate expires;
/// `send`, a byte-exact `pipe` and a short `bench` go through.
#[test]
fn echo_client_checks_sends_pipes_and_benches_over_tls() {
    let pki = Pki::new();
    let (_server, addr) = start(&section(&pki, "server.pem", "server.key", ""));
    let target = format!("localhost:{}", addr.port());
    let ca = pki.arg("ca.pem");
    let tls = ["--tls", "--ca", &ca];

    let checked = echo_client(&[&["check", &target][..], &tls].concat(), b"");
    assert_eq!(checked.code, 0, "{}{}", checked.stdout(), checked.stderr);
    let line = checked.stdout();
    assert!(line.contains(" TLSv1.3 TLS13_"), "{line}");
    assert!(
        line.contains(&format!(
            "certificate expires in 30 days ({})",
            pki.not_after("server")
        )),
        "{line}"
    );

    let sent = echo_client(
        &[&["send", "-t", &target][..], &tls, &["over", "TLS"]].concat(),
        b"",
    );
    assert_eq!(
        (sent.code, sent.stdout()),
        (0, "over TLS".to_string()),
        "{}",
        sent.stderr
    );

    let data = random_bytes(10 << 20, 30);
    let piped = echo_client(&[&["pipe", &target][..], &tls].concat(), &data);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(piped.stdout == data, "the 10 MiB came back different");

    let benched = echo_client(
        &[
            &["bench", &target, "-d", "1s", "-c", "4", "--json"][..],
            &tls,
        ]
        .concat(),
        b"",
    );
    assert_eq!(benched.code, 0, "{}{}", benched.stdout(), benched.stderr);
    let report: serde_json::Value = serde_json::from_slice(&benched.stdout).unwrap();
    assert_eq!(report["protocol"], "TLS");
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    for (kind, count) in report["errors"].as_object().unwrap() {
        assert_eq!(count, 0, "{kind} errors: {report}");
    }
}

/// With `client_ca`, echo-client echoes with `--cert`/`--key` of its CA,
/// and without them fails with the certificate exit code and words that
/// say what to give.
#[test]
fn echo_client_needs_its_certificate_where_client_ca_is_set() {
    const CERTIFICATE: i32 = echo_service::shared::exit_code::CERTIFICATE;
    let pki = Pki::new();
    let client_ca = format!("client_ca = {:?}\n", pki.file("ca.pem"));
    let (_server, addr) = start(&section(&pki, "server.pem", "server.key", &client_ca));
    let target = format!("localhost:{}", addr.port());
    let (ca, cert, key) = (
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client.key"),
    );
    let identity = ["--tls", "--ca", &ca, "--cert", &cert, "--key", &key];

    let checked = echo_client(&[&["check", &target][..], &identity].concat(), b"");
    assert_eq!(checked.code, 0, "{}{}", checked.stdout(), checked.stderr);
    let data = random_bytes(1 << 20, 31);
    let piped = echo_client(&[&["pipe", &target][..], &identity].concat(), &data);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(piped.stdout == data, "the echo came back different");

    for without in [
        echo_client(&["check", &target, "--tls", "--ca", &ca], b""),
        echo_client(&["send", "-t", &target, "--tls", "--ca", &ca, "ping"], b""),
    ] {
        assert_eq!(
            without.code,
            CERTIFICATE,
            "{}{}",
            without.stdout(),
            without.stderr
        );
        let said = format!("{}{}", without.stdout(), without.stderr);
        assert!(
            said.contains("the server requires a client certificate; give one with --cert"),
            "{said}"
        );
    }
    // A client certificate of another CA is refused too.
    let (cert, key) = (pki.arg("stranger.pem"), pki.arg("stranger.key"));
    let stranger = echo_client(
        &[
            "send", "-t", &target, "--tls", "--ca", &ca, "--cert", &cert, "--key", &key, "ping",
        ],
        b"",
    );
    assert_eq!(stranger.code, CERTIFICATE, "{}", stranger.stderr);
    assert!(
        stranger.stderr.contains("refused the client certificate"),
        "{}",
        stranger.stderr
    );
}
