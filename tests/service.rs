//! Running as a service: the systemd notify protocol, socket activation and
//! classic daemon mode, each for real (a real notify socket, real inherited
//! descriptors, a real fork and pid file).

#![cfg(unix)]

mod common;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{DaemonDir, proc_stat, wait_until_gone};
use common::{
    LogLines, PATIENCE, SERVER, Signal, TestDir, echo_once, finish_with_patience, round_trip,
};

/// A notify socket like systemd's, collecting what the daemon sends.
struct NotifySocket {
    socket: UnixDatagram,
    path: String,
    _dir: TestDir,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = TestDir::new();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            socket,
            path: path.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// The next message, waiting at most `PATIENCE`.
    fn next(&self) -> String {
        self.socket.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = vec![0u8; 4096];
        let len = self.socket.recv(&mut buf).expect("a notify message");
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    /// Reads messages until one contains `needle`, and returns it.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let message = self.next();
            if message.contains(needle) {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no notify message with {needle:?}"
            );
        }
    }
}

#[test]
fn notify_says_ready_only_once_the_port_answers_and_stopping_on_sigterm() {
    let notify = NotifySocket::new();
    let mut server = common::Launcher::new("[server]\nport = 0\n")
        .env("NOTIFY_SOCKET", &notify.path)
        .start();
    let ready = notify.wait_for("READY=1");
    // By the time READY=1 was sent, the port already answered.
    assert!(ready.contains("STATUS=serving tcp://"), "{ready}");
    assert_eq!(round_trip(server.addr(), b"ready"), b"ready");

    server.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notify.wait_for("READY=1");

    server.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1");
    assert_eq!(server.wait().code(), Some(0));
}

#[test]
fn watchdog_pings_arrive_while_the_daemon_runs() {
    let notify = NotifySocket::new();
    // WatchdogSec=200ms: pings are due every 100 ms.
    let server = common::Launcher::new("[server]\nport = 0\n")
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "200000")
        .start();
    notify.wait_for("READY=1");
    // Pings are due every 100 ms, half the period, as systemd advises. What
    // systemd requires is at least one per period: ten pings within ten
    // periods (twice the expected time, so a busy machine does not fail it).
    let started = Instant::now();
    let mut pings = 0;
    while pings < 10 {
        if notify.next().contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "10 pings took {elapsed:?}: slower than one per WatchdogSec"
    );
    assert_eq!(
        round_trip(server.addr(), b"still serving"),
        b"still serving"
    );
}

/// Starts the server with `socket` as descriptor 3 and `LISTEN_FDS=1`,
/// as a service manager would, and `args` on its command line.
fn start_with_inherited_socket(
    socket: &impl AsRawFd,
    args: &str,
) -> (std::process::Child, LogLines) {
    let fd = socket.as_raw_fd();
    let mut command = Command::new("sh");
    // LISTEN_PID must be the server's own pid: the shell's, kept by exec.
    command.args([
        "-c",
        &format!("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" {args}"),
        SERVER,
    ]);
    command.env_remove("ECHO_SERVER_CONFIG");
    // SAFETY: only dup2 or fcntl runs between fork and exec, both
    // async-signal-safe; it makes the socket descriptor 3 in the child, and
    // the new descriptor must outlive exec.
    unsafe {
        command.pre_exec(move || {
            let socket = std::os::fd::BorrowedFd::borrow_raw(fd);
            if fd == 3 {
                // Already in place: dup2 would keep close-on-exec set.
                nix::fcntl::fcntl(
                    socket,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )?;
            } else {
                std::mem::forget(nix::unistd::dup2_raw(socket, 3)?);
            }
            Ok(())
        });
    }
    let mut child = command
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = LogLines::default();
    log.clone().collect(child.stderr.take().unwrap());
    (child, log)
}

#[test]
fn an_inherited_listener_is_served_without_binding_anything() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The same port on the command line: binding it would fail, since the
    // inherited listener holds it.
    let (mut child, log) =
        start_with_inherited_socket(&listener, &format!("--port {}", addr.port()));
    let started = log.wait_for("echo-server started");
    assert!(started.contains(&format!("tcp://{addr}")), "{started}");
    assert!(
        started.contains("passed by the service manager"),
        "{started}"
    );
    drop(listener);
    assert_eq!(
        round_trip(addr, b"through an inherited socket"),
        b"through an inherited socket"
    );
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
}

#[test]
fn an_inherited_socket_that_cannot_be_served_is_an_error() {
    // A connection (as Accept=yes would pass) instead of a listener.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let connection = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut child, log) = start_with_inherited_socket(&connection, "");
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(71));
    log.wait_for("not a listening socket (the .socket unit needs Accept=no)");
    // A Unix socket instead of an IP one.
    let dir = TestDir::new();
    let unix = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let (mut child, log) = start_with_inherited_socket(&unix, "");
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(71));
    log.wait_for("not an IPv4 or IPv6 socket");
}

