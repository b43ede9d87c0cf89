//! `deploy/echo-deploy` against a real OpenSSH server on loopback, over
//! both transports (OpenSSH's ssh/scp and PuTTY's plink/pscp).
//!
//! The server runs in mount and PID namespaces of its own, with an overlay
//! over every tree a deploy writes (/etc, /opt, /usr/local, /var, /run).
//! Every login sees the overlays, the real trees stay untouched, and when
//! the test ends the namespace's init is killed, taking the installed
//! daemon with it: nothing is left behind on the machine. This host has no
//! systemd, so the deploy drives the daemon mode (`--daemon`, pid file).

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{
    Finished, PATIENCE, SshLogin, TestDir, broken_build, finish_with_patience, finish_within,
    free_port, silent_build,
};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/echo-deploy");
const SERVER: &str = env!("CARGO_BIN_EXE_echo-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_echo-client");

/// A deployment step with a rollback takes several restarts and checks.
const DEPLOY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

fn run(program: &str, args: &[&str]) -> Finished {
    let mut command = Command::new(program);
    command.args(args);
    let finished = finish_with_patience(command, b"");
    assert_eq!(finished.code, 0, "{program} {args:?}: {}", finished.stderr);
    finished
}

/// Where the host sees the harness's directory.
const INSIDE: &str = "/run/echo-test";

/// A throwaway SSH host: sshd on a loopback port, in its own namespaces.
struct SshHost {
    dir: TestDir,
    port: u16,
    sshd: Child,
    /// The OpenSSH private key, its PuTTY form, the known_hosts file and
    /// the host key's SHA256 fingerprint.
    key: PathBuf,
    ppk: PathBuf,
    known_hosts: PathBuf,
    fingerprint: String,
}

