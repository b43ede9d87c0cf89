//! `deploy/echo-deploy` against a real OpenSSH server on loopback, over
//! both transports (OpenSSH's ssh/scp and PuTTY's plink/pscp).
//!
//! The host (tests/common/ssh_host.rs) runs in namespaces of its own, which
//! take the installed daemon with them when the test ends. It has no
//! systemd, so the deploy drives the daemon mode (`--daemon`, pid file).

#![cfg(unix)]

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::deploy::{
    assert_ok, broken_build, echo_check, new_build, shipped_client, shipped_server, write_build,
};
use common::ssh_host::{HostOptions, SshHost};
use common::tls::{Pki, installed_tls_config, served_not_after};
use common::{
    CLIENT, DEPLOY, Finished, LogLines, TestDir, finish_with_patience, finish_within_explained,
    free_port,
};

/// A deployment step with a rollback takes several restarts and checks.
const DEPLOY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

impl SshHost {
    /// `echo-deploy` with the options that reach this host over `transport`.
    fn deploy(&self, transport: &str, args: &[&str]) -> Finished {
        self.deploy_as("root", transport, args)
    }

    fn deploy_as(&self, user: &str, transport: &str, args: &[&str]) -> Finished {
        finish_within_explained(
            self.deploy_command(user, transport, args),
            b"",
            DEPLOY_PATIENCE,
            || self.state(),
        )
    }

    fn deploy_command(&self, user: &str, transport: &str, args: &[&str]) -> Command {
        let host = format!("{user}@127.0.0.1:{}", self.port);
        let mut command = Command::new(DEPLOY);
        command
            .arg("--host")
            .arg(&host)
            .arg("--transport")
            .arg(transport);
        match transport {
            "openssh" => command
                .arg("-i")
                .arg(&self.key)
                .arg("--known-hosts")
                .arg(&self.known_hosts),
            _ => command
                .arg("-i")
                .arg(&self.ppk)
                .arg("--hostkey")
                .arg(&self.fingerprint),
        };
        // PuTTY keeps its random seed under $HOME.
        command.args(args).env("HOME", self.dir.path());
        command
    }

    /// Starts `echo-deploy` over OpenSSH as root without waiting for it;
    /// its standard error is collected line by line.
    fn spawn_deploy(&self, args: &[&str]) -> (Child, LogLines) {
        let mut child = self
            .deploy_command("root", "openssh", args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = LogLines::default();
        lines.clone().collect(child.stderr.take().unwrap());
        (child, lines)
    }

    /// Installs echo-server from this build on `port`, over OpenSSH.
    fn install(&self, work: &TestDir, port: u16) {
        assert_ok("install", &self.install_as("root", work, port));
    }

    /// `install` of this build on `port`, as `user`, over OpenSSH.
    fn install_as(&self, user: &str, work: &TestDir, port: u16) -> Finished {
        let config = config_on_port(work.path(), port, "");
        let config = config.to_str().unwrap();
        let args = ["--binary", shipped_server(), "--config", config, "install"];
        self.deploy_as(user, "openssh", &args)
    }

    /// Waits until no deploy run holds the host's lock: a change that went
    /// on after its connection dropped has finished.
    fn wait_for_the_lock(&self) {
        let deadline = Instant::now() + DEPLOY_PATIENCE;
        let free = "lock=/var/lib/echo-deploy/lock; [ ! -e $lock ] || flock -n $lock true";
        while self.shell(free).code != 0 {
            assert!(Instant::now() < deadline, "the deploy lock is still held");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The release `current` names on the host.
    fn current_release(&self) -> String {
        self.shell("readlink /opt/echo-server/current").stdout()
    }

    /// The daemon's pid, as the lock on its pid file says.
    fn daemon_pid(&self) -> String {
        let status = self.deploy("openssh", &["status"]);
        assert_ok("status", &status);
        let stdout = status.stdout();
        let pid = stdout
            .split(", ")
            .find_map(|part| part.strip_prefix("pid "))
            .unwrap_or_else(|| panic!("no pid in {stdout}"));
        pid.to_string()
    }
}

/// A stand-in for a build that starts and then hangs: it starts the previous
/// release as the daemon (a real echo-server that holds its pid file and its
/// port) and stops it (SIGSTOP), so connections are accepted and never
/// answered.
fn wedged_build(dir: &Path, port: u16) -> PathBuf {
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'echo-server 0.1.0-wedged' ;;\n  \
         --generate) echo 'a stand-in for echo-server has no manual' ;;\n  \
         --check-config) echo 'listen = [\"127.0.0.1:{port}\"]' ;;\n  \
         --daemon) /opt/echo-server/previous/echo-server \"$@\" || exit\n    \
         while [ $# -gt 0 ]; do [ \"$1\" = --pid-file ] && pidfile=$2; shift; done\n    \
         kill -STOP \"$(cat \"$pidfile\")\" ;;\n  \
         *) exit 1 ;;\nesac\n"
    );
    write_build(&dir.join("wedged"), script.as_bytes())
}

