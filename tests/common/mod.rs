//! A real `echo-server` process on loopback, for the integration tests.
//!
//! Each test starts the built binary with a config file of its own on port 0,
//! reads the bound addresses from the start-up line on standard error, and
//! talks to it over real sockets. Nothing is mocked.

#![allow(dead_code)] // each test file uses a different part of this harness

pub mod daemon;
pub mod deploy;
pub mod netns;
pub mod ssh_host;
pub mod systemd_host;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How long a test waits for something that should happen promptly. Only a
/// bound against hanging forever: no test asserts on how fast things are.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
pub const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");
pub const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/echo-deploy");

/// Standard error of a child, collected line by line as it arrives.
#[derive(Clone, Default)]
pub struct LogLines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl LogLines {
    pub fn collect(self, stream: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, arrived) = &*self.0;
                lines.lock().unwrap().push(line);
                arrived.notify_all();
            }
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` appears after the first `skip`
    /// lines, and returns it.
    pub fn wait_for_after(&self, skip: usize, needle: &str) -> String {
        let (lines, arrived) = &*self.0;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard.iter().skip(skip).find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no log line containing {needle:?}; got:\n{}",
                guard.join("\n")
            );
            guard = arrived.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_after(0, needle)
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A config file in a temporary directory that lives as long as the server.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// How to start a server: its config file, and anything around it.
pub struct Launcher {
    /// `None` runs without any config file: the built-in default.
    config: Option<String>,
    wrapper: Vec<String>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    config_from_env: bool,
}

impl Launcher {
    pub fn new(config: &str) -> Launcher {
        Launcher {
            config: Some(config.to_string()),
            wrapper: Vec::new(),
            args: Vec::new(),
            envs: Vec::new(),
            config_from_env: false,
        }
    }

    /// No config file at all, as a newcomer's `cargo run` has.
    pub fn built_in() -> Launcher {
        Launcher {
            config: None,
            ..Launcher::new("")
        }
    }

    /// Runs the server under another program, such as `prlimit ... --`.
    pub fn wrapped_in(mut self, wrapper: &[&str]) -> Launcher {
        self.wrapper = wrapper.iter().map(ToString::to_string).collect();
        self
    }

    pub fn arg(mut self, arg: &str) -> Launcher {
        self.args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launcher {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Names the config file in $ECHO_SERVER_CONFIG instead of --config.
    pub fn config_from_env(mut self) -> Launcher {
        self.config_from_env = true;
        self
    }

    pub fn start(self) -> Server {
        let dir = TestDir::new();
        let config_path = dir.path().join("config.toml");
        let mut command = match self.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(SERVER);
                command
            }
            None => Command::new(SERVER),
        };
        command
            .env_remove("ECHO_SERVER_CONFIG")
            .env_remove("JOURNAL_STREAM");
        if let Some(config) = &self.config {
            std::fs::write(&config_path, config).unwrap();
            if self.config_from_env {
                command.env("ECHO_SERVER_CONFIG", &config_path);
            } else {
                command.arg("--config").arg(&config_path);
            }
        }
        let mut child = command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo-server");
        let log = LogLines::default();
        log.clone().collect(child.stderr.take().unwrap());
        let started = log.wait_for("echo-server started");
        let mut server = Server {
            child,
            log,
            tcp: Vec::new(),
            udp: Vec::new(),
            metrics: None,
            config_path,
            _dir: dir,
        };
        for word in started.split(|c: char| c.is_whitespace() || c == '"' || c == '=') {
            if let Some(addr) = word.strip_prefix("tcp://") {
                server.tcp.push(addr.parse().unwrap());
            } else if let Some(addr) = word.strip_prefix("udp://") {
                server.udp.push(addr.parse().unwrap());
            } else if let Some(addr) = word
                .strip_prefix("http://")
                .and_then(|url| url.strip_suffix("/metrics"))
            {
                server.metrics = Some(addr.parse().unwrap());
            }
        }
        assert!(!server.tcp.is_empty(), "no TCP address in {started:?}");
        server
    }
}

pub struct Server {
    pub child: Child,
    pub log: LogLines,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    /// Where it serves `/metrics`, if it does.
    pub metrics: Option<SocketAddr>,
    pub config_path: PathBuf,
    _dir: TestDir,
}

impl Server {
    /// Starts a server whose config file is `[server] port = 0` plus `extra`.
    pub fn start(extra: &str) -> Server {
        Launcher::new(&format!("[server]\nport = 0\n{extra}")).start()
    }

    pub fn addr(&self) -> SocketAddr {
        self.tcp[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr()).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    pub fn signal(&self, signal: Signal) {
        send_signal(&self.child, signal);
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> ExitStatus {
        wait_with_patience(&mut self.child)
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Rewrites the config file (for a later SIGHUP).
    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn send_signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

pub fn wait_with_patience(child: &mut Child) -> ExitStatus {
    wait_within(child, PATIENCE)
}

pub fn wait_within(child: &mut Child, patience: Duration) -> ExitStatus {
    wait_or_explain(child, patience, String::new)
}

/// Waits for `child`; one that outlives `patience` is killed, and the test
/// fails with its process tree as it was and whatever `so_far` tells, so
/// that a hang seen once in CI says where it hung.
fn wait_or_explain(
    child: &mut Child,
    patience: Duration,
    so_far: impl Fn() -> String,
) -> ExitStatus {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let tree = process_tree(child.id());
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} did not exit within {patience:?}\n\
                 its processes then:\n{tree}{}",
                child.id(),
                so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `pid` and its descendants with their command lines and states, as `ps`
/// shows them.
pub fn process_tree(pid: u32) -> String {
    let listing = Command::new("ps")
        .args(["-e", "--forest", "-o", "pid,ppid,stat,wchan:20,args"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|e| format!("(ps failed: {e})"));
    let mut family = vec![pid.to_string()];
    let mut tree = String::new();
    for line in listing.lines() {
        let mut fields = line.split_whitespace();
        let (Some(own), Some(parent)) = (fields.next(), fields.next()) else {
            continue;
        };
        if family
            .iter()
            .any(|member| member == own || member == parent)
        {
            if !family.iter().any(|member| member == own) {
                family.push(own.to_string());
            }
            tree.push_str(line);
            tree.push('\n');
        }
    }
    tree
}

/// Sends `payload`, half-closes, and reads the echo to the end, writing and
/// reading at the same time so that large payloads cannot deadlock.
pub fn round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let payload = payload.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut echo = Vec::new();
    (&stream).read_to_end(&mut echo).unwrap();
    sender.join().unwrap();
    echo
}

/// A UDP socket on loopback that waits for an answer with patience.
pub fn udp_client() -> std::net::UdpSocket {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// Counts the answers that come to `socket` until none has come for half a
/// second (for sources the server answers only in part).
pub fn count_udp_answers_until_quiet(socket: &std::net::UdpSocket) -> u64 {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 16];
    while socket.recv(&mut buf).is_ok() {
        answered += 1;
    }
    answered
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A finished process: its exit code and what it printed.
pub struct Finished {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `command` with `input` on its standard input to the end. A process
/// that does not finish within the harness's patience is killed and fails
/// the test, instead of hanging it.
pub fn finish_with_patience(command: Command, input: &[u8]) -> Finished {
    finish_within(command, input, PATIENCE)
}

/// `finish_with_patience` for commands that take longer, like deployments.
pub fn finish_within(command: Command, input: &[u8], patience: Duration) -> Finished {
    finish_within_explained(command, input, patience, String::new)
}

/// `finish_within` for a command that talks to something else (a host):
/// a hang's report adds what `other_side` tells of it.
pub fn finish_within_explained(
    mut command: Command,
    input: &[u8],
    patience: Duration,
    other_side: impl Fn() -> String,
) -> Finished {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_so_far = Arc::new(Mutex::new(Vec::new()));
    let err = std::thread::spawn({
        let err_so_far = Arc::clone(&err_so_far);
        move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = stderr.read(&mut chunk) {
                err_so_far.lock().unwrap().extend_from_slice(&chunk[..read]);
            }
        }
    });
    let status = wait_or_explain(&mut child, patience, || {
        let text = err_so_far.lock().unwrap();
        format!(
            "its standard error so far:\n{}\n{}",
            String::from_utf8_lossy(&text),
            other_side()
        )
    });
    feeder.join().unwrap();
    let stdout = out.join().unwrap();
    err.join().unwrap();
    let stderr = String::from_utf8_lossy(&err_so_far.lock().unwrap()).into_owned();
    Finished {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// How a command ends when its standard output is a pipe nobody reads any
/// more (`| head`), and when it is a full disk (`/dev/full`): for each, the
/// exit code and standard error.
pub fn with_lost_stdout(command: impl Fn() -> Command) -> [(i32, String); 2] {
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Stdio::from(writer)
    };
    let full_disk = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    [closed_pipe(), full_disk()].map(|stdout| {
        let mut child = command()
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (
            wait_within(&mut child, PATIENCE).code().unwrap_or(-1),
            stderr,
        )
    })
}

/// Runs `systemd-socket-activate ARGS` (which names echo-server in ARGS)
/// without a config file: the sockets it binds are passed to the server as
/// a `.socket` unit would pass them, on the first connection. Returns once
/// they are bound, with the standard error of both.
pub fn socket_activate(args: &[&str]) -> (Child, LogLines) {
    let mut child = Command::new("systemd-socket-activate")
        .args(args)
        .env("ECHO_SERVER_CONFIG", "")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate (package systemd) is installed by scripts/test.sh");
    let log = LogLines::default();
    log.clone().collect(child.stderr.take().unwrap());
    log.wait_for("Listening on");
    (child, log)
}

/// Runs the server binary to completion with `args` and returns
/// (exit code, stdout, stderr).
pub fn run_server(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(SERVER);
    command.args(args).env_remove("ECHO_SERVER_CONFIG");
    for (key, value) in envs {
        command.env(key, value);
    }
    let finished = finish_with_patience(command, b"");
    (finished.code, finished.stdout(), finished.stderr)
}

/// `echo-server --check-config --config NEW --running RUNNING`, which must
/// succeed: its standard output, whose first line names the settings that
/// only a restart applies.
pub fn check_config_against_running(new: &Path, running: &Path) -> String {
    let (code, stdout, stderr) = run_server(
        &[
            "--check-config",
            "--config",
            new.to_str().unwrap(),
            "--running",
            running.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// True once the server has closed (or reset) this connection; false if it
/// is still open when the read times out.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(_) => true,
    }
}

/// `clients` clients at once, each on its own connection, each sending
/// `rounds` messages of its own size and content, and each getting back
/// exactly its own bytes.
pub fn clients_at_once_get_their_own_bytes(addr: SocketAddr, clients: u64, rounds: u64) {
    let clients: Vec<_> = (0..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                for round in 0..rounds {
                    let message = random_bytes(1 + (i as usize * 131) % 9000, i * 1000 + round);
                    stream.write_all(&message).unwrap();
                    let mut echo = vec![0; message.len()];
                    stream.read_exact(&mut echo).unwrap();
                    assert_eq!(echo, message, "client {i}, round {round}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// A connection from `source` (another loopback address than 127.0.0.1,
/// so that logs can tell this client from others) to 127.0.0.1:`port`.
pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)).into())
        .unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `message` and reads exactly its echo back.
pub fn echo_once(stream: &mut (impl Read + Write), message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut echo = vec![0; message.len()];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, message);
}

/// A loopback port for a server that the test starts next (sshd, a
/// deployed echo-server). Where the kernel's ephemeral range (from which
/// every bind to port 0 and every outgoing connection take theirs) leaves
/// room below it, the port comes from there, so nothing else the tests do
/// can take it before that server binds it. Each is handed out once per
/// test process, from a start that depends on the process, so that two test
/// runs at once seldom meet. Without that room, a port the kernel just gave
/// out for port 0, which is free a moment more.
pub fn free_port() -> u16 {
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u16 = 20_000;
    // Prime, so that processes with neighbouring ids start far apart.
    const STRIDE: u32 = 1_009;
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = u32::from(ephemeral_from.saturating_sub(FIRST));
    if span < 4 * STRIDE {
        return std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let start = std::process::id().wrapping_mul(STRIDE);
    loop {
        let taken = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        assert!(
            taken < span,
            "no free port left from {FIRST} to {ephemeral_from}"
        );
        let offset = start.wrapping_add(taken) % span;
        let port = FIRST + u16::try_from(offset).expect("an offset below the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs `program`, which must succeed.
pub fn run(program: &str, args: &[&str]) -> Finished {
    let mut command = Command::new(program);
    command.args(args);
    let finished = finish_with_patience(command, b"");
    assert_eq!(finished.code, 0, "{program} {args:?}: {}", finished.stderr);
    finished
}

/// How a test reaches one of its SSH hosts: as root, key only, with the
/// host key verified against `known_hosts`.
pub struct SshLogin<'a> {
    pub port: u16,
    pub key: &'a Path,
    pub known_hosts: &'a Path,
}

impl SshLogin<'_> {
    /// Runs `script` on the host with `input` on its standard input.
    pub fn run(&self, script: &str, input: &[u8]) -> Finished {
        let mut command = Command::new("ssh");
        command
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-i")
            .arg(self.key)
            .args(["-p", &self.port.to_string(), "root@127.0.0.1", script]);
        finish_with_patience(command, input)
    }
}

/// Asserts that a page of the documentation (README.md or docs/*.md) shows
/// `text`, a program's output, verbatim: what a reader copies from the docs
/// must be what the program says today, wherever the page that shows it is.
pub fn assert_documented(what: &str, text: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_dir(root.join("docs"))
        .into_iter()
        .flatten()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"));
    let shown = std::iter::once(root.join("README.md"))
        .chain(docs)
        .any(|page| {
            std::fs::read_to_string(page)
                .unwrap()
                .contains(text.trim_end())
        });
    assert!(
        shown,
        "neither README.md nor docs/*.md shows the current `{what}`:\n{text}"
    );
}

/// A bash script that prints, one per line, what bash completes for the
/// words of `line` (the last one being completed, empty after a space):
/// `load` makes the command's completion known, then its completion
/// function is called with the words as bash calls it on TAB.
pub fn bash_completion_script(load: &str, line: &str) -> String {
    format!(
        r#"set -eu
COMP_LINE='{line}'
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE != *' ' ]] || COMP_WORDS+=('')
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMP_POINT=${{#COMP_LINE}}
command=${{COMP_WORDS[0]}}
{load}
function=$(complete -p "$command" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
# bash-completion's loader falls back to _minimal when it finds no file.
[[ -n $function && $function != _minimal ]] || {{ echo "no completion for $command" >&2; exit 1; }}
"$function" "$command" "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD - 1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#
    )
}
