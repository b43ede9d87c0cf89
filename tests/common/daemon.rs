//! Daemon mode (`--daemon`) for real: a fork, a pid file and a log
//! directory of the test's own, and a daemon that is killed when the test
//! ends, also when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Finished, PATIENCE, SERVER, Signal, TestDir, finish_with_patience, free_port};

/// A daemon's files in a directory every user may enter, since the daemon
/// may drop to `nobody`.
pub struct DaemonDir {
    pub dir: TestDir,
}

impl DaemonDir {
    pub fn new() -> DaemonDir {
        let dir = TestDir::new();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        DaemonDir { dir }
    }

    /// Writes the config file, with `extra` in its `[daemon]` table, and
    /// returns its path.
    pub fn config(&self, extra: &str) -> String {
        self.config_with_log("", extra)
    }

    /// `config`, with `log_extra` in the `[log]` table too.
    pub fn config_with_log(&self, log_extra: &str, extra: &str) -> String {
        let config = format!(
            "[server]\nport = {port}\n[log]\ndirectory = \"{logs}\"\n{log_extra}[daemon]\npid_file = \"{pid}\"\n{extra}",
            port = free_port(),
            logs = self.logs().display(),
            pid = self.pid_file().display(),
        );
        self.dir
            .write("config.toml", &config)
            .to_str()
            .unwrap()
            .to_string()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("run/echo-server.pid")
    }

    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(self.pid_file())
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn port(&self) -> u16 {
        let config = std::fs::read_to_string(self.dir.path().join("config.toml")).unwrap();
        config
            .lines()
            .find_map(|l| l.strip_prefix("port = "))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Starts the daemon as from an interactive shell: on a terminal of its
    /// own (a pseudo-terminal from `script`), which the daemon must leave.
    pub fn start_on_a_terminal(&self, config: &str) -> Finished {
        let mut command = Command::new("script");
        command
            .args(["--quiet", "--return", "--command"])
            .arg(format!("{SERVER} --daemon --config {config}"))
            .arg("/dev/null")
            .env_remove("ECHO_SERVER_CONFIG");
        finish_with_patience(command, b"")
    }

    pub fn start(&self, config: &str) -> Finished {
        self.start_with(config, &[])
    }

    /// Starts a second daemon with `config` while the one with `pid` runs:
    /// it must be refused, naming that pid (exit 69).
    pub fn assert_second_start_refused(&self, config: &str, pid: i32) {
        let second = self.start(config);
        assert_eq!(second.code, 69, "{}", second.stderr);
        assert!(
            second
                .stderr
                .contains(&format!("already running as pid {pid}")),
            "{}",
            second.stderr
        );
    }

    /// `start`, with more arguments after `--daemon --config CONFIG`.
    pub fn start_with(&self, config: &str, args: &[&str]) -> Finished {
        let mut command = Command::new(SERVER);
        command
            .args(["--daemon", "--config", config])
            .args(args)
            .env_remove("ECHO_SERVER_CONFIG");
        finish_with_patience(command, b"")
    }

    /// Stops the running daemon with SIGTERM and waits until it is gone.
    pub fn stop(&self) {
        let pid = self.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
        wait_until_gone(pid);
    }
}

impl Drop for DaemonDir {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file())
            && let Ok(pid) = pid.trim().parse()
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Fields of /proc/PID/stat after the command name: state is 0, ppid 1,
/// session 3, tty_nr 4.
pub fn proc_stat(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The ids after `field:` (`Uid`, `Gid`, `Groups`) in /proc/PID/status.
pub fn proc_status_ids(pid: i32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} line in /proc/{pid}/status"));
    line.split_whitespace().map(String::from).collect()
}

pub fn wait_until_gone(pid: i32) {
    let deadline = Instant::now() + PATIENCE;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "pid {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}