fn config_on_port(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("config-{port}.toml"));
    std::fs::write(&path, format!("[server]\nport = {port}\n{extra}")).unwrap();
    path
}

fn assert_failed(step: &str, finished: &Finished, reason: &str) {
    assert_eq!(
        finished.code,
        1,
        "{step} should fail:\n{}{}",
        finished.stdout(),
        finished.stderr
    );
    assert!(
        finished.stderr.contains(reason),
        "{step}: no {reason:?} in:\n{}",
        finished.stderr
    );
}

/// What `echo-deploy install` puts under /usr/local/share besides the
/// binaries: the man pages and the bash, zsh and fish completions.
const INSTALLED_MANUALS: &str = "man/man8/echo-server.8 man/man1/echo-client.1 \
    bash-completion/completions/echo-server bash-completion/completions/echo-client \
    zsh/site-functions/_echo-server zsh/site-functions/_echo-client \
    fish/vendor_completions.d/echo-server.fish fish/vendor_completions.d/echo-client.fish";

/// The whole life of a deployment over one transport.
fn lifecycle(transport: &str) {
    let host = SshHost::start();
    let port = free_port();
    let work = TestDir::new();
    let config = config_on_port(work.path(), port, "");
    let config_arg = config.to_str().unwrap();

    let installed = host.deploy(
        transport,
        &[
            "--binary",
            shipped_server(),
            "--config",
            config_arg,
            "install",
        ],
    );
    assert_ok("install", &installed);
    assert!(
        installed.stdout().contains("installed 0.1.0-"),
        "{}",
        installed.stdout()
    );
    assert_eq!(
        echo_check(port).code,
        0,
        "the deployed daemon does not echo"
    );
    // The man pages and completions, made by the release's own binaries,
    // where man and the shells look under /usr/local, through `current`.
    let manuals = host.shell(&format!(
        "for path in {INSTALLED_MANUALS}; do test -s /usr/local/share/$path && readlink /usr/local/share/$path; done"
    ));
    let expected: Vec<String> = INSTALLED_MANUALS
        .split_whitespace()
        .map(|path| format!("/opt/echo-server/current/share/{path}"))
        .collect();
    assert_eq!(
        manuals.stdout().lines().collect::<Vec<_>>(),
        expected,
        "{}",
        manuals.stderr
    );
    assert!(
        host.shell("cat /usr/local/share/man/man1/echo-client.1")
            .stdout()
            .contains(".SH \"ECHO-CLIENT CHECK\""),
        "echo-client's man page is not echo-client's"
    );
    let layout = host.shell("readlink /opt/echo-server/current; readlink /usr/local/bin/echo-server; cat /etc/echo-server/config.toml");
    assert!(
        layout.stdout().starts_with("releases/0.1.0-"),
        "{}",
        layout.stdout()
    );
    assert!(
        layout
            .stdout()
            .contains("/opt/echo-server/current/echo-server"),
        "{}",
        layout.stdout()
    );

    let status = host.deploy(transport, &["status"]);
    assert_ok("status", &status);
    assert!(
        status.stdout().contains("active (daemon), release 0.1.0-"),
        "{}",
        status.stdout()
    );

    // A good config is made live; a broken one never reaches the live path.
    let good = config_on_port(work.path(), port, "idle_timeout = \"1m\"\n");
    assert_ok(
        "config push",
        &host.deploy(transport, &["config", "push", good.to_str().unwrap()]),
    );
    let live = host.shell("cat /etc/echo-server/config.toml").stdout();
    assert!(live.contains("idle_timeout = \"1m\""), "{live}");
    let broken = work.write("broken.toml", "[server]\nport = \"seven\"\n");
    let pushed = host.deploy(transport, &["config", "push", broken.to_str().unwrap()]);
    assert_failed(
        "config push of a broken file",
        &pushed,
        "the new config is invalid, the live one is unchanged",
    );
    assert_eq!(
        host.shell("cat /etc/echo-server/config.toml").stdout(),
        live
    );
    assert_eq!(echo_check(port).code, 0);

    // An upgrade that does not come up is rolled back.
    let broken_build = broken_build(work.path(), port);
    let upgraded = host.deploy(
        transport,
        &["--binary", broken_build.to_str().unwrap(), "upgrade"],
    );
    assert_failed(
        "upgrade to a broken build",
        &upgraded,
        "failed its health check; rolled back to 0.1.0-",
    );
    assert_eq!(
        echo_check(port).code,
        0,
        "the rollback did not bring the old release back"
    );
    let current = host.shell("readlink /opt/echo-server/current").stdout();
    assert!(
        !upgraded.stderr.contains("authentication refused"),
        "the daemon's own error passed for SSH's: {}",
        upgraded.stderr
    );
    // One that starts but does not echo fails the echo check: rolled back too.
    let wedged = wedged_build(work.path(), port);
    let upgraded = host.deploy(
        transport,
        &["--binary", wedged.to_str().unwrap(), "upgrade"],
    );
    assert_failed(
        "upgrade to a build that does not echo",
        &upgraded,
        "failed its health check; rolled back to 0.1.0-",
    );
    assert_eq!(
        host.shell("readlink /opt/echo-server/current").stdout(),
        current
    );
    assert_eq!(
        echo_check(port).code,
        0,
        "the rollback did not bring the old release back"
    );
    assert!(
        host.shell("ls /opt/echo-server/releases")
            .stdout()
            .lines()
            .count()
            == 1,
        "failed releases are kept"
    );

    assert_ok("restart", &host.deploy(transport, &["restart"]));
    assert_eq!(echo_check(port).code, 0);
    let logs = host.deploy(transport, &["logs", "-n", "100"]);
    assert_ok("logs", &logs);
    assert!(
        logs.stdout().contains("echo-server started"),
        "{}",
        logs.stdout()
    );
    assert_ok("check", &host.deploy(transport, &["check"]));
    assert_ok(
        "check from here",
        &host.deploy(
            transport,
            &["--check-from", "here", "--client", CLIENT, "check"],
        ),
    );

    assert_ok(
        "uninstall",
        &host.deploy(transport, &["uninstall", "--purge"]),
    );
    assert_ne!(echo_check(port).code, 0, "still echoing after uninstall");
    let left = host
        .shell("ls /opt/echo-server /etc/echo-server /usr/local/bin/echo-server 2>&1 || true")
        .stdout();
    assert_eq!(left.matches("No such file").count(), 3, "{left}");
    let manuals_left = host
        .shell(&format!(
            "cd /usr/local/share && ls -d {INSTALLED_MANUALS} 2>/dev/null || true"
        ))
        .stdout();
    assert_eq!(manuals_left, "", "man pages or completions left behind");
    let uploads = host
        .shell("ls -d /tmp/echo-deploy.* 2>/dev/null || true")
        .stdout();
    assert_eq!(uploads, "", "upload directories were left on the host");
}