#[test]
fn systemd_socket_activate_passes_a_datagram_socket() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut child, log) = common::socket_activate(&[
        "--datagram",
        "-l",
        &format!("127.0.0.1:{port}"),
        SERVER,
        "--port",
        "1",
    ]);
    // The daemon starts on the first datagram, as under a .socket unit.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.connect(("127.0.0.1", port)).unwrap();
    client.send(b"activate me").unwrap();
    let mut buf = [0u8; 64];
    let len = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"activate me");
    assert!(
        log.wait_for("echo-server started")
            .contains(&format!("udp://127.0.0.1:{port}"))
    );
    common::send_signal(&child, Signal::SIGTERM);
    assert_eq!(common::wait_with_patience(&mut child).code(), Some(0));
}

#[test]
fn a_daemon_detaches_serves_and_cleans_up_its_pid_file() {
    let dir = DaemonDir::new();
    let config = dir.config("");
    let started = dir.start_on_a_terminal(&config);
    assert_eq!(started.code, 0, "{}{}", started.stdout(), started.stderr);
    assert!(
        started
            .stdout()
            .contains("running in the background as pid"),
        "{}",
        started.stdout()
    );

    // The parent has exited; the daemon it left is nobody's child, in a
    // session of its own, and without the terminal it was started on.
    let pid = dir.pid();
    let stat = proc_stat(pid);
    assert_ne!(
        stat[1].parse::<u32>().unwrap(),
        std::process::id(),
        "the daemon is a child of the test"
    );
    assert_eq!(stat[4], "0", "the daemon kept a controlling terminal");
    let own_session = proc_stat(std::process::id() as i32)[3].clone();
    assert_ne!(
        stat[3], own_session,
        "the daemon is still in the starting session"
    );

    let mut stream = TcpStream::connect(("127.0.0.1", dir.port())).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    echo_once(&mut stream, b"from a daemon");
    drop(stream);

    // A second start is refused while the first one runs.
    dir.assert_second_start_refused(&config, pid);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until_gone(pid);
    assert!(!dir.pid_file().exists(), "SIGTERM left the pid file behind");
    let log = std::fs::read_dir(dir.logs())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path());
    let text: String = log.map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert!(text.contains("all connections finished"), "{text}");
}

#[test]
fn a_stale_pid_file_is_taken_over() {
    let dir = DaemonDir::new();
    let config = dir.config("");
    std::fs::create_dir_all(dir.pid_file().parent().unwrap()).unwrap();
    std::fs::write(dir.pid_file(), "999999\n").unwrap();
    let started = dir.start(&config);
    assert_eq!(started.code, 0, "{}", started.stderr);
    assert_ne!(dir.pid(), 999999);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dir.pid()), Signal::SIGTERM).unwrap();
}

#[test]
fn start_up_errors_reach_the_terminal_with_their_exit_codes() {
    let dir = DaemonDir::new();
    // Before the fork: a broken config file.
    let broken = dir.dir.write("broken.toml", "[server]\nport = \"seven\"\n");
    let started = dir.start(broken.to_str().unwrap());
    assert_eq!(started.code, 78, "{}", started.stderr);
    assert!(
        started.stderr.contains("line 2, column 8"),
        "{}",
        started.stderr
    );

    // A user that does not exist. (An error after the fork, as the daemon's
    // user, needs root: it is in tests/daemon_privileges.rs.)
    let config = dir.config("user = \"no-such-user-here\"\n");
    let started = dir.start(&config);
    assert_eq!(started.code, 67, "{}", started.stderr);
    assert!(
        started
            .stderr
            .contains("user `no-such-user-here` that does not exist"),
        "{}",
        started.stderr
    );
}

#[test]
fn relative_paths_still_work_after_the_daemon_leaves_its_directory() {
    let dir = DaemonDir::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    dir.dir.write(
        "relative.toml",
        &format!("[server]\nport = {port}\n[log]\ndirectory = \"logs\"\n[daemon]\npid_file = \"run/echo-server.pid\"\n"),
    );
    let start = || {
        let mut command = Command::new(SERVER);
        command
            .args(["--daemon", "--config", "relative.toml"])
            .current_dir(dir.dir.path());
        finish_with_patience(command, b"")
    };
    let started = start();
    assert_eq!(started.code, 0, "{}", started.stderr);
    let pid = dir.pid();
    assert!(dir.logs().join("echo-server.out").exists());
    // The second start finds the pid file, and a reload finds the config.
    let second = start();
    assert_eq!(second.code, 69, "{}", second.stderr);
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.stderr
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    let log_text = || -> String {
        std::fs::read_dir(dir.logs())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    while !log_text().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload in the log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until_gone(pid);
}

#[test]
fn a_pid_file_that_cannot_be_created_exits_73() {
    let dir = DaemonDir::new();
    let config = dir.config("");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        &dir.pid_file().display().to_string(),
        "/proc/echo-server.pid",
    );
    std::fs::write(&config, text).unwrap();
    let started = dir.start(&config);
    assert_eq!(started.code, 73, "{}", started.stderr);
    assert!(
        started
            .stderr
            .contains("cannot use the pid file /proc/echo-server.pid"),
        "{}",
        started.stderr
    );
}
