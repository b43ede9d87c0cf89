//! The promise, for real: deployed over SSH with `deploy/echo-deploy` to a
//! host whose PID 1 is systemd (a Debian bookworm container booted with
//! systemd-nspawn by `tests/e2e-host.sh`), then run and managed with
//! `systemctl` there.
//!
//! The host shares this machine's network, so echo-client here checks the
//! deployed daemon directly on loopback. Its root filesystem is built once
//! and cached under target/e2e/; each test boots a throwaway copy.

#![cfg(unix)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;

use common::deploy::{assert_ok, broken_build, echo_check, new_build, shipped_server};
use common::systemd_host::SystemdHost;
use common::tls::{Pki, installed_tls_config, rustls_client, rustls_connect, served_not_after};
use common::{
    Finished, PATIENCE, TestDir, bash_completion_script, echo_once, finish_with_patience, free_port,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A release installed with `echo-deploy install`, on a port of its own:
/// the hosts share this machine's network, and tests run in parallel.
struct Installed {
    port: u16,
    target: String,
    /// Where the config went, and where the test may write more files.
    work: TestDir,
    /// What `echo-deploy install` printed.
    output: Finished,
}

/// Installs `release` (`["--binary", PATH]` or `["--deb", PATH]`) over
/// `transport` with a config of `[server] port` on a free port and `extra`,
/// and asserts that it worked.
fn install(host: &SystemdHost, transport: &str, release: [&str; 2], extra: &str) -> Installed {
    let port = free_port();
    let work = TestDir::new();
    let config = work.write("config.toml", &format!("[server]\nport = {port}\n{extra}"));
    let output = host.deploy(
        transport,
        &[
            release[0],
            release[1],
            "--config",
            config.to_str().unwrap(),
            "install",
        ],
    );
    assert_ok(&format!("echo-deploy install over {transport}"), &output);
    Installed {
        port,
        target: format!("127.0.0.1:{port}"),
        work,
        output,
    }
}

#[test]
fn deployed_over_openssh_it_runs_as_a_real_systemd_service() {
    let host = SystemdHost::boot();
    let Installed { port, target, .. } = install(
        &host,
        "openssh",
        ["--binary", shipped_server()],
        "shutdown_grace = \"5s\"\n",
    );
    host.ssh_ok("systemctl start echo-server");
    assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
    assert_eq!(host.ssh_ok("systemctl is-enabled echo-server"), "enabled");
    assert_ok("echo-client check from this machine", &echo_check(port));
    // Installed under /usr/local, the pages and completions are found too.
    assert_manuals_work(&host);
    let status = host.ssh_ok("systemctl show -p StatusText --value echo-server");
    assert!(
        status.starts_with(&format!("serving tcp://{target}")),
        "{status}"
    );
    assert!(
        host.ssh_ok("journalctl -u echo-server --no-pager")
            .contains("echo-server started")
    );

    // A reload applies a new log level without dropping an open connection.
    let mut open = TcpStream::connect(&target).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    echo_once(&mut open, b"before the reload");
    // (The deployed config has no [log] section yet.)
    host.ssh_ok("printf '[log]\\nlevel = \"debug\"\\n' >> /etc/echo-server/config.toml");
    host.ssh_ok("systemctl reload echo-server");
    host.wait_until(
        "journalctl -u echo-server --no-pager | grep -q 'configuration reloaded.*level=debug'",
        "reload",
    );
    echo_once(&mut open, b"after the reload");
    drop(open);

    // kill -9: systemd restarts it (Restart=on-failure), and it echoes again.
    let first_pid = host.ssh_ok("systemctl show -p MainPID --value echo-server");
    host.ssh_ok(&format!("kill -9 {first_pid}"));
    host.wait_until(
        &format!("pid=$(systemctl show -p MainPID --value echo-server); [ \"$pid\" != 0 ] && [ \"$pid\" != {first_pid} ] && systemctl is-active --quiet echo-server"),
        "restart after kill -9",
    );
    assert_ok("check after the restart", &echo_check(port));
    assert_eq!(
        host.ssh_ok("systemctl show -p NRestarts --value echo-server"),
        "1"
    );

    // A stop drains and exits cleanly.
    host.ssh_ok("systemctl stop echo-server");
    assert_eq!(
        host.ssh("systemctl is-active echo-server").stdout().trim(),
        "inactive"
    );
    assert_eq!(
        host.ssh_ok("systemctl show -p ExecMainStatus --value echo-server"),
        "0"
    );
    assert!(
        host.ssh_ok("journalctl -u echo-server --no-pager")
            .contains("all connections finished")
    );

    assert_exposure_as_offline(&host, None);
}

/// The host rates echo-server.service (with what drop-ins it has) as the
/// offline check rates the shipped unit, with `drop_in` from systemd/ if
/// one is given.
fn assert_exposure_as_offline(host: &SystemdHost, drop_in: Option<&str>) {
    let units = TestDir::new();
    let unit = units.path().join("echo-server.service");
    std::fs::copy(format!("{ROOT}/systemd/echo-server.service"), &unit).unwrap();
    if let Some(drop_in) = drop_in {
        let dir = units.path().join("echo-server.service.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(format!("{ROOT}/systemd/{drop_in}"), dir.join("tls.conf")).unwrap();
    }
    let mut offline = Command::new("systemd-analyze");
    offline.args(["security", "--offline=yes", unit.to_str().unwrap()]);
    let offline = finish_with_patience(offline, b"").stdout();
    let on_host = host.ssh_ok("systemd-analyze security echo-server.service | tail -n 1");
    // "→ Overall exposure level for echo-server.service: 1.4 OK 🙂": the number.
    let exposure = |text: &str| {
        let line = text.lines().last().unwrap_or_default();
        line.split(".service:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or(line)
            .to_string()
    };
    assert_eq!(exposure(&on_host), exposure(&offline));
}

/// echo-server installed on a fresh systemd host with `[tls]` and one of
/// the TLS drop-ins, serving the test PKI's certificates from
/// `certificate` and its keys from `key` (owner root, group `key_group`,
/// mode `key_mode`).
struct TlsService {
    host: SystemdHost,
    pki: Pki,
    certificate: &'static str,
    key: &'static str,
    key_group: &'static str,
    key_mode: &'static str,
    tls_port: u16,
}

impl TlsService {
    /// A fresh host and test PKI, nothing installed yet.
    fn boot(
        [certificate, key]: [&'static str; 2],
        key_group: &'static str,
        key_mode: &'static str,
    ) -> TlsService {
        TlsService {
            host: SystemdHost::boot(),
            pki: Pki::new(),
            certificate,
            key,
            key_group,
            key_mode,
            tls_port: free_port(),
        }
    }

    /// Boots a host, puts the certificate and key `server` in place with
    /// the drop-in `drop_in` from systemd/, installs echo-server and checks
    /// that it serves `server` without running as root.
    fn start(
        drop_in: &str,
        files: [&'static str; 2],
        key_group: &'static str,
        key_mode: &'static str,
    ) -> TlsService {
        let service = TlsService::boot(files, key_group, key_mode);
        service.put_certificate("server");
        service.put_key("server");
        service.upload(
            PathBuf::from(format!("{ROOT}/systemd/{drop_in}")),
            "/etc/systemd/system/echo-server.service.d/tls.conf",
            "root",
            "0644",
        );
        install(
            &service.host,
            "openssh",
            ["--binary", shipped_server()],
            &format!(
                "[tls]\nlisten = [\"127.0.0.1:{}\"]\ncertificate = {:?}\nkey = {:?}\n",
                service.tls_port, service.certificate, service.key
            ),
        );
        let host = &service.host;
        assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
        let pid = service.main_pid();
        assert_ne!(host.ssh_ok(&format!("stat -c %U /proc/{pid}")), "root");
        assert_eq!(service.served(), service.pki.not_after("server"));
        service
    }

    /// Boots a host where echo-deploy installs echo-server without TLS,
    /// `tls push`es the certificate and key `server` with key access
    /// `key_access` (`key_group` and `key_mode` are what echo-deploy gives
    /// the key then), and `config push --restart`es a config whose `[tls]`
    /// names them; checks that the push restarted the service and that
    /// `server` is served.
    fn deployed(key_access: &str) -> TlsService {
        let (key_group, key_mode) = match key_access {
            "ssl-cert" => ("ssl-cert", "0640"),
            _ => ("root", "0600"),
        };
        let service = TlsService::boot(
            [
                "/etc/echo-server/tls/server.pem",
                "/etc/echo-server/tls/server.key",
            ],
            key_group,
            key_mode,
        );
        let Installed { port, work, .. } =
            install(&service.host, "openssh", ["--binary", shipped_server()], "");
        let pushed = service.push(key_access, "server.pem", "server.key");
        assert!(pushed.contains("echo-server restarted"), "{pushed}");
        let config = work.write("tls.toml", &installed_tls_config(port, service.tls_port));
        let pushed = service.host.deploy(
            "openssh",
            &["config", "push", "--restart", config.to_str().unwrap()],
        );
        assert_ok("echo-deploy config push", &pushed);
        assert_eq!(service.served(), service.pki.not_after("server"));
        service
    }

    /// `echo-deploy tls push` of the test PKI's `certificate` and `key`
    /// with `--key-access key_access`, which must work; what it printed.
    fn push(&self, key_access: &str, certificate: &str, key: &str) -> String {
        let pushed = self.try_push(key_access, certificate, key);
        assert_ok(&format!("echo-deploy tls push ({key_access})"), &pushed);
        pushed.stdout()
    }

    fn try_push(&self, key_access: &str, certificate: &str, key: &str) -> Finished {
        let (certificate, key) = (self.pki.arg(certificate), self.pki.arg(key));
        self.host.deploy(
            "openssh",
            &[
                "tls",
                "push",
                "--key-access",
                key_access,
                &certificate,
                &key,
            ],
        )
    }

    /// Owner, group and mode of the served key: `root:ssl-cert 640`.
    fn key_owner_and_mode(&self) -> String {
        self.host
            .ssh_ok(&format!("stat -c '%U:%G %a' {}", self.key))
    }

    /// Whether the host's TLS drop-in is `drop_in` from systemd/.
    fn has_drop_in(&self, drop_in: &str) -> bool {
        let installed = self
            .host
            .ssh_ok("cat /etc/systemd/system/echo-server.service.d/tls.conf");
        let shipped = std::fs::read_to_string(format!("{ROOT}/systemd/{drop_in}")).unwrap();
        installed == shipped.trim_end()
    }

    fn upload(&self, file: PathBuf, path: &str, group: &str, mode: &str) {
        let bytes = std::fs::read(&file).unwrap();
        let uploaded = self.host.ssh_with_input(
            &format!("install -D -g {group} -m {mode} /dev/stdin {path}"),
            &bytes,
        );
        assert_ok(&format!("upload {}", file.display()), &uploaded);
    }

    /// The test PKI's `NAME.pem` in place of the served certificate.
    fn put_certificate(&self, name: &str) {
        let file = self.pki.file(&format!("{name}.pem"));
        self.upload(file, self.certificate, "root", "0644");
    }

    /// The test PKI's `NAME.key` in place of the served key.
    fn put_key(&self, name: &str) {
        let file = self.pki.file(&format!("{name}.key"));
        self.upload(file, self.key, self.key_group, self.key_mode);
    }

    fn main_pid(&self) -> String {
        self.host
            .ssh_ok("systemctl show -p MainPID --value echo-server")
    }

    /// The notAfter of the certificate served to a new connection.
    fn served(&self) -> String {
        served_not_after(&self.pki, &format!("localhost:{}", self.tls_port))
    }

    fn connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        rustls_connect(
            &rustls_client(&self.pki),
            SocketAddr::from(([127, 0, 0, 1], self.tls_port)),
        )
    }

    /// `systemctl reload`, then waits until the journal says `outcome`
    /// ("configuration reloaded", "configuration was not reloaded") once
    /// more than before.
    fn reload(&self, outcome: &str) {
        self.awaiting(outcome, || self.host.ssh_ok("systemctl reload echo-server"));
    }

    /// Runs `change` (which reloads the service), then waits until the
    /// journal says `outcome` once more than before: the reload's signal is
    /// sent, not yet acted on, when systemctl returns.
    fn awaiting<T>(&self, outcome: &str, change: impl FnOnce() -> T) -> T {
        let count = format!("journalctl -u echo-server --no-pager | grep -c '{outcome}'");
        let before = self.host.ssh(&count).stdout().trim().to_string();
        let result = change();
        self.host
            .wait_until(&format!("[ $({count}) -gt {before} ]"), outcome);
        result
    }
}

/// `[tls]` under systemd with the drop-in systemd/echo-server-tls.conf: a
/// key only root may read reaches the DynamicUser= service as a systemd
/// credential; a certificate renewed on disk plus `systemctl reload` is
/// served to new connections while an old one keeps echoing; a new key is
/// refused by a reload (systemd 252 copies credentials only at start), the
/// old certificate and key staying, and served after a restart.
#[test]
fn tls_under_systemd_reads_a_root_only_key_and_rotates_on_reload() {
    let tls = TlsService::start(
        "echo-server-tls.conf",
        [
            "/etc/echo-server/tls/server.pem",
            "/etc/echo-server/tls/server.key",
        ],
        "root",
        "0600",
    );
    let (host, pki, key) = (&tls.host, &tls.pki, tls.key);
    assert_eq!(host.ssh_ok(&format!("stat -c '%U %a' {key}")), "root 600");
    assert_exposure_as_offline(host, None);
    let mut old = tls.connect();

    // Renewed for the same key: a reload serves it.
    pki.renew("server", "renewed");
    tls.put_certificate("renewed");
    tls.reload("configuration reloaded");
    assert_eq!(tls.served(), pki.not_after("renewed"));
    echo_once(&mut old, b"after the reload");

    // A new key: systemd does not copy it into the credentials on a
    // reload, and the new file in place of the mounted one is root's alone,
    // so the reload refuses the pair, says that a restart is what takes a
    // new key, and the renewed certificate stays.
    tls.put_certificate("server2");
    tls.put_key("server2");
    tls.reload("configuration was not reloaded.*only when it starts (LoadCredential=): after a new key, run");
    let credential_is_the_key =
        format!("cmp -s /run/credentials/echo-server.service/tls-key {key}");
    assert_ne!(
        host.ssh(&credential_is_the_key).code,
        0,
        "refreshed on reload"
    );
    assert_eq!(tls.served(), pki.not_after("renewed"));
    echo_once(&mut old, b"after the refused reload");
    host.ssh_ok("systemctl restart echo-server");
    host.ssh_ok(&credential_is_the_key);
    assert_eq!(tls.served(), pki.not_after("server2"));
}

/// `[tls]` under systemd with the drop-in
/// systemd/echo-server-tls-ssl-cert.conf: a key kept as Debian keeps them
/// (root:ssl-cert 0640 in /etc/ssl/private, the group and directory made by
/// the ssl-cert package in the host's root filesystem) is read by the
/// DynamicUser= service through the group alone (its user without the
/// group is refused the key); a new key with its certificate plus
/// `systemctl reload` is served to new connections by the same process
/// while an old connection keeps echoing; without the group, the start
/// fails once (216/GROUP, no restarts in a loop) and works again once the
/// group is back.
#[test]
fn tls_under_systemd_reads_an_ssl_cert_key_and_takes_a_new_key_on_reload() {
    let tls = TlsService::start(
        "echo-server-tls-ssl-cert.conf",
        [
            "/etc/ssl/certs/echo-server.pem",
            "/etc/ssl/private/echo-server.key",
        ],
        "ssl-cert",
        "0640",
    );
    let (host, pki, key) = (&tls.host, &tls.pki, tls.key);
    assert_eq!(
        host.ssh_ok(&format!("stat -c '%U:%G %a' /etc/ssl/private {key}")),
        "root:ssl-cert 710\nroot:ssl-cert 640"
    );
    let pid = tls.main_pid();
    let gid = host.ssh_ok("getent group ssl-cert | cut -d: -f3");
    let groups = host.ssh_ok(&format!("grep '^Groups:' /proc/{pid}/status"));
    assert!(groups.split_whitespace().any(|g| g == gid), "{groups}");
    let uid = host.ssh_ok(&format!("stat -c %u /proc/{pid}"));
    let read_key_with = |groups: &str| {
        host.ssh(&format!(
            "setpriv --reuid={uid} --regid={uid} {groups} cat {key} >/dev/null"
        ))
        .code
    };
    assert_eq!(read_key_with("--groups=ssl-cert"), 0);
    assert_ne!(
        read_key_with("--clear-groups"),
        0,
        "readable without the group"
    );
    assert_exposure_as_offline(host, Some("echo-server-tls-ssl-cert.conf"));
    let mut old = tls.connect();

    tls.put_certificate("server2");
    tls.put_key("server2");
    tls.reload("configuration reloaded");
    assert_eq!(tls.served(), pki.not_after("server2"));
    assert_eq!(tls.main_pid(), pid);
    echo_once(&mut old, b"after the reload with a new key");
    drop(old);

    // Without the group (ssl-cert not installed): what docs/TLS.md says the
    // operator sees.
    host.ssh_ok("groupmod -n ssl-cert-gone ssl-cert");
    assert_ne!(host.ssh("systemctl restart echo-server").code, 0);
    assert_eq!(host.ssh_ok("systemctl is-failed echo-server"), "failed");
    assert_eq!(
        host.ssh_ok("systemctl show -p ExecMainStatus --value echo-server"),
        "216"
    );
    host.wait_until(
        "journalctl -b --no-pager UNIT=echo-server.service | grep -q 'Failed to determine supplementary groups'",
        "the missing group in the journal",
    );
    host.ssh_ok("groupmod -n ssl-cert ssl-cert-gone && systemctl restart echo-server");
    assert_eq!(tls.served(), pki.not_after("server2"));
}

#[test]
fn socket_activation_serves_port_7_without_any_capability() {
    let host = SystemdHost::boot();
    install(&host, "openssh", ["--binary", shipped_server()], "");
    host.ssh_ok("systemctl disable --now echo-server");
    // Port 7 is this machine's too: the host shares its network.
    assert!(
        TcpListener::bind("127.0.0.1:7").is_ok(),
        "port 7 is taken on this machine"
    );
    for unit in ["echo-server.socket", "echo-server-activated.service"] {
        let text = std::fs::read_to_string(format!("{ROOT}/systemd/{unit}")).unwrap();
        let uploaded = host.ssh_with_input(
            &format!("cat > /etc/systemd/system/{unit}"),
            text.as_bytes(),
        );
        assert_ok("upload a unit", &uploaded);
    }
    host.ssh_ok("systemctl daemon-reload && systemctl enable --now echo-server.socket");
    assert_eq!(
        host.ssh("systemctl is-active echo-server-activated")
            .stdout()
            .trim(),
        "inactive"
    );

    assert_ok("check on port 7", &echo_check(7));
    assert_eq!(
        host.ssh_ok("systemctl is-active echo-server-activated"),
        "active"
    );
    let pid = host.ssh_ok("systemctl show -p MainPID --value echo-server-activated");
    let capabilities = host.ssh_ok(&format!("grep ^CapEff /proc/{pid}/status"));
    assert!(capabilities.ends_with("0000000000000000"), "{capabilities}");
    let own_network = host.ssh_ok(&format!("readlink /proc/{pid}/ns/net"));
    assert_ne!(
        own_network,
        host.ssh_ok("readlink /proc/1/ns/net"),
        "the service shares the host's network"
    );
    host.ssh_ok("systemctl disable --now echo-server.socket echo-server-activated.service");
}

#[test]
fn deployed_over_putty_and_uninstalled_without_a_trace() {
    let host = SystemdHost::boot();
    install(&host, "putty", ["--binary", shipped_server()], "");
    assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
    let status = host.deploy("putty", &["status"]);
    assert_ok("status", &status);
    assert!(
        status.stdout().contains("active (systemd), release 0.1.0-"),
        "{}",
        status.stdout()
    );
    assert!(
        status.stdout().contains("0 open connections"),
        "{}",
        status.stdout()
    );
    let logs = host.deploy("putty", &["logs", "-n", "20"]);
    assert_ok("logs", &logs);
    assert!(
        logs.stdout().contains("echo-server started"),
        "{}",
        logs.stdout()
    );

    assert_ok(
        "uninstall --purge",
        &host.deploy("putty", &["uninstall", "--purge"]),
    );
    let left = host.ssh_ok(
        "ls -d /opt/echo-server /etc/echo-server /usr/local/bin/echo-server /etc/systemd/system/echo-server.service \
         /var/log/echo-server /var/log/private/echo-server 2>/dev/null; getent passwd echo-server; getent group echo-server; systemctl list-unit-files 'echo-server*' --no-legend; true",
    );
    assert_eq!(left, "", "left behind on the host");
}

#[test]
fn upgrades_and_rollbacks_under_systemd() {
    let host = SystemdHost::boot();
    let Installed { port, work, .. } =
        install(&host, "openssh", ["--binary", shipped_server()], "");
    let first = host.ssh_ok("readlink /opt/echo-server/current");

    let upgraded = host.deploy(
        "openssh",
        &[
            "--binary",
            new_build(work.path()).to_str().unwrap(),
            "upgrade",
        ],
    );
    assert_ok("upgrade to a new build", &upgraded);
    let second = host.ssh_ok("readlink /opt/echo-server/current");
    assert_ne!(second, first);
    assert_eq!(host.ssh_ok("readlink /opt/echo-server/previous"), first);
    assert_ok("check after the upgrade", &echo_check(port));

    let failed = host.deploy(
        "openssh",
        &[
            "--binary",
            broken_build(work.path(), port).to_str().unwrap(),
            "upgrade",
        ],
    );
    assert_eq!(failed.code, 1, "{}{}", failed.stdout(), failed.stderr);
    assert!(
        failed
            .stderr
            .contains("failed its health check; rolled back to"),
        "{}",
        failed.stderr
    );
    assert_eq!(host.ssh_ok("readlink /opt/echo-server/current"), second);
    assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
    assert_ok("check after the rollback", &echo_check(port));

    // A broken config never reaches the live file, and the service runs on.
    let live = host
        .ssh_ok("cat /etc/echo-server/config.toml; systemctl show -p MainPID --value echo-server");
    let broken = work.write("broken.toml", "[server]\nport = 70000\n");
    let pushed = host.deploy("openssh", &["config", "push", broken.to_str().unwrap()]);
    assert_eq!(pushed.code, 1, "{}", pushed.stderr);
    assert!(
        pushed
            .stderr
            .contains("the new config is invalid, the live one is unchanged"),
        "{}",
        pushed.stderr
    );
    assert_eq!(
        host.ssh_ok(
            "cat /etc/echo-server/config.toml; systemctl show -p MainPID --value echo-server"
        ),
        live
    );

    // rollback by hand goes back one release.
    assert_ok("rollback", &host.deploy("openssh", &["rollback"]));
    assert_eq!(host.ssh_ok("readlink /opt/echo-server/current"), first);
    assert_ok("check after a manual rollback", &echo_check(port));
}

#[test]
fn an_enabled_service_comes_back_after_a_reboot() {
    let host = SystemdHost::boot_persistent();
    let Installed { port, .. } = install(&host, "openssh", ["--binary", shipped_server()], "");
    host.power_off();
    assert_ne!(
        echo_check(port).code,
        0,
        "still echoing with the host powered off"
    );
    host.power_on();
    assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
    assert_ok("check after the reboot", &echo_check(port));
}

/// What bash completes for `line` (ending where TAB is pressed) on the
/// host, as an interactive shell with bash-completion would: it loads the
/// command's completion from where the installed files are looked for,
/// and calls its function with the words of the line.
fn bash_completes(host: &SystemdHost, line: &str) -> Vec<String> {
    // 124 from the loader: loaded, try again.
    let load = r#". /usr/share/bash-completion/bash_completion
_completion_loader "$command" || [[ $? == 124 ]]"#;
    let script = bash_completion_script(load, line);
    let finished = host.ssh_with_input("bash -s", script.as_bytes());
    assert_eq!(finished.code, 0, "completing `{line}`: {}", finished.stderr);
    finished.stdout().lines().map(str::to_string).collect()
}

/// `man` on the host finds the pages of both programs, in their sections,
/// and bash completes their words: what an operator gets after an install.
fn assert_manuals_work(host: &SystemdHost) {
    let client_page = host.ssh_ok("man -P cat echo-client 2>&1");
    for verb in [
        "ECHO-CLIENT SEND",
        "ECHO-CLIENT CHECK",
        "ECHO-CLIENT BENCH",
        "ECHO-CLIENT PIPE",
    ] {
        assert!(
            client_page.contains(verb),
            "man echo-client lacks {verb}:\n{client_page}"
        );
    }
    let server_page = host.ssh_ok("man -P cat 8 echo-server 2>&1");
    assert!(server_page.contains("--check-config"), "{server_page}");
    assert_eq!(bash_completes(host, "echo-client ch"), ["check"]);
    assert_eq!(bash_completes(host, "echo-client check --js"), ["--json"]);
    assert!(
        bash_completes(host, "echo-server --check-c").contains(&"--check-config".to_string()),
        "echo-server's completion"
    );
}

/// The package built by `scripts/build.sh --deb --deb-revision N` (which
/// `scripts/test.sh` runs before the tests).
fn package(revision: u32) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let path = format!("{ROOT}/target/packages/echo-service_{version}-{revision}_amd64.deb");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run ./scripts/build.sh --deb --deb-revision {revision}"
    );
    path
}

/// The package holds the man pages and completions at the places Debian's
/// man, bash-completion, zsh and fish read.
#[test]
fn the_debian_package_carries_the_man_pages_and_completions() {
    let mut list = Command::new("dpkg-deb");
    list.args(["-c", &package(1)]);
    let listing = finish_with_patience(list, b"").stdout();
    for path in [
        "./usr/share/man/man1/echo-client.1.gz",
        "./usr/share/man/man8/echo-server.8.gz",
        "./usr/share/bash-completion/completions/echo-client",
        "./usr/share/bash-completion/completions/echo-server",
        "./usr/share/zsh/vendor-completions/_echo-client",
        "./usr/share/zsh/vendor-completions/_echo-server",
        "./usr/share/fish/vendor_completions.d/echo-client.fish",
        "./usr/share/fish/vendor_completions.d/echo-server.fish",
    ] {
        assert!(
            listing
                .lines()
                .any(|line| line.ends_with(&format!(" {path}"))),
            "{path} is not in the package:\n{listing}"
        );
    }
}

#[test]
fn the_debian_package_installs_upgrades_and_purges() {
    let host = SystemdHost::boot();
    let Installed {
        port,
        output: installed,
        ..
    } = install(&host, "openssh", ["--deb", &package(1)], "");
    assert!(
        installed.stdout().contains("installed package 0.1.0-1"),
        "{}",
        installed.stdout()
    );
    assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
    assert_eq!(host.ssh_ok("systemctl is-enabled echo-server"), "enabled");
    assert_eq!(
        host.ssh_ok("command -v echo-server"),
        "/usr/bin/echo-server"
    );
    assert_eq!(
        host.ssh_ok("getent passwd echo-server | cut -d: -f1"),
        "echo-server"
    );
    // The socket-activated units are examples, not active units.
    assert_ne!(
        host.ssh("systemctl is-active echo-server.socket")
            .stdout()
            .trim(),
        "active"
    );
    host.ssh_ok("test -f /usr/share/doc/echo-service/examples/echo-server.socket");
    assert_manuals_work(&host);
    assert_ok("check from this machine", &echo_check(port));

    let before = host.ssh_ok("systemctl show -p MainPID --value echo-server");
    let upgraded = host.deploy("putty", &["--deb", &package(2), "upgrade"]);
    assert_ok("echo-deploy upgrade --deb over PuTTY", &upgraded);
    assert_eq!(
        host.ssh_ok("dpkg-query -W -f '${Version}' echo-service"),
        "0.1.0-2"
    );
    assert_ne!(
        host.ssh_ok("systemctl show -p MainPID --value echo-server"),
        before,
        "not restarted"
    );
    // The operator's config is a conffile: the upgrade kept it.
    assert!(
        host.ssh_ok("cat /etc/echo-server/config.toml")
            .contains(&format!("port = {port}"))
    );
    assert_ok("check after the upgrade", &echo_check(port));

    host.ssh_ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q echo-service >/dev/null");
    let left = host.ssh_ok(
        "ls -d /usr/bin/echo-server /etc/echo-server /var/log/echo-server /var/log/private/echo-server \
         /usr/lib/systemd/system/echo-server.service 2>/dev/null; getent passwd echo-server; getent group echo-server; systemctl list-unit-files 'echo-server*' --no-legend; true",
    );
    assert_eq!(left, "", "left behind by the purge");
    assert_ne!(echo_check(port).code, 0, "still echoing after the purge");
}

/// `echo-deploy tls push` to a systemd host, with the default key access
/// (credential): the certificate and key installed (the key 0600 root)
/// with the credentials drop-in, and a `[tls]` config pushed after them; a
/// certificate renewed for the same key is reloaded into the same process
/// while an old connection keeps echoing; a new key restarts the service;
/// `uninstall --purge` leaves neither drop-in nor key behind.
#[test]
fn echo_deploy_pushes_a_tls_certificate_and_key() {
    let tls = TlsService::deployed("credential");
    let (host, pki) = (&tls.host, &tls.pki);
    assert_eq!(tls.key_owner_and_mode(), "root:root 600");
    assert!(tls.has_drop_in("echo-server-tls.conf"));

    let pid = tls.main_pid();
    let mut old = tls.connect();
    pki.renew("server", "renewed");
    let pushed = tls.awaiting("configuration reloaded", || {
        tls.push("credential", "renewed.pem", "server.key")
    });
    assert!(pushed.contains("echo-server reloaded"), "{pushed}");
    assert_eq!(tls.served(), pki.not_after("renewed"));
    assert_eq!(tls.main_pid(), pid);
    echo_once(&mut old, b"after the renewal");

    // Without --key-access, as an operator writes it most of the time.
    let pushed = host.deploy(
        "openssh",
        &[
            "tls",
            "push",
            &pki.arg("server2.pem"),
            &pki.arg("server2.key"),
        ],
    );
    assert_ok("echo-deploy tls push", &pushed);
    assert!(
        pushed.stdout().contains("echo-server restarted"),
        "{}",
        pushed.stdout()
    );
    assert_eq!(tls.served(), pki.not_after("server2"));

    // The drop-in goes with the unit, the key with the config.
    assert_ok(
        "uninstall --purge",
        &host.deploy("openssh", &["uninstall", "--purge"]),
    );
    assert_ne!(
        host.ssh("ls -d /etc/systemd/system/echo-server.service* /etc/echo-server")
            .code,
        0
    );
}

/// `echo-deploy tls push --key-access ssl-cert` to a systemd host: the key
/// installed `root:ssl-cert 0640` with the drop-in
/// systemd/echo-server-tls-ssl-cert.conf; a new key pushed so is served
/// after a reload, by the same process, while an old connection keeps
/// echoing; on a host without the group ssl-cert the push is refused with
/// what to do, before anything changes; switched to credential and back
/// with the same key, the key's group and mode follow and the service
/// restarts once each time and serves it.
#[test]
fn echo_deploy_pushes_a_key_of_the_group_ssl_cert_and_switches_back() {
    let tls = TlsService::deployed("ssl-cert");
    let (host, pki) = (&tls.host, &tls.pki);
    assert_eq!(tls.key_owner_and_mode(), "root:ssl-cert 640");
    assert!(tls.has_drop_in("echo-server-tls-ssl-cert.conf"));

    let pid = tls.main_pid();
    let mut old = tls.connect();
    let pushed = tls.awaiting("configuration reloaded", || {
        tls.push("ssl-cert", "server2.pem", "server2.key")
    });
    assert!(pushed.contains("echo-server reloaded"), "{pushed}");
    assert_eq!(tls.served(), pki.not_after("server2"));
    assert_eq!(tls.main_pid(), pid);
    assert_eq!(tls.key_owner_and_mode(), "root:ssl-cert 640");
    echo_once(&mut old, b"after the reload with a new key");
    drop(old);

    // Without the group (ssl-cert not installed), nothing changes: not the
    // files, not the process.
    let state = format!(
        "stat -c '%U:%G %a' {key}; sha256sum {key} {} /etc/systemd/system/echo-server.service.d/tls.conf; \
         systemctl show -p MainPID --value echo-server",
        tls.certificate,
        key = tls.key,
    );
    let before = host.ssh_ok(&state);
    host.ssh_ok("groupmod -n ssl-cert-gone ssl-cert");
    let refused = tls.try_push("ssl-cert", "server.pem", "server.key");
    host.ssh_ok("groupmod -n ssl-cert ssl-cert-gone");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("the host has no group ssl-cert: apt install ssl-cert"),
        "{}",
        refused.stderr
    );
    assert_eq!(host.ssh_ok(&state), before);
    assert_eq!(tls.served(), pki.not_after("server2"));

    // Back to a credential with the same key, and to ssl-cert again: the
    // same file, its group and mode changed in place, a restart for the
    // new drop-in.
    let pushed = tls.push("credential", "server2.pem", "server2.key");
    assert!(pushed.contains("echo-server restarted"), "{pushed}");
    assert_eq!(tls.key_owner_and_mode(), "root:root 600");
    assert!(tls.has_drop_in("echo-server-tls.conf"));
    assert_ne!(tls.main_pid(), pid);
    assert_eq!(tls.served(), pki.not_after("server2"));
    let pushed = tls.push("ssl-cert", "server2.pem", "server2.key");
    assert!(pushed.contains("echo-server restarted"), "{pushed}");
    assert_eq!(tls.key_owner_and_mode(), "root:ssl-cert 640");
    assert!(tls.has_drop_in("echo-server-tls-ssl-cert.conf"));
    assert_eq!(tls.served(), pki.not_after("server2"));
}