#[test]
fn the_whole_lifecycle_over_openssh() {
    lifecycle("openssh");
}

#[test]
fn the_whole_lifecycle_over_putty() {
    lifecycle("putty");
}

#[test]
fn a_wrong_host_key_is_refused_by_both_transports() {
    let host = SshHost::start();
    let other = SshHost::start();
    // OpenSSH with the other host's known_hosts entry, re-labelled.
    let wrong = std::fs::read_to_string(&other.known_hosts)
        .unwrap()
        .replace(&other.port.to_string(), &host.port.to_string());
    std::fs::write(&host.known_hosts, wrong).unwrap();
    let status = host.deploy("openssh", &["status"]);
    assert_failed(
        "status with a wrong host key",
        &status,
        "host key not trusted or changed",
    );
    let mut command = Command::new(DEPLOY);
    command
        .args(["--transport", "putty", "-i"])
        .arg(&host.ppk)
        .args([
            "--hostkey",
            &other.fingerprint,
            "--host",
            &format!("root@127.0.0.1:{}", host.port),
            "status",
        ])
        .env("HOME", host.dir.path());
    let status = finish_with_patience(command, b"");
    assert_failed(
        "plink with a wrong host key",
        &status,
        "host key not trusted or changed",
    );
}

#[test]
fn an_unreachable_host_is_reported_and_the_others_still_run() {
    let host = SshHost::start();
    let inventory = TestDir::new();
    let hosts = inventory.write(
        "hosts",
        &format!(
            "root@127.0.0.1:{}\nroot@127.0.0.1:{}  # nobody listens\n",
            host.port,
            free_port()
        ),
    );
    let mut command = Command::new(DEPLOY);
    command
        .args(["--hosts", hosts.to_str().unwrap(), "-j", "2", "-i"])
        .arg(&host.key)
        .arg("--known-hosts")
        .arg(&host.known_hosts)
        .arg("status");
    let status = finish_with_patience(command, b"");
    assert_failed("status of two hosts, one down", &status, "host unreachable");
    assert!(
        status
            .stdout()
            .contains(&format!("root@127.0.0.1:{}: not installed", host.port)),
        "{}",
        status.stdout()
    );
    assert!(
        status.stderr.contains("failed on 1 of 2 hosts"),
        "{}",
        status.stderr
    );
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &[][..],
        &["install"],
        &["--host", "h", "dance"],
        &["--host", "h", "--transport", "telnet", "status"],
    ] {
        let mut command = Command::new(DEPLOY);
        command.args(args);
        let finished = finish_with_patience(command, b"");
        assert_eq!(finished.code, 64, "{args:?}: {}", finished.stderr);
    }
}