impl SshHost {
    fn start() -> SshHost {
        let dir = TestDir::new();
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "user_key"] {
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    key,
                    "-f",
                    path(key).to_str().unwrap(),
                ],
            );
        }
        run(
            "puttygen",
            &[
                path("user_key").to_str().unwrap(),
                "-O",
                "private",
                "-o",
                path("user_key.ppk").to_str().unwrap(),
            ],
        );
        std::fs::copy(path("user_key.pub"), path("authorized_keys")).unwrap();
        let port = free_port();
        dir.write(
            "sshd_config",
            &format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {INSIDE}/host_key\nAuthorizedKeysFile {INSIDE}/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp /usr/lib/openssh/sftp-server\n\
                 PidFile {INSIDE}/sshd.pid\n",

            ),
        );
        // Inside the namespaces: an overlay over each tree a deploy writes,
        // this directory at a fixed place and a fresh /tmp (where this
        // directory may be), no trace of systemd, two unprivileged users (one
        // with passwordless sudo, one without), then sshd as the namespace's
        // init.
        let script = format!(
            "set -e\n\
             for tree in etc opt usr/local var run; do\n\
               mkdir -p {d}/upper/$tree {d}/work/$tree\n\
               mount -t overlay overlay -o lowerdir=/$tree,upperdir={d}/upper/$tree,workdir={d}/work/$tree /$tree\n\
             done\n\
             mkdir -p {INSIDE}\n\
             mount --bind {d} {INSIDE}\n\
             mount -t tmpfs tmpfs /tmp\n\
             rm -rf /run/systemd/system\n\
             mkdir -p /run/sshd\n\
             useradd --no-create-home --home-dir /nonexistent --shell /bin/sh --password '*' deployer\n\
             useradd --no-create-home --home-dir /nonexistent --shell /bin/sh --password '*' nosudo\n\
             echo 'deployer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deployer\n\
             exec /usr/sbin/sshd -D -e -f {INSIDE}/sshd_config",
            d = dir.path().display()
        );
        let sshd = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("sshd.log")).unwrap())
            .spawn()
            .expect("unshare (util-linux) is installed");
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(path("sshd.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "sshd did not start:\n{log}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let host_public = std::fs::read_to_string(path("host_key.pub")).unwrap();
        let mut host_public = host_public.split_whitespace();
        let known = format!(
            "[127.0.0.1]:{port} {} {}\n",
            host_public.next().unwrap(),
            host_public.next().unwrap()
        );
        let known_hosts = dir.write("known_hosts", &known);
        let listing = run(
            "ssh-keygen",
            &[
                "-l",
                "-E",
                "sha256",
                "-f",
                path("host_key.pub").to_str().unwrap(),
            ],
        )
        .stdout();
        let fingerprint = listing.split_whitespace().nth(1).unwrap().to_string();
        SshHost {
            port,
            sshd,
            key: path("user_key"),
            ppk: path("user_key.ppk"),
            known_hosts,
            fingerprint,
            dir,
        }
    }

    /// `echo-deploy` with the options that reach this host over `transport`.
    fn deploy(&self, transport: &str, args: &[&str]) -> Finished {
        self.deploy_as("root", transport, args)
    }

    fn deploy_as(&self, user: &str, transport: &str, args: &[&str]) -> Finished {
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
        finish_within(command, b"", DEPLOY_PATIENCE)
    }

    /// Runs a command on the host, as root, over ssh.
    fn shell(&self, script: &str) -> Finished {
        SshLogin {
            port: self.port,
            key: &self.key,
            known_hosts: &self.known_hosts,
        }
        .run(script, b"")
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        // SIGKILL, as unshare --fork ignores SIGTERM; --kill-child then takes
        // the namespace's init, and with it every process in the namespace
        // (the deployed daemon too), along.
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

fn config_on_port(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("config-{port}.toml"));
    std::fs::write(&path, format!("[server]\nport = {port}\n{extra}")).unwrap();
    path
}

fn echo_check(port: u16) -> Finished {
    let mut command = Command::new(CLIENT);
    command.args(["check", &format!("127.0.0.1:{port}"), "--timeout", "2s"]);
    finish_with_patience(command, b"")
}

fn assert_ok(step: &str, finished: &Finished) {
    assert_eq!(
        finished.code,
        0,
        "{step} failed:\n{}{}",
        finished.stdout(),
        finished.stderr
    );
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

/// The whole life of a deployment over one transport.
fn lifecycle(transport: &str) {
    let host = SshHost::start();
    let port = free_port();
    let work = TestDir::new();
    let config = config_on_port(work.path(), port, "");
    let config_arg = config.to_str().unwrap();

    let installed = host.deploy(
        transport,
        &["--binary", SERVER, "--config", config_arg, "install"],
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
    // One that starts but does not echo fails the echo check: rolled back too.
    let silent = silent_build(work.path(), port);
    let upgraded = host.deploy(
        transport,
        &["--binary", silent.to_str().unwrap(), "upgrade"],
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

#[test]
fn mremoteng_lists_every_host_of_the_inventory() {
    let dir = TestDir::new();
    let hosts = dir.write("hosts", "web1\nadmin@web2:2222 echo_port=7\n# gone\n");
    let mut command = Command::new(DEPLOY);
    command.args(["--hosts", hosts.to_str().unwrap(), "mremoteng"]);
    let finished = finish_with_patience(command, b"");
    assert_ok("mremoteng", &finished);
    let xml = finished.stdout();
    let check = "import sys, xml.etree.ElementTree as E\nroot = E.fromstring(sys.argv[1])\n\
         nodes = [n for n in root.iter('Node') if n.get('Type') == 'Connection']\n\
         print(';'.join(f\"{n.get('Hostname')}:{n.get('Port')}:{n.get('Username')}:{n.get('Protocol')}\" for n in nodes))";
    let parsed = run("python3", &["-c", check, &xml]).stdout();
    assert_eq!(parsed.trim(), "web1:22::SSH2;web2:2222:admin:SSH2", "{xml}");
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
    let config = config_on_port(work.path(), port, "");
    let installed = host.deploy_as(
        "deployer",
        "openssh",
        &[
            "--binary",
            SERVER,
            "--config",
            config.to_str().unwrap(),
            "install",
        ],
    );
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
