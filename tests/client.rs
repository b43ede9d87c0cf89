//! `echo-client` against real servers: echo-server itself, socat (an echo
//! server this project did not write), and misbehaving servers made here
//! from real sockets: one that corrupts bytes and one that never answers.

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{
    CLIENT, Finished, PATIENCE, Server, TestDir, finish_with_patience, random_bytes,
    with_lost_stdout,
};
use serde_json::Value;

/// Far longer than a bench of half a second or so takes to end, far
/// shorter than the harness's patience: a run that stops late is caught.
const SHORT_RUN: Duration = Duration::from_secs(5);

fn json(run: &Finished) -> Value {
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout()))
}

fn client(args: &[&str]) -> Finished {
    client_with_input(args, b"")
}

fn client_with_input(args: &[&str], input: &[u8]) -> Finished {
    let mut command = Command::new(CLIENT);
    command.args(args);
    // A client that ignores its own timeout would hang; the harness's
    // patience turns that into a failure instead.
    finish_with_patience(command, input)
}

/// A port nobody listens on.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// socat as an echo server (`PIPE` writes back what it reads), one process
/// per connection. Killed when dropped, with the processes it forked: in a
/// process group of its own, and without the test's standard output, which
/// a survivor would hold open.
struct Socat {
    child: Child,
    addr: SocketAddr,
}

impl Socat {
    fn start() -> Socat {
        let port = closed_port().port();
        let child = Command::new("socat")
            .args([
                &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                "PIPE",
            ])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is installed by scripts/test.sh");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "socat did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Socat { child, addr }
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, common::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A server that answers every read with the same bytes, one bit flipped.
fn corrupting_server() -> SocketAddr {
    serve_each(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            buf[n / 2] ^= 0x01;
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// A server that accepts and then never sends anything, counting the
/// connections it accepted in `accepted`.
fn silent_server_counting(accepted: Arc<AtomicUsize>) -> SocketAddr {
    serve_each(move |mut stream| {
        accepted.fetch_add(1, Ordering::SeqCst);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        // Even after the client's half-close, never answer nor close.
        std::thread::sleep(PATIENCE);
    })
}

fn silent_server() -> SocketAddr {
    silent_server_counting(Arc::default())
}

/// `count` echo servers that answer only once all of them hold a
/// connection: checked one after the other, the first would wait forever.
fn servers_that_echo_once_all_are_connected(count: usize) -> Vec<SocketAddr> {
    let connected = Arc::new((Mutex::new(0usize), Condvar::new()));
    (0..count)
        .map(|_| {
            let connected = Arc::clone(&connected);
            serve_each(move |mut stream| {
                let (lock, all_in) = &*connected;
                let mut n = lock.lock().unwrap();
                *n += 1;
                all_in.notify_all();
                let (n, _) = all_in
                    .wait_timeout_while(n, PATIENCE, |n| *n < count)
                    .unwrap();
                drop(n);
                let mut payload = Vec::new();
                let _ = stream.read_to_end(&mut payload);
                let _ = stream.write_all(&payload);
            })
        })
        .collect()
}

/// A server that answers every read with the same bytes and one more.
fn appending_server() -> SocketAddr {
    serve_each(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream
                .write_all(&buf[..n])
                .and_then(|()| stream.write_all(b"+"))
                .is_err()
            {
                break;
            }
        }
    })
}

/// A server that echoes what each connection sends, then streams zeros
/// until the client goes away; how many zeros each connection took comes
/// on the channel, once the client has gone.
fn echoing_then_streaming_zeros() -> (SocketAddr, mpsc::Receiver<u64>) {
    let (streamed, counts) = mpsc::channel();
    let addr = serve_each(move |mut stream| {
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        // A small buffer here, so that what the kernels hold on both sides
        // stays far below what a client that keeps reading takes.
        socket2::SockRef::from(&stream)
            .set_send_buffer_size(64 << 10)
            .unwrap();
        let mut message = Vec::new();
        let _ = stream.read_to_end(&mut message);
        let zeros = [0u8; 64 * 1024];
        let mut total = 0u64;
        if stream.write_all(&message).is_ok() {
            while let Ok(written) = stream.write(&zeros) {
                total += written as u64;
            }
        }
        let _ = streamed.send(total);
    });
    (addr, counts)
}

/// A server that reads everything and then closes without answering.
fn swallowing_server() -> SocketAddr {
    serve_each(|mut stream| {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    })
}

/// A UDP server that answers datagrams of 16 bytes or more with the first
/// byte flipped (where echo-client keeps its sequence numbers), and shorter
/// ones, like the probe bench sends first, correctly.
fn udp_stamp_corrupting_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if n >= 16 {
                buf[0] ^= 0x01;
            }
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    addr
}

/// A server that echoes the first bytes each connection sends, then does
/// `after` with the connection; and how many connections it has accepted.
fn echoing_the_first_message_then(after: fn(&mut TcpStream)) -> (SocketAddr, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    let addr = serve_each(move |mut stream| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut first = [0u8; 64];
        if let Ok(n) = stream.read(&mut first) {
            let _ = stream.write_all(&first[..n]);
        }
        after(&mut stream);
    });
    (addr, accepted)
}