/// A `--host` that names a port no transport can reach, or that is not
/// text, is the operator's mistake for every verb: ssh would fail host by
/// host, and plink would even take port 70000 for 4464.
#[test]
fn a_host_with_a_port_out_of_range_or_not_utf8_is_a_usage_error_for_every_verb() {
    for (host, problem) in [
        (
            &b"web1:99999"[..],
            "the port must be a number from 1 to 65535",
        ),
        (b"admin@web1:0", "the port must be a number from 1 to 65535"),
        (b"[::1]:70000", "the port must be a number from 1 to 65535"),
        (b"web\xff", "not UTF-8"),
    ] {
        for verb in ["install", "upgrade", "status", "logs", "check", "uninstall"] {
            for transport in ["openssh", "putty"] {
                let mut command = Command::new(DEPLOY);
                command
                    .args(["--transport", transport, "--host"])
                    .arg(OsStr::from_bytes(host))
                    .arg(verb);
                let finished = finish_with_patience(command, b"");
                let host = String::from_utf8_lossy(host);
                assert_eq!(finished.code, 64, "{host:?} {verb}: {}", finished.stderr);
                assert!(
                    finished.stderr.contains(problem),
                    "{host:?} {verb}: {}",
                    finished.stderr
                );
            }
        }
    }
}

#[test]
fn sudo_is_used_when_the_remote_user_is_not_root() {
    let host = SshHost::start();
    let status = host.deploy_as("deployer", "openssh", &["status"]);
    assert_ok("status through sudo", &status);
    assert!(
        status.stdout().contains("not installed"),
        "{}",
        status.stdout()
    );
    let status = host.deploy_as("nosudo", "putty", &["status"]);
    assert_failed(
        "status without sudo rights",
        &status,
        "sudo needs a password",
    );
}

#[test]
fn installs_through_sudo_and_a_putty_saved_session_with_spaces() {
    let host = SshHost::start();
    let port = free_port();
    let work = TestDir::new();
    let installed = host.install_as("deployer", &work, port);
    assert_ok("install as a user with sudo", &installed);
    assert_eq!(echo_check(port).code, 0);
    // A PuTTY saved session, named with spaces (its file name encodes them).
    let sessions = host.dir.path().join(".putty/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(
        sessions.join("Echo%20Host%201"),
        format!(
            "HostName=127.0.0.1\nPortNumber={}\nUserName=root\nProtocol=ssh\nPublicKeyFile={}\n",
            host.port,
            host.ppk.display()
        ),
    )
    .unwrap();
    let mut command = Command::new(DEPLOY);
    command
        .args([
            "--transport",
            "putty",
            "--hostkey",
            &host.fingerprint,
            "--host",
            "Echo Host 1",
            "status",
        ])
        .env("HOME", host.dir.path());
    let status = finish_with_patience(command, b"");
    assert_ok("status through a saved session", &status);
    assert!(
        status.stdout().starts_with("Echo Host 1: active (daemon)"),
        "{}",
        status.stdout()
    );
}

/// A test host with echo-server from this build installed on a port of its
/// own, and a directory for the test's files.
fn installed_host() -> (SshHost, u16, TestDir) {
    let host = SshHost::start();
    let port = free_port();
    let work = TestDir::new();
    host.install(&work, port);
    (host, port, work)
}

/// Waits for `child` to exit and returns its code.
fn exit_code(child: &mut Child) -> i32 {
    common::wait_within(child, DEPLOY_PATIENCE)
        .code()
        .unwrap_or(-1)
}

