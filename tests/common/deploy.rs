//! What the deployment tests share: fake builds to deploy, and how they
//! judge a step and the service it left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{CLIENT, Finished, SERVER, finish_with_patience};

/// Asserts that a deployment step (a `Finished` command) succeeded, and
/// shows its output if not.
pub fn assert_ok(step: &str, finished: &Finished) {
    assert_eq!(
        finished.code,
        0,
        "{step} failed:\n{}{}",
        finished.stdout(),
        finished.stderr
    );
}

/// `echo-client check` from this machine against a service deployed on
/// this loopback port. Retried, as a service that was just (re)started may
/// not listen yet.
pub fn echo_check(port: u16) -> Finished {
    let mut command = Command::new(CLIENT);
    let target = format!("127.0.0.1:{port}");
    command.args(["check", &target, "--timeout", "3s", "--retries", "3"]);
    finish_with_patience(command, b"")
}

/// A stand-in for a broken build: it reports a version and a valid config
/// (so it passes the pre-switch checks), and fails to start, with the
/// message a daemon gives when its log directory is not its own: an error
/// of the host's, which a deployment must never blame on SSH.
pub fn broken_build(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("broken/echo-server");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'echo-server 0.1.0-broken' ;;\n  \
         --generate) echo 'a stand-in for echo-server has no manual' ;;\n  \
         --check-config) echo 'listen = [\"127.0.0.1:{port}\"]' ;;\n  \
         *) echo 'echo-server: error: cannot open the log directory /var/log/echo-server: \
         Permission denied (os error 13)' >&2; exit 77 ;;\nesac\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy(CLIENT, path.with_file_name("echo-client")).unwrap();
    path
}

/// The same program with different bytes: a new build, as far as the
/// deployment can tell (an ELF file runs the same with bytes appended).
pub fn new_build(dir: &Path) -> PathBuf {
    let path = dir.join("new/echo-server");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(SERVER).unwrap();
    bytes.extend_from_slice(b"\nbuild 2\n");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy(CLIENT, path.with_file_name("echo-client")).unwrap();
    path
}
