//! What the deployment tests share: the builds to deploy, and how they
//! judge a step and the service it left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{CLIENT, Finished, SERVER, finish_with_patience, run};

/// The echo-server that deployment tests ship, with its echo-client
/// beside it: this build without its debug information. A debug build is
/// about 80 MiB a binary, five times what is left, and every install
/// uploads both; PuTTY's pscp moves it at a few MiB a second on a busy
/// machine, which made a lifecycle of installs and upgrades outlast its
/// patience in CI.
pub fn shipped_server() -> &'static str {
    static SHIPPED: OnceLock<String> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shipped");
        std::fs::create_dir_all(&dir).unwrap();
        for built in [SERVER, CLIENT] {
            let name = Path::new(built).file_name().unwrap();
            // Made under a name of this process's and renamed, so that test
            // binaries running at once never see half a file.
            let partial = dir.join(format!("{}.{}", name.to_str().unwrap(), std::process::id()));
            run(
                "objcopy",
                &["--strip-debug", built, partial.to_str().unwrap()],
            );
            std::fs::rename(&partial, dir.join(name)).unwrap();
        }
        dir.join("echo-server").to_str().unwrap().to_string()
    })
}

/// The echo-client that goes with `shipped_server`.
pub fn shipped_client() -> PathBuf {
    Path::new(shipped_server()).with_file_name("echo-client")
}

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
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'echo-server 0.1.0-broken' ;;\n  \
         --generate) echo 'a stand-in for echo-server has no manual' ;;\n  \
         --check-config) echo 'listen = [\"127.0.0.1:{port}\"]' ;;\n  \
         *) echo 'echo-server: error: cannot open the log directory /var/log/echo-server: \
         Permission denied (os error 13)' >&2; exit 77 ;;\nesac\n"
    );
    write_build(&dir.join("broken"), script.as_bytes())
}

/// The same program with different bytes: a new build, as far as the
/// deployment can tell (an ELF file runs the same with bytes appended).
pub fn new_build(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(shipped_server()).unwrap();
    bytes.extend_from_slice(b"\nbuild 2\n");
    write_build(&dir.join("new"), &bytes)
}

/// A build in directory `dir`: an echo-server of these bytes, and the
/// shipped echo-client beside it, as `echo-deploy --binary` takes them.
pub fn write_build(dir: &Path, server: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("echo-server");
    std::fs::write(&path, server).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy(shipped_client(), dir.join("echo-client")).unwrap();
    path
}