#[test]
fn a_change_finishes_on_the_host_whatever_happens_to_its_connection() {
    let (host, port, work) = installed_host();
    let good = host.current_release();
    let wedged = wedged_build(work.path(), port);
    let (mut upgrade, log) = host.spawn_deploy(&["--binary", wedged.to_str().unwrap(), "upgrade"]);
    log.wait_for("step: checking the uploaded binary");
    // The host's side holds still (it has seconds of health check ahead),
    // so that what follows happens in the middle of the upgrade.
    let worker = host
        .shell("pgrep -f '^sh /tmp/echo-deploy-remote[.][^ ]* worker '")
        .stdout();
    let worker = worker.trim();
    assert!(
        !worker.is_empty(),
        "no worker on the host: {}",
        host.shell("ps -eo pid,args").stdout()
    );
    host.shell(&format!("kill -STOP {worker}"));

    // A second run meets the lock, and is told whose it is.
    let restarted = host.deploy("openssh", &["restart"]);
    assert_failed(
        "restart during an upgrade",
        &restarted,
        "another echo-deploy run is changing this host",
    );
    assert!(
        restarted.stderr.contains("running echo-deploy upgrade"),
        "{}",
        restarted.stderr
    );

    // The operator's ssh dies.
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("^ssh .* -p {} -- ", host.port)])
        .status()
        .unwrap();
    assert!(killed.success(), "no ssh to kill");
    assert_eq!(exit_code(&mut upgrade), 1, "{}", log.all().join("\n"));
    log.wait_for("the connection was lost");

    host.shell(&format!("kill -CONT {worker}"));
    host.wait_for_the_lock();
    assert_eq!(host.current_release(), good, "the wedged release is live");
    assert_eq!(echo_check(port).code, 0, "the rollback did not finish");
    let leftovers = host
        .shell("ls -d /tmp/echo-deploy* 2>/dev/null; grep -h 'rolled back to' /var/lib/echo-deploy/runs/*.log")
        .stdout();
    assert!(
        leftovers.starts_with("error: ") && leftovers.contains("rolled back to"),
        "temporary files left, or no rollback in the run's log:\n{leftovers}"
    );
}

#[test]
fn the_pid_file_is_not_taken_at_its_word() {
    let (host, port, _work) = installed_host();
    let daemon = host.daemon_pid();
    // A process that a HUP or TERM meant for the daemon would end.
    host.shell("setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /run/canary.pid");
    let canary = host
        .shell("cat /run/canary.pid")
        .stdout()
        .trim()
        .to_string();
    let canary_alive = || host.shell(&format!("kill -0 {canary}")).code == 0;
    let pid_file = "/run/echo-server/echo-server.pid";

    // What the daemon's user can write into its own pid file.
    for lie in ["1", "-1", &canary, "0", "x"] {
        host.shell(&format!("echo '{lie}' > {pid_file}"));
        assert_eq!(host.daemon_pid(), daemon, "pid file saying {lie:?}");
        assert_ok("reload", &host.deploy("openssh", &["reload"]));
        assert!(
            canary_alive(),
            "reload with {lie:?} in the pid file signalled others"
        );
    }
    assert_ok("stop", &host.deploy("openssh", &["stop"]));
    assert!(canary_alive(), "stop killed another process");
    assert_ne!(echo_check(port).code, 0, "the daemon did not stop");

    // A daemon that died without cleaning up, its pid since given to another.
    assert_ok("start", &host.deploy("openssh", &["start"]));
    let daemon = host.daemon_pid();
    host.shell(&format!("kill -KILL {daemon}; echo {canary} > {pid_file}"));
    let status = host.deploy("openssh", &["status"]);
    assert!(
        status.stdout().contains("inactive (daemon)"),
        "{}",
        status.stdout()
    );
    assert_ok("stop", &host.deploy("openssh", &["stop"]));
    assert!(canary_alive(), "stop killed the process that got the pid");
    assert_ok("start", &host.deploy("openssh", &["start"]));
    assert_eq!(
        echo_check(port).code,
        0,
        "start believed the dead daemon alive"
    );
}