fn serve_each(handle: impl Fn(TcpStream) + Send + Clone + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || handle(stream));
        }
    });
    addr
}

#[test]
fn send_prints_the_echo_and_exits_zero() {
    let server = Server::start("");
    let target = server.addr().to_string();
    let run = client(&["send", "-t", &target, "Hello,", "world"]);
    assert_eq!(
        (run.code, run.stdout()),
        (0, "Hello, world".to_string()),
        "{}",
        run.stderr
    );

    let binary = random_bytes(5000, 9);
    let run = client_with_input(&["send", "--target", &target], &binary);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout == binary, "stdin was not echoed byte for byte");

    let run = client_with_input(&["send", "-t", &target, "--hex", "-"], b"Hi\x00");
    assert_eq!(
        run.stdout(),
        "00000000  48 69 00                                          |Hi.|\n00000003\n"
    );
}

#[test]
fn send_works_against_socat_too() {
    let socat = Socat::start();
    let run = client(&["send", "-t", &socat.addr.to_string(), "foreign", "server"]);
    assert_eq!(
        (run.code, run.stdout()),
        (0, "foreign server".to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn send_over_udp() {
    let server = Server::start("udp = true\n");
    let run = client(&[
        "send",
        "--udp",
        "-t",
        &server.udp[0].to_string(),
        "datagram",
    ]);
    assert_eq!(
        (run.code, run.stdout()),
        (0, "datagram".to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn a_corrupted_echo_exits_1_and_says_where() {
    let target = corrupting_server().to_string();
    let run = client(&["send", "-t", &target, "abcdefgh"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("differs from what was sent at byte 4"),
        "{}",
        run.stderr
    );
    let run = client(&["check", &target]);
    assert_eq!(run.code, 1, "{}", run.stdout());
    assert!(
        run.stdout().starts_with(&format!("{target}: mismatch")),
        "{}",
        run.stdout()
    );
    // bench probes the server before it starts, and stops at a wrong echo.
    let run = client(&["bench", &target, "-c", "2", "-d", "300ms", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("differs from what was sent"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_server_that_never_answers_exits_3_within_the_timeout() {
    let target = silent_server().to_string();
    let run = client(&["check", &target, "--timeout", "300ms"]);
    assert_eq!(run.code, 3, "{}", run.stdout());
    assert!(run.stdout().contains("timeout"), "{}", run.stdout());
    let run = client(&["send", "-t", &target, "--timeout", "300ms", "hello"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let run = client(&[
        "bench",
        &target,
        "-c",
        "1",
        "-d",
        "200ms",
        "--timeout",
        "100ms",
        "--json",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[test]
fn a_closed_port_or_an_unknown_name_exits_2() {
    let closed = closed_port().to_string();
    for target in [closed.as_str(), "no-such-host.invalid:7"] {
        let run = client(&["check", target]);
        assert_eq!(run.code, 2, "{target}: {}", run.stdout());
        assert!(run.stdout().contains("unreachable"), "{}", run.stdout());
        let run = client(&["send", "-t", target, "x"]);
        assert_eq!(run.code, 2, "{target}: {}", run.stderr);
    }
    let run = client(&["check", "no-such-host.invalid:7"]);
    assert!(run.stdout().contains("cannot resolve"), "{}", run.stdout());
    let run = client(&["bench", &closed, "-d", "200ms", "-c", "1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn bad_arguments_exit_64() {
    let dir = TestDir::new();
    let bad_hosts = dir.write("hosts", "web1\nweb2 port=7\n");
    for args in [
        &["--bogus"][..],
        &["check", "--size", "0"],
        &["check", "host:notaport"],
        &["check", "--hosts", "/nonexistent/hosts"],
        &["check", "--hosts", bad_hosts.to_str().unwrap()],
        &["check", "--timeout", "0"],
        &["check", "--interval", "soon"],
        &["bench", "--rate", "-5"],
        &["bench", "-c", "0"],
        &["send", "--udp", "--timeout", "0", "x"],
    ] {
        let run = client(args);
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.stderr);
    }
    let run = client(&["check", "--hosts", bad_hosts.to_str().unwrap()]);
    assert!(
        run.stderr.contains("line 2: unknown setting `port`"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_reports_every_target_and_the_worst_one_wins() {
    let server = Server::start("");
    let socat = Socat::start();
    let healthy = server.addr().to_string();
    let foreign = socat.addr.to_string();
    let run = client(&[
        "check", &healthy, &foreign, "-n", "3", "-i", "10ms", "-s", "1000",
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout());
    let lines: Vec<String> = run.stdout().lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with(&format!(
            "{healthy}: healthy, 3/3 echoes of 1000 bytes over TCP, rtt"
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{foreign}: healthy, 3/3")),
        "{}",
        lines[1]
    );

    let closed = closed_port().to_string();
    let corrupt = corrupting_server().to_string();
    let run = client(&["check", &healthy, &closed, "--json"]);
    assert_eq!(run.code, 2);
    let run = client(&["check", &closed, &corrupt, &healthy, "--json"]);
    assert_eq!(
        run.code, 1,
        "a wrong echo is worse than a refused connection"
    );
    let report = json(&run);
    assert_eq!(report["exit_code"], 1);
    let verdicts: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["unreachable", "mismatch", "healthy"]);
    assert!(report["targets"][2]["rtt_ms"]["avg"].as_f64().unwrap() > 0.0);
}

#[test]
fn check_reads_the_inventory_and_probes_hosts_in_parallel() {
    let server = Server::start("");
    let dir = TestDir::new();
    let mut inventory = format!(
        "# fleet\nadmin@127.0.0.1:2222 echo_port={}\n",
        server.addr().port()
    );
    for addr in servers_that_echo_once_all_are_connected(5) {
        inventory.push_str(&format!(
            "127.0.0.1 echo_port={}   # waits for the others\n",
            addr.port()
        ));
    }
    inventory.push_str(&format!("127.0.0.1 echo_port={}\n", silent_server().port()));
    let hosts = dir.write("hosts", &inventory);
    let run = client(&[
        "check",
        "--hosts",
        hosts.to_str().unwrap(),
        "--timeout",
        "5s",
        "--json",
    ]);
    let targets = json(&run)["targets"].as_array().unwrap().clone();
    assert_eq!(targets.len(), 7);
    // Only if all were probed at once could the five waiting ones answer.
    let verdicts: Vec<&str> = targets
        .iter()
        .map(|t| t["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [
            "healthy", "healthy", "healthy", "healthy", "healthy", "healthy", "timeout"
        ]
    );
    assert_eq!(run.code, 3, "the stuck host decides the exit code");
}

#[test]
fn check_over_udp() {
    let server = Server::start("udp = true\nudp_rate_limit = 0\n");
    let target = server.udp[0].to_string();
    let run = client(&[
        "check", "--udp", &target, "-n", "5", "-i", "0s", "-s", "1200",
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout());
    assert!(
        run.stdout()
            .contains("healthy, 5/5 echoes of 1200 bytes over UDP"),
        "{}",
        run.stdout()
    );
    // Without UDP enabled, ICMP port unreachable comes back at once.
    let tcp_only = Server::start("");
    let run = client(&["check", "--udp", &tcp_only.addr().to_string()]);
    assert_eq!(run.code, 2, "{}", run.stdout());
}

/// A UDP echo that misbehaves as a path can, on loopback. With
/// `swap_pairs` it holds the first datagram of each pair and sends it after
/// the second (reordered, and late if probes are further apart than the
/// timeout); else it answers each datagram at once, and once more just
/// before the next answer (duplicated).
fn udp_server_replaying(swap_pairs: bool) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        let mut held: Option<Vec<u8>> = None;
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let datagram = buf[..n].to_vec();
            if swap_pairs {
                // The first of each pair waits for the second, then follows it.
                match held.take() {
                    None => held = Some(datagram),
                    Some(first) => {
                        let _ = socket.send_to(&datagram, peer);
                        let _ = socket.send_to(&first, peer);
                    }
                }
            } else {
                // Each answer once at once, and once more before the next one.
                if let Some(previous) = held.replace(datagram.clone()) {
                    let _ = socket.send_to(&previous, peer);
                }
                let _ = socket.send_to(&datagram, peer);
            }
        }
    });
    addr
}

#[test]
fn check_over_udp_counts_duplicates_once() {
    let target = udp_server_replaying(false).to_string();
    let run = client(&["check", "--udp", &target, "-n", "5", "-i", "0s", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout());
    let report = &json(&run)["targets"][0];
    assert_eq!(
        (&report["healthy"], &report["lost"]),
        (&Value::from(5), &Value::from(0))
    );
    // Probes 0 to 3 come back twice; the last has no next to follow.
    assert_eq!(report["path"]["duplicated"], 4, "{report:#}");
    assert_eq!(report["path"]["reordered"], 0, "{report:#}");
}

#[test]
fn check_over_udp_tells_late_and_reordered_answers_apart() {
    // Probes 300 ms apart, a timeout of 200 ms, and a server that returns
    // probes 0 and 2 only after 1 and 3: at least 300 ms after they left.
    let target = udp_server_replaying(true).to_string();
    let run = client(&[
        "check", "--udp", &target, "-n", "4", "-i", "300ms", "-t", "200ms", "--json",
    ]);
    assert_eq!(run.code, 3, "{}", run.stdout());
    let report = &json(&run)["targets"][0];
    let path = &report["path"];
    assert_eq!(
        (&report["healthy"], &report["lost"], &path["late"]),
        (&Value::from(2), &Value::from(2), &Value::from(2)),
        "{report:#}"
    );
    assert_eq!(
        (
            &path["reordered"],
            &path["reordered_percent"],
            &path["duplicated"]
        ),
        (&Value::from(2), &Value::from(50.0), &Value::from(0)),
        "{report:#}"
    );
    assert_eq!(report["error"], "2 of 4 probes got no echo within 200ms");
    let human = client(&[
        "check", "--udp", &target, "-n", "4", "-i", "300ms", "-t", "200ms",
    ]);
    assert!(
        human
            .stdout()
            .contains("2 lost (50%), 2 late, 2 reordered (50%)"),
        "{}",
        human.stdout()
    );
}

#[test]
fn check_over_udp_needs_room_for_its_header_and_takes_no_retries() {
    let too_small = client(&["check", "--udp", "-s", "23", "127.0.0.1:9"]);
    assert_eq!(too_small.code, 64);
    assert!(
        too_small
            .stderr
            .contains("--size: a UDP probe holds 24 (its sequence number and send time)"),
        "{}",
        too_small.stderr
    );
    let retries = client(&["check", "--udp", "-r", "1", "127.0.0.1:9"]);
    assert_eq!(retries.code, 64);
    assert!(
        retries.stderr.contains("--retries is for TCP"),
        "{}",
        retries.stderr
    );
}

#[test]
fn bench_verifies_every_echo_and_reports_json() {
    let server = Server::start("");
    let run = client(&[
        "bench",
        &server.addr().to_string(),
        "-c",
        "8",
        "-d",
        "1s",
        "-s",
        "512",
        "--pipeline",
        "4",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout(), run.stderr);
    let report = json(&run);
    assert!(report["requests"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(report["errors"]["mismatch"], 0);
    assert_eq!(report["errors"]["io"], 0);
    let latency = &report["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    assert!(latency["p99_9"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());

    let run = client(&[
        "bench",
        &server.addr().to_string(),
        "-c",
        "2",
        "-d",
        "500ms",
        "--rate",
        "200",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = run.stdout();
    for needle in [
        "Requests:",
        "every echo verified",
        "p99.9",
        "Latency histogram:",
        "200 requests/s",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        run.stderr.is_empty(),
        "no progress bar without a terminal: {}",
        run.stderr
    );
}

#[test]
fn bench_against_socat_and_over_udp() {
    let socat = Socat::start();
    let run = client(&[
        "bench",
        &socat.addr.to_string(),
        "-c",
        "2",
        "-d",
        "500ms",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(json(&run)["requests"].as_u64().unwrap() > 0);

    let server = Server::start("udp = true\nudp_rate_limit = 0\n");
    let run = client(&[
        "bench",
        "--udp",
        &server.udp[0].to_string(),
        "-c",
        "4",
        "-d",
        "500ms",
        "--pipeline",
        "2",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout(), run.stderr);
    let report = json(&run);
    assert_eq!(report["protocol"], "UDP");
    assert!(report["requests"].as_u64().unwrap() > 0);
    // Answers that come while the rest of their batch is still being sent
    // took time too: none is recorded as instant.
    assert!(
        report["latency_ms"]["min"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[test]
fn ten_mebibytes_through_pipe_come_back_identical() {
    let server = Server::start("");
    let socat = Socat::start();
    let file = random_bytes(10 << 20, 11);
    for target in [server.addr(), socat.addr] {
        let run = client_with_input(&["pipe", &target.to_string()], &file);
        assert_eq!(run.code, 0, "{target}: {}", run.stderr);
        assert_eq!(run.stdout.len(), file.len(), "{target}");
        assert!(
            run.stdout == file,
            "{target}: the piped file came back different"
        );
    }
    let run = client_with_input(&["pipe", &closed_port().to_string()], b"x");
    assert_eq!(run.code, 2);
}

#[test]
fn extra_bytes_after_the_echo_are_a_mismatch() {
    let target = appending_server().to_string();
    let run = client(&["check", &target]);
    assert_eq!(run.code, 1, "{}", run.stdout());
    assert!(
        run.stdout().contains("more bytes than the 64 sent"),
        "{}",
        run.stdout()
    );
    let run = client(&["send", "-t", &target, "abc"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

/// A server that echoes every other connection's bytes and closes the
/// rest at once: half the probes of a check are lost, deterministically.
fn answering_every_other_connection() -> SocketAddr {
    let accepted = Arc::new(AtomicUsize::new(0));
    serve_each(move |mut stream| {
        if accepted.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            let _ = stream.write_all(&bytes);
        }
    })
}

#[test]
fn json_reports_loss_and_the_round_trip_spread() {
    let target = answering_every_other_connection().to_string();
    let run = client(&["check", &target, "-n", "4", "-i", "1ms", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout());
    let report = &json(&run)["targets"][0];
    assert_eq!(
        (report["healthy"].as_u64(), report["lost"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(report["loss_percent"], 50.0);
    let rtt = &report["rtt_ms"];
    for field in ["min", "avg", "max", "stddev", "p50", "p90", "p99"] {
        assert!(rtt[field].as_f64().is_some(), "no {field}: {report}");
    }
    let run = client(&["check", &target, "--json"]);
    let report = &json(&run)["targets"][0];
    assert!(report["rtt_ms"]["avg"].as_f64().is_some(), "{report}");
    assert!(
        report["rtt_ms"].get("p50").is_none(),
        "one probe, no spread: {report}"
    );
}

#[test]
fn check_is_a_nagios_plugin_with_thresholds_and_performance_data() {
    let server = Server::start("");
    let healthy = server.addr().to_string();
    let nagios = |extra: &[&str]| {
        let mut args = vec!["check", "--format", "nagios", "-n", "4", "-i", "1ms"];
        args.extend_from_slice(extra);
        client(&args)
    };
    let run = nagios(&[&healthy, "-w", "10000,20%", "-c", "20000,60%"]);
    assert_eq!(run.code, 0, "{}", run.stdout());
    let line = run.stdout();
    assert!(
        line.starts_with(&format!(
            "ECHO OK - {healthy} TCP: 4/4 echoes, 0% lost, rtt avg "
        )),
        "{line}"
    );
    let performance = line.trim_end().split_once('|').unwrap().1;
    assert!(performance.starts_with("rtt="), "{line}");
    assert!(
        performance.ends_with("ms;10000;20000;0; loss=0%;20;60;0;100"),
        "{line}"
    );
    // Ranges that every round trip falls inside, so the state is certain.
    assert_eq!(nagios(&[&healthy, "-w", "@0:100000"]).code, 1);
    assert_eq!(
        nagios(&[&healthy, "-w", "@0:100000", "-c", "@0:100000"]).code,
        2
    );
    assert_eq!(nagios(&[&healthy, "-c", "0.000001:"]).code, 0);

    let lossy = answering_every_other_connection().to_string();
    let run = nagios(&[&lossy, "-w", ",40%", "-c", ",60%"]);
    assert_eq!(run.code, 1, "half lost is a warning here: {}", run.stdout());
    assert!(
        run.stdout().contains("loss=50%;40;60;0;100"),
        "{}",
        run.stdout()
    );
    let run = nagios(&[&lossy, "-w", "1000"]);
    assert_eq!(
        run.code,
        2,
        "loss without loss thresholds is critical: {}",
        run.stdout()
    );

    let closed = closed_port().to_string();
    let run = nagios(&[&closed]);
    assert_eq!(run.code, 2);
    assert!(run.stdout().contains("rtt=U;"), "{}", run.stdout());
    let corrupt = corrupting_server().to_string();
    assert_eq!(nagios(&[&corrupt]).code, 2);
}

#[test]
fn a_nagios_plugins_bad_command_line_is_unknown() {
    for args in [
        &["check", "--format", "nagios", "-w", "10:5"][..],
        &["check", "--format=nagios", "--no-such-option"],
        &["check", "--format", "nagios", "-n", "0"],
        &["check", "--format", "nagios", "--output", "x.prom"],
    ] {
        let run = client(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stdout());
        let output = run.stdout();
        assert!(
            output.starts_with("ECHO UNKNOWN - echo-client: "),
            "{args:?}: {output}"
        );
        assert_eq!(output.lines().count(), 1, "{output}");
    }
    let run = client(&["check", "-w", "100"]);
    assert_eq!(run.code, 64, "outside nagios mode, a usage error is 64");
    assert!(
        run.stderr.contains("thresholds of --format nagios"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error_not_a_crash() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = OsStr::from_bytes(b"h\xff:7");
    let run = |args: &[&OsStr]| {
        let mut command = Command::new(CLIENT);
        command.args(args);
        finish_with_patience(command, b"")
    };
    let os = |text: &'static str| OsStr::new(text);
    let run_nagios = run(&[
        os("check"),
        os("--format"),
        os("nagios"),
        os("-w"),
        os("10:5"),
        not_utf8,
    ]);
    assert_eq!(
        run_nagios.code,
        3,
        "{}{}",
        run_nagios.stdout(),
        run_nagios.stderr
    );
    assert!(
        run_nagios.stdout().starts_with("ECHO UNKNOWN - "),
        "{}",
        run_nagios.stdout()
    );
    let run_send = run(&[os("send"), os("--no-such-option"), not_utf8]);
    assert_eq!(run_send.code, 64, "{}", run_send.stderr);
}

#[test]
fn the_textfile_replaces_its_file_whole_or_says_why_not() {
    let server = Server::start("");
    let healthy = server.addr().to_string();
    let closed = closed_port().to_string();
    let directory = TestDir::new();
    let file = directory.path().join("echo.prom");
    let path = file.to_str().unwrap();
    let run = client(&[
        "check", "--format", "textfile", "-o", path, &healthy, &closed,
    ]);
    assert_eq!(
        run.code, 2,
        "the exit code is still the check's: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    for line in [
        format!("echo_check_up{{target=\"{healthy}\",protocol=\"tcp\"}} 1.0"),
        format!("echo_check_up{{target=\"{closed}\",protocol=\"tcp\"}} 0.0"),
        format!("echo_check_loss_ratio{{target=\"{closed}\",protocol=\"tcp\"}} 1.0"),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    // Readable by a collector running as another user, whatever the umask
    // of the job that wrote it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::remove_file(&file).unwrap();
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "umask 077; exec \"$@\"",
        "sh",
        CLIENT,
        "check",
        "--format",
        "textfile",
        "-o",
        path,
        &healthy,
    ]);
    assert_eq!(finish_with_patience(command, b"").code, 0);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{mode:o}");
    let unwritable = directory.path().join("missing").join("echo.prom");
    let run = client(&[
        "check",
        "--format",
        "textfile",
        "-o",
        unwritable.to_str().unwrap(),
        &healthy,
    ]);
    assert_eq!(run.code, 74, "{}", run.stderr);
    assert!(run.stderr.contains("cannot write"), "{}", run.stderr);
}

#[test]
fn retries_repeat_an_attempt_that_timed_out() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let silent = silent_server_counting(Arc::clone(&accepted));
    let run = client(&[
        "check",
        &silent.to_string(),
        "--retries",
        "2",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(run.code, 3, "{}", run.stdout());
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one attempt and two retries"
    );
}

#[test]
fn bench_stops_at_its_duration_even_at_a_low_rate() {
    let server = Server::start("");
    let started = Instant::now();
    let run = client(&[
        "bench",
        &server.addr().to_string(),
        "-c",
        "50",
        "-d",
        "500ms",
        "--rate",
        "100",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = json(&run);
    // One batch every half second per connection: at most one each.
    assert!(report["requests"].as_u64().unwrap() <= 50, "{report}");
    assert!(
        started.elapsed() < SHORT_RUN,
        "ran past its duration: {report}"
    );
}

#[test]
fn bench_counts_echoes_that_never_come_as_timeouts_and_reconnects() {
    // Falls silent after the first echo, keeping the connection open.
    let (target, accepted) = echoing_the_first_message_then(|_| std::thread::sleep(PATIENCE));
    let started = Instant::now();
    let run = client(&[
        "bench",
        &target.to_string(),
        "-c",
        "2",
        "-d",
        "1500ms",
        "-s",
        "64",
        "--timeout",
        "200ms",
        "--json",
    ]);
    assert_eq!(run.code, 3, "{}{}", run.stdout(), run.stderr);
    let report = json(&run);
    assert!(report["requests"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["errors"]["timeout"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["errors"]["mismatch"], 0, "{report}");
    // The probe, two connections, and at least one new one after a timeout each.
    assert!(accepted.load(Ordering::SeqCst) >= 5, "{report}");
    assert!(
        started.elapsed() < SHORT_RUN,
        "ran past its duration: {report}"
    );
}

#[test]
fn a_lost_standard_output_keeps_the_verdict() {
    let server = Server::start("");
    let up = server.addr().to_string();
    let down = closed_port().to_string();
    for (args, verdict) in [
        (&["check", &up, "--json"][..], 0),
        (&["check", &down], 2),
        (&["send", "-t", &up, "hello"], 0),
        (&["bench", &up, "-c", "1", "-d", "100ms", "--json"], 0),
    ] {
        let run = || {
            let mut command = Command::new(CLIENT);
            command.args(args);
            command
        };
        let [(closed_code, closed_err), (full_code, full_err)] = with_lost_stdout(run);
        assert_eq!(closed_code, verdict, "{args:?} | head: {closed_err}");
        assert!(!closed_err.contains("panic"), "{args:?}: {closed_err}");
        // A full disk loses the result: only a success turns into 74.
        let expected = if verdict == 0 { 74 } else { verdict };
        assert_eq!(full_code, expected, "{args:?} > /dev/full: {full_err}");
        assert!(
            full_err.contains("cannot write to standard output"),
            "{args:?}: {full_err}"
        );
    }
}

#[test]
fn bench_counts_nothing_of_its_warmup() {
    // Echoes each connection's first message, then falls silent: with a
    // warm-up, those first round trips are all there was, and none counts.
    let (target, _) = echoing_the_first_message_then(|_| std::thread::sleep(PATIENCE));
    let bench = |warmup: &str| {
        let run = client(&[
            "bench",
            &target.to_string(),
            "-c",
            "2",
            "-d",
            "500ms",
            "--warmup",
            warmup,
            "--timeout",
            "10s",
            "--json",
        ]);
        (run.code, json(&run))
    };
    let (code, report) = bench("0s");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["requests"], 2, "{report}");

    let (code, report) = bench("2s");
    assert_eq!(
        code, 3,
        "nothing was answered in the measured window: {report}"
    );
    assert_eq!(report["requests"], 0, "{report}");
    assert_eq!(report["warmup_s"], 2.0, "{report}");
    assert_eq!(report["duration_s"], 0.5, "{report}");
    assert_eq!(report["errors"]["timeout"], 0, "{report}");
}

#[test]
fn bench_with_batches_larger_than_the_socket_buffers() {
    let server = Server::start("");
    let target = server.addr().to_string();
    let run = client(&[
        "bench",
        &target,
        "-c",
        "1",
        "-d",
        "5s",
        "-s",
        "4194304",
        "--pipeline",
        "4",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout(), run.stderr);
    assert!(json(&run)["requests"].as_u64().unwrap() >= 4);
}

#[test]
fn bench_over_udp_catches_a_corrupted_sequence_number() {
    let target = udp_stamp_corrupting_server().to_string();
    let run = client(&[
        "bench", "--udp", &target, "-c", "2", "-d", "300ms", "--json",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout(), run.stderr);
    assert!(json(&run)["errors"]["mismatch"].as_u64().unwrap() > 0);
}

#[test]
fn bench_notices_a_server_that_stopped_answering_between_paced_batches() {
    // After the first echo, says it will send nothing more (FIN) while it
    // keeps reading: only that end of the stream, seen before the next
    // batch, shows the server is gone.
    let (target, accepted) = echoing_the_first_message_then(|stream| {
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.read_to_end(&mut Vec::new());
    });
    let run = client(&[
        "bench",
        &target.to_string(),
        "-c",
        "1",
        "-d",
        "2s",
        "--rate",
        "4",
        "--json",
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout(), run.stderr);
    let report = json(&run);
    assert!(report["requests"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["errors"]["closed"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(report["errors"]["mismatch"], 0, "{report}");
    assert_eq!(report["errors"]["timeout"], 0, "{report}");
    // The probe, the first connection, and a new one after the failure.
    assert!(accepted.load(Ordering::SeqCst) >= 3, "{report}");
}

#[test]
fn bench_that_cannot_start_its_load_exits_71() {
    let server = Server::start("");
    // Descriptors enough for the probe, far too few for 64 event loops.
    let mut command = Command::new("prlimit");
    command.args([
        "--nofile=24",
        CLIENT,
        "bench",
        &server.addr().to_string(),
        "-c",
        "64",
        "--threads",
        "64",
        "-d",
        "10s",
    ]);
    let started = Instant::now();
    let run = finish_with_patience(command, b"");
    assert_eq!(run.code, 71, "{}{}", run.stdout(), run.stderr);
    assert!(
        run.stderr
            .contains("cannot start the load: Too many open files"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up before the run, not after it"
    );
}

#[test]
fn pipe_fails_when_the_echo_is_short_or_wrong() {
    let input = random_bytes(100_000, 5);
    let run = client_with_input(&["pipe", &swallowing_server().to_string()], &input);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("closed the connection after echoing 0 bytes"),
        "{}",
        run.stderr
    );
    let run = client_with_input(&["pipe", &corrupting_server().to_string()], &input);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("differs from what was sent at byte"),
        "{}",
        run.stderr
    );
}

#[test]
fn stray_bytes_after_the_echo_are_read_no_further_than_one() {
    let (target, streamed) = echoing_then_streaming_zeros();
    let target = target.to_string();
    for args in [
        &["send", "-t", &target, "abc"][..],
        &["check", &target],
        &["bench", &target, "-c", "1", "-d", "1s"],
    ] {
        let run = client(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        // The socket buffers hold some hundreds of KiB; a client that keeps
        // reading takes tens of MiB in its grace period.
        let took = streamed.recv_timeout(PATIENCE).unwrap();
        assert!(
            took < 4 << 20,
            "{args:?}: the server streamed {took} bytes after the echo"
        );
        let said = run.stderr + &String::from_utf8_lossy(&run.stdout[..run.stdout.len().min(200)]);
        assert!(said.contains("more bytes than the"), "{args:?}: {said}");
    }
}

#[test]
fn bench_counts_connections_the_server_closes_mid_echo_apart_from_wrong_echoes() {
    // After the first echo (bench's probe included), each echoes half of
    // the next message and then ends the connection: with a FIN, or with
    // a reset.
    let closing = echoing_the_first_message_then(|stream| {
        let mut message = [0u8; 64];
        if let Ok(n) = stream.read(&mut message) {
            let _ = stream.write_all(&message[..n / 2]);
        }
    });
    let resetting = echoing_the_first_message_then(|stream| {
        let mut message = [0u8; 64];
        if let Ok(n) = stream.read(&mut message) {
            let _ = stream.write_all(&message[..n / 2]);
        }
        socket2::SockRef::from(&*stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    for (target, _) in [closing, resetting] {
        let run = client(&[
            "bench",
            &target.to_string(),
            "-c",
            "2",
            "-d",
            "1s",
            "-s",
            "64",
            "--json",
        ]);
        assert_eq!(run.code, 2, "{}{}", run.stdout(), run.stderr);
        let report = json(&run);
        let closed = report["errors"]["closed"].as_u64().unwrap();
        assert!(closed >= 2, "{report}");
        assert_eq!(report["errors"]["mismatch"], 0, "{report}");
        assert_eq!(report["errors"]["io"], 0, "{report}");
        assert_eq!(report["exit_code"], 2, "{report}");
        assert!(
            run.stderr
                .contains(&format!("the server closed {closed} connections")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn pipe_gives_up_on_a_server_that_stops_echoing() {
    let silent = silent_server().to_string();
    let run = client_with_input(&["pipe", &silent, "--timeout", "1s"], b"hello");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("5 bytes sent, 0 echoed"),
        "{}",
        run.stderr
    );
    // Echoes everything and then neither closes nor sends anything more.
    let (target, _) = echoing_the_first_message_then(|_| std::thread::sleep(PATIENCE));
    let run = client_with_input(&["pipe", &target.to_string(), "--timeout", "1s"], b"hello");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("5 bytes sent, 5 echoed"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, b"hello");
}

#[test]
fn pipe_times_out_on_no_progress_not_on_a_long_transfer() {
    // Echoes at most 4 KiB every 40 ms: the whole file takes at least 2.9 s,
    // nearly three times the timeout, and no pause is near it.
    let slow = serve_each(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            std::thread::sleep(Duration::from_millis(40));
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let file = random_bytes(300_000, 13);
    let run = client_with_input(&["pipe", &slow.to_string(), "--timeout", "1s"], &file);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout == file, "the piped file came back different");
}

#[test]
fn pipe_does_not_time_out_while_its_input_is_quiet() {
    let server = Server::start("");
    let mut pipe = Command::new(CLIENT)
        .args(["pipe", &server.addr().to_string(), "--timeout", "1s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = pipe.stdin.take().unwrap();
    input.write_all(b"typed, ").unwrap();
    // Everything sent has come back: the server owes nothing meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    input.write_all(b"and later more").unwrap();
    drop(input);
    let status = common::wait_with_patience(&mut pipe);
    let (mut echo, mut errors) = (String::new(), String::new());
    pipe.stdout
        .take()
        .unwrap()
        .read_to_string(&mut echo)
        .unwrap();
    pipe.stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{errors}");
    assert_eq!(echo, "typed, and later more");
}

/// `send`'s arguments are the message, so its target comes only with -t:
/// a message whose first or last word is a HOST:PORT was most likely meant
/// as the target (as nc and curl take it), and is refused instead of being
/// sent to the default target. The message after `--` is taken as it is.
#[test]
fn send_refuses_a_target_in_its_message_unless_told_otherwise() {
    let server = Server::start("");
    let target = server.addr().to_string();
    for args in [
        &["send", "hello", &target][..],
        &["send", &target, "hello"],
        &["send", &target],
        &["send", "--udp", "hello", "[::1]:7"],
    ] {
        let run = client(args);
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("looks like a target")
                && run.stderr.contains("-t")
                && run.stderr.contains("--"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout());
    }
    // The old spelling, and the two ways to send such words.
    for (args, echo) in [
        (
            &["send", "-t", &target, "hello", &target][..],
            format!("hello {target}"),
        ),
        (
            &["send", &format!("--target={target}"), "meet", "at", "12:30"],
            "meet at 12:30".to_string(),
        ),
        (
            &["send", "-t", &target, "--", "at", "12:30"],
            "at 12:30".to_string(),
        ),
        (
            &["send", "-t", &target, "Hello,", "world"],
            "Hello, world".to_string(),
        ),
    ] {
        let run = client(args);
        assert_eq!(
            (run.code, run.stdout()),
            (0, echo),
            "{args:?}: {}",
            run.stderr
        );
    }
}

/// Every verb takes its target with --target (and -t, but for check, where
/// -t is --timeout); check, bench and pipe also take it as their argument,
/// as before.
#[test]
fn every_verb_takes_its_target_with_the_same_option() {
    let server = Server::start("");
    let socat = Socat::start();
    let target = server.addr().to_string();
    let foreign = socat.addr.to_string();

    for args in [
        &["pipe", "-t", &target][..],
        &["pipe", "--target", &target],
        &["pipe", &target],
    ] {
        let run = client_with_input(args, b"through the pipe");
        assert_eq!(
            (run.code, run.stdout()),
            (0, "through the pipe".to_string()),
            "{args:?}: {}",
            run.stderr
        );
    }

    let run = client(&[
        "check", "--target", &target, &foreign, "--target", &target, "-t", "2s",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout(), run.stderr);
    let lines: Vec<String> = run.stdout().lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout());
    assert!(
        lines[0].starts_with(&format!("{foreign}: healthy")),
        "{}",
        run.stdout()
    );
    assert!(
        lines[1].starts_with(&format!("{target}: healthy")),
        "{}",
        run.stdout()
    );

    for args in [
        &["bench", "-t", &target, "-c", "2", "-d", "300ms", "--json"][..],
        &[
            "bench", "--target", &foreign, "-c", "2", "-d", "300ms", "--json",
        ],
        &["bench", &target, "-c", "2", "-d", "300ms", "--json"],
    ] {
        let run = client(args);
        assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout(), run.stderr);
        let report = json(&run);
        assert!(
            report["requests"].as_u64().unwrap() > 0,
            "{args:?}: {report}"
        );
    }

    // Given both ways, the target is ambiguous.
    for args in [
        &["bench", "-t", &target, &foreign][..],
        &["pipe", "--target", &target, &foreign],
    ] {
        let run = client(args);
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot be used with"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