#[test]
fn rollback_never_makes_things_worse() {
    let (host, port, work) = installed_host();
    let first = host.current_release();
    let second = new_build(work.path());
    assert_ok(
        "upgrade",
        &host.deploy(
            "openssh",
            &["--binary", second.to_str().unwrap(), "upgrade"],
        ),
    );
    // Back to the first build, and it fails the check from here (a wrong
    // port): the first build is what previous names, and must stay.
    let closed = free_port().to_string();
    let back = host.deploy(
        "openssh",
        &[
            "--binary",
            shipped_server(),
            "--check-from",
            "here",
            "--echo-port",
            &closed,
            "--local-client",
            CLIENT,
            "upgrade",
        ],
    );
    assert_failed("upgrade checked on a wrong port", &back, "rolled back to");
    assert_eq!(
        host.shell("readlink /opt/echo-server/previous").stdout(),
        first
    );
    assert_ok("rollback", &host.deploy("openssh", &["rollback"]));
    assert_eq!(host.current_release(), first);
    assert_eq!(echo_check(port).code, 0);

    // A previous release that is gone is refused, and nothing stops.
    let previous = host.shell("readlink /opt/echo-server/previous").stdout();
    host.shell(&format!("rm -rf /opt/echo-server/{}", previous.trim()));
    let refused = host.deploy("openssh", &["rollback"]);
    assert_failed("rollback to a deleted release", &refused, "is gone");
    assert_eq!(host.current_release(), first);
    assert_eq!(
        echo_check(port).code,
        0,
        "a refused rollback stopped the service"
    );

    // An install over a running release rolls back like an upgrade, and
    // the host's own error is never blamed on SSH.
    let broken = broken_build(work.path(), port);
    let installed = host.deploy(
        "openssh",
        &["--binary", broken.to_str().unwrap(), "install"],
    );
    assert_failed(
        "install of a broken build",
        &installed,
        "failed its health check; rolled back to",
    );
    assert!(
        installed.stderr.contains("Permission denied (os error 13)")
            && !installed.stderr.contains("authentication refused"),
        "{}",
        installed.stderr
    );
    assert_eq!(echo_check(port).code, 0);
}

#[test]
fn a_broken_first_install_is_reported_as_the_hosts_own_error() {
    let host = SshHost::start();
    let port = free_port();
    let work = TestDir::new();
    let broken = broken_build(work.path(), port);
    let config = config_on_port(work.path(), port, "");
    let installed = host.deploy(
        "openssh",
        &[
            "--binary",
            broken.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "install",
        ],
    );
    assert_failed(
        "first install of a broken build",
        &installed,
        "FAILED: at step \"starting 0.1.0-broken-",
    );
    assert!(
        installed.stderr.contains("echo-server did not start")
            && !installed.stderr.contains("authentication refused"),
        "{}",
        installed.stderr
    );
}

#[test]
fn config_push_checks_what_only_the_host_knows_and_restores_what_fails() {
    let (host, port, work) = installed_host();
    let live = || host.shell("cat /etc/echo-server/config.toml").stdout();
    let before = live();
    let push = |name: &str, text: &str, extra: &[&str]| {
        let file = work.write(name, text);
        let mut args = vec!["config", "push"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        host.deploy("openssh", &args)
    };
    let at_port = |port: u16, extra: &str| format!("[server]\nport = {port}\n{extra}");
    for (text, reason) in [
        (
            at_port(port, "[daemon]\nuser = \"no-such-user\"\n"),
            "user \"no-such-user\" does not exist here",
        ),
        (
            format!("[server]\nhost = \"no-such-host.invalid\"\nport = {port}\n"),
            "\"no-such-host.invalid\" does not resolve here",
        ),
        (
            at_port(port, "[log]\ndirectory = \"/etc/passwd/logs\"\n"),
            "cannot be made: /etc/passwd is not a directory",
        ),
    ] {
        let pushed = push("bad.toml", &text, &[]);
        assert_failed("config push", &pushed, reason);
        assert!(
            pushed.stderr.contains("the live one is unchanged"),
            "{}",
            pushed.stderr
        );
        assert_eq!(live(), before);
    }

    // A new port needs a restart: said, not done, and the service goes on.
    let moved = free_port();
    let pushed = push("moved.toml", &at_port(moved, ""), &[]);
    assert_ok("config push of a new port", &pushed);
    assert!(
        pushed.stdout().contains("restart to apply: server.listen"),
        "{}",
        pushed.stdout()
    );
    assert_eq!(echo_check(port).code, 0);
    // --restart does it.
    let pushed = push("moved.toml", &at_port(moved, ""), &["--restart"]);
    assert_ok("config push --restart", &pushed);
    assert_eq!(echo_check(moved).code, 0);
    assert_ne!(echo_check(port).code, 0);

    // A config that does not come up is taken back: sshd holds this port.
    let taken = at_port(host.port, "");
    let pushed = push("taken.toml", &taken, &["--restart"]);
    assert_failed(
        "config push of a port in use",
        &pushed,
        "the previous one is live again",
    );
    assert_eq!(echo_check(moved).code, 0);
    assert!(live().contains(&format!("port = {moved}")), "{}", live());
}

#[test]
fn host_keys_are_checked_whatever_the_ssh_config_says() {
    let host = SshHost::start();
    for lax in [
        "StrictHostKeyChecking no\nUserKnownHostsFile /dev/null\n",
        "StrictHostKeyChecking accept-new\nUserKnownHostsFile /dev/null\n",
    ] {
        let config = host.dir.write("ssh_config", &format!("Host *\n{lax}"));
        let mut command = Command::new(DEPLOY);
        command
            .args(["--ssh-config", config.to_str().unwrap(), "-i"])
            .arg(&host.key)
            .args(["--host", &format!("root@127.0.0.1:{}", host.port), "status"]);
        let status = finish_with_patience(command, b"");
        assert_failed(
            &format!("status with {lax:?}"),
            &status,
            "host key not trusted or changed",
        );
    }
}

#[test]
fn an_interrupted_run_leaves_no_temporary_files_on_either_side() {
    let host = SshHost::start();
    let work = TestDir::new();
    let local_tmp = TestDir::new();
    // Large enough that the upload is still going when the interrupt comes.
    let big = new_build(work.path());
    let mut file = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
    std::io::Write::write_all(&mut file, &vec![0u8; 400 << 20]).unwrap();
    let mut command = host.deploy_command(
        "root",
        "openssh",
        &["--binary", big.to_str().unwrap(), "install"],
    );
    command.env("TMPDIR", local_tmp.path());
    // As from a terminal: a suite started in the background of a
    // non-interactive shell has SIGINT ignored, which its children inherit,
    // and bash cannot trap a signal that was ignored when it started.
    // SAFETY: between fork and exec only signal(), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::signal(common::Signal::SIGINT, nix::sys::signal::SigHandler::SigDfl)
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = LogLines::default();
    log.clone().collect(child.stderr.take().unwrap());
    log.wait_for("step: uploading to");
    common::send_signal(&child, common::Signal::SIGINT);
    assert_eq!(exit_code(&mut child), 130, "{}", log.all().join("\n"));
    log.wait_for("interrupted; cleaning up");
    host.wait_for_the_lock();
    let left_here: Vec<_> = std::fs::read_dir(local_tmp.path()).unwrap().collect();
    assert!(left_here.is_empty(), "left here: {left_here:?}");
    let left_there = host
        .shell("ls -d /tmp/echo-deploy* 2>/dev/null || true")
        .stdout();
    assert_eq!(
        left_there,
        "",
        "left on the host:\n{}",
        log.all().join("\n")
    );
}

#[test]
fn a_full_disk_leaves_no_partial_release() {
    let release_bytes = std::fs::metadata(shipped_server()).unwrap().len()
        + std::fs::metadata(shipped_client()).unwrap().len();
    let host = SshHost::start_with(&HostOptions {
        opt_bytes: Some(release_bytes * 3 / 2),
    });
    let port = free_port();
    let work = TestDir::new();
    host.install(&work, port);
    let first = host.current_release();
    let used = || host.shell("df --output=used /opt | tail -n 1").stdout();
    let before = used();
    let second = new_build(work.path());
    let upgraded = host.deploy(
        "openssh",
        &["--binary", second.to_str().unwrap(), "upgrade"],
    );
    assert_failed(
        "upgrade onto a full disk",
        &upgraded,
        "no room for a new release in /opt/echo-server",
    );
    assert_eq!(host.current_release(), first);
    assert_eq!(echo_check(port).code, 0);
    assert_eq!(
        host.shell("ls -A /opt/echo-server/releases")
            .stdout()
            .lines()
            .count(),
        1,
        "a partial release was left"
    );
    assert_eq!(used(), before, "the disk was left fuller");
}

#[test]
fn the_daemon_runs_as_its_own_user_and_root_reads_nothing_it_plants() {
    let host = SshHost::start();
    let port = free_port();
    let work = TestDir::new();
    // What an earlier daemon that ran as root left behind.
    host.shell(
        "mkdir -p /var/log/echo-server /run/echo-server && \
         echo 'from the root-run daemon' > /var/log/echo-server/echo-server.out",
    );
    host.install(&work, port);
    let pid = host.daemon_pid();
    let ids = host
        .shell(&format!(
            "id -u echo-server; sed -n 's/^Uid:\\t\\([0-9]*\\).*/\\1/p' /proc/{pid}/status"
        ))
        .stdout();
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], ids[1], "the daemon does not run as echo-server");

    // As the daemon's user: the newest log file is a link to root's secrets.
    let planted = host.shell(
        "setpriv --reuid=echo-server --regid=echo-server --clear-groups -- \
         sh -c 'ln -s /etc/shadow /var/log/echo-server/echo-server.9999-12-31.log && \
         touch -h -d tomorrow /var/log/echo-server/echo-server.9999-12-31.log'",
    );
    assert_ok("planting a link", &planted);
    let logs = host.deploy("openssh", &["logs", "-n", "100"]);
    assert_ok("logs", &logs);
    assert!(
        !logs.stdout().contains("root:"),
        "logs showed /etc/shadow:\n{}",
        logs.stdout()
    );
    assert!(
        logs.stdout().contains("echo-server started"),
        "{}",
        logs.stdout()
    );
}

#[test]
fn a_host_name_is_never_run_as_code_here() {
    let dir = TestDir::new();
    let pwned = dir.path().join("pwned");
    // An alias that leads nowhere (a closed loopback port): only the name
    // travels through echo-deploy's output.
    let config = dir.write(
        "ssh_config",
        &format!("Host *\n  HostName 127.0.0.1\n  Port {}\n", free_port()),
    );
    let host = format!("touch${{IFS}}{};|e;", pwned.display());
    let mut command = Command::new(DEPLOY);
    command.args([
        "--ssh-config",
        config.to_str().unwrap(),
        "--host",
        &host,
        "status",
    ]);
    let status = finish_with_patience(command, b"");
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert!(!pwned.exists(), "the host name ran as a command");
}

/// `tls push` where there is no systemd (the daemon mode): its usage
/// mistakes are usage errors, a key access other than credential and
/// ssl-cert among them; a key that does not belong to the certificate is
/// refused before anything changes, and so is `--key-access ssl-cert`
/// (the group is given by the systemd drop-in); a pair under file names a
/// shell would misread goes in (the key 0600 root), and the daemon,
/// restarted (a reload would read the key as the daemon's user), serves
/// it over TLS once the config names it.
#[test]
fn tls_push_refuses_a_mismatched_pair_and_installs_a_good_one() {
    let pki = Pki::new();
    let (certificate, key) = (pki.arg("server.pem"), pki.arg("server.key"));
    for (args, problem) in [
        (&["--host", "h", "tls"][..], "tls needs 'push"),
        (
            &["--host", "h", "tls", "push", &certificate],
            "tls push needs CERTIFICATE KEY",
        ),
        (
            &["--host", "h", "tls", "push", "/no/such.pem", &key],
            "no such file: /no/such.pem",
        ),
        (
            &[
                "--host",
                "h",
                "tls",
                "push",
                "--key-access",
                "group",
                &certificate,
                &key,
            ],
            "--key-access is credential or ssl-cert",
        ),
        (
            &["--host", "h", "tls", "push", "--key-access"],
            "--key-access needs a value",
        ),
        (
            &[
                "--host",
                "h",
                "tls",
                "push",
                &certificate,
                &key,
                "--key-access",
                "ssl-cert",
            ],
            "--key-access goes right after 'tls push'",
        ),
    ] {
        let mut command = Command::new(DEPLOY);
        command.args(args);
        let finished = finish_with_patience(command, b"");
        assert_eq!(finished.code, 64, "{args:?}: {}", finished.stderr);
        assert!(
            finished.stderr.contains(problem),
            "{args:?}: {}",
            finished.stderr
        );
    }

    let (host, port, _work) = installed_host();
    let refused = host.deploy(
        "openssh",
        &["tls", "push", &certificate, &pki.arg("other.key")],
    );
    assert_failed(
        "tls push of a key of another certificate",
        &refused,
        "the certificate and key do not load, nothing changed",
    );
    let refused = host.deploy(
        "openssh",
        &[
            "tls",
            "push",
            "--key-access",
            "ssl-cert",
            &certificate,
            &key,
        ],
    );
    assert_failed(
        "tls push --key-access ssl-cert without systemd",
        &refused,
        "--key-access ssl-cert needs systemd",
    );
    assert_ne!(host.shell("test -e /etc/echo-server/tls").code, 0);

    let odd = |name: &str, from: &str| {
        let path = pki.dir.path().join(name);
        std::fs::copy(pki.file(from), &path).unwrap();
        path.to_str().unwrap().to_string()
    };
    let pushed = host.deploy(
        "openssh",
        &[
            "tls",
            "push",
            &odd("a cert; $(touch x) 'q'.pem", "server.pem"),
            &odd("-key \"*\".pem", "server.key"),
        ],
    );
    assert_ok("tls push", &pushed);
    assert!(
        pushed.stdout().contains("echo-server restarted"),
        "{}",
        pushed.stdout()
    );
    assert_eq!(
        host.shell("stat -c '%U %a' /etc/echo-server/tls/server.key")
            .stdout()
            .trim(),
        "root 600"
    );
    let tls_port = free_port();
    let config = pki
        .dir
        .write("tls.toml", &installed_tls_config(port, tls_port));
    let pushed = host.deploy(
        "openssh",
        &["config", "push", "--restart", config.to_str().unwrap()],
    );
    assert_ok("config push of [tls]", &pushed);
    assert_eq!(
        served_not_after(&pki, &format!("localhost:{tls_port}")),
        pki.not_after("server")
    );
}
