//! The Ansible role `deploy/ansible/roles/echo_server`, run with
//! ansible-playbook (from the virtualenv scripts/test.sh makes) against
//! three real systemd hosts at once, and the same fleet checked with
//! `echo-client check --hosts` and managed with `echo-deploy -j 3`.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::deploy::shipped_server;
use common::ssh_host::SshHost;
use common::systemd_host::SystemdHost;
use common::tls::{Pki, rustls_client, rustls_connect, served_not_after};
use common::{CLIENT, DEPLOY, Finished, SERVER, TestDir, echo_once, finish_within, free_port};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Three hosts, each with its own echo port.
struct Fleet {
    hosts: Vec<(SystemdHost, u16)>,
    work: TestDir,
}

impl Fleet {
    fn boot() -> Fleet {
        Fleet::boot_hosts(3)
    }

    fn boot_hosts(count: usize) -> Fleet {
        let booting: Vec<_> = (0..count)
            .map(|_| std::thread::spawn(SystemdHost::boot))
            .collect();
        let hosts = booting
            .into_iter()
            .map(|h| (h.join().expect("a host boots"), free_port()))
            .collect();
        Fleet {
            hosts,
            work: TestDir::new(),
        }
    }

    /// An Ansible inventory of the fleet; `extra(i)` adds variables to host i.
    fn inventory(&self, extra: impl Fn(usize) -> String) -> PathBuf {
        let mut text = String::from("[echo_servers]\n");
        for (i, (host, port)) in self.hosts.iter().enumerate() {
            text.push_str(&inventory_line(
                i,
                host.ssh_port,
                &host.file("client_key"),
                &host.file("known_hosts"),
                &format!("echo_server_port={port} {}", extra(i)),
            ));
        }
        let package = format!(
            "{ROOT}/target/packages/echo-service_{}-1_amd64.deb",
            env!("CARGO_PKG_VERSION")
        );
        text.push_str(&format!(
            "\n[echo_servers:vars]\necho_server_deb={package}\n"
        ));
        self.work.write("inventory.ini", &text)
    }

    /// echo-client's hosts file for the same fleet.
    fn hosts_file(&self) -> PathBuf {
        let text: String = self
            .hosts
            .iter()
            .map(|(_, port)| format!("127.0.0.1 echo_port={port}\n"))
            .collect();
        self.work.write("hosts", &text)
    }

    fn playbook(&self, inventory: &Path) -> Finished {
        self.playbook_with(inventory, &[])
    }

    /// Runs ansible-playbook, whatever its outcome.
    fn run_playbook(&self, inventory: &Path, options: &[&str]) -> Finished {
        let site = format!("{ROOT}/deploy/ansible/site.yml");
        let mut args = options.to_vec();
        args.extend(["-i", inventory.to_str().unwrap(), &site]);
        ansible_playbook(&self.work, &args, &[])
    }

    fn playbook_with(&self, inventory: &Path, options: &[&str]) -> Finished {
        let finished = self.run_playbook(inventory, options);
        assert_eq!(
            finished.code,
            0,
            "ansible-playbook failed:\n{}{}",
            finished.stdout(),
            finished.stderr
        );
        finished
    }
}

/// Host `host{i}` of an inventory, reached as root over SSH at `ssh_port`.
fn inventory_line(i: usize, ssh_port: u16, key: &Path, known_hosts: &Path, vars: &str) -> String {
    format!(
        "host{i} ansible_host=127.0.0.1 ansible_port={ssh_port} ansible_user=root \
         ansible_ssh_private_key_file={key} \
         ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes' \
         {vars}\n",
        key = key.display(),
        known = known_hosts.display(),
    )
}

/// Runs ansible-playbook with `args`, whatever its outcome, its state kept in `work`.
fn ansible_playbook(work: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut command = Command::new(format!("{ROOT}/target/ansible-venv/bin/ansible-playbook"));
    command
        .args(args)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOME", work.path().join("ansible-home"))
        .envs(env.iter().copied());
    finish_within(command, b"", Duration::from_secs(300))
}

/// Host variables that install the release binaries rather than the package.
fn release_binaries(_host: usize) -> String {
    format!("echo_server_deb='' echo_server_binary={}", shipped_server())
}

fn main_pid(host: &SystemdHost) -> String {
    host.ssh_ok("systemctl show -p MainPID --value echo-server")
}

/// `changed=N` of each host in a play recap.
fn changed(recap: &str) -> Vec<u32> {
    let mut counts: Vec<(String, u32)> = recap
        .lines()
        .filter(|l| l.starts_with("host") && l.contains("changed="))
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().to_string();
            let count = l
                .split("changed=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (name, count)
        })
        .collect();
    counts.sort();
    counts.into_iter().map(|(_, count)| count).collect()
}

fn check_hosts(hosts: &Path) -> Finished {
    let mut command = Command::new(CLIENT);
    command.args([
        "check",
        "--hosts",
        hosts.to_str().unwrap(),
        "--timeout",
        "3s",
        "--json",
    ]);
    finish_within(command, b"", Duration::from_secs(30))
}

#[test]
fn the_role_deploys_three_hosts_idempotently_and_reloads_only_what_changed() {
    let mut fleet = Fleet::boot();
    let inventory = fleet.inventory(|_| String::new());
    let first = fleet.playbook(&inventory);
    assert!(
        changed(&first.stdout()).iter().all(|&c| c > 0),
        "{}",
        first.stdout()
    );
    for (host, port) in &fleet.hosts {
        assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
        assert!(
            host.ssh_ok("cat /etc/echo-server/config.toml")
                .contains(&format!("port = {port}"))
        );
    }

    let second = fleet.playbook(&inventory);
    assert_eq!(
        changed(&second.stdout()),
        [0, 0, 0],
        "a second run changed something:\n{}",
        second.stdout()
    );

    // A config change on one host reloads that host, and only it.
    let pids: Vec<String> = fleet.hosts.iter().map(|(h, _)| main_pid(h)).collect();
    let shorter_idle_timeout_on_host1 = |i: usize| {
        if i == 1 {
            "echo_server_idle_timeout=1m".to_string()
        } else {
            String::new()
        }
    };
    let changed_inventory = fleet.inventory(shorter_idle_timeout_on_host1);
    // --check --diff shows the change and makes none.
    let dry = fleet.playbook_with(&changed_inventory, &["--check", "--diff"]);
    assert!(
        dry.stdout().contains("+idle_timeout = \"1m\""),
        "{}",
        dry.stdout()
    );
    assert!(
        !fleet.hosts[1]
            .0
            .ssh_ok("cat /etc/echo-server/config.toml")
            .contains("idle_timeout = \"1m\"")
    );
    let third = fleet.playbook(&changed_inventory);
    let counts = changed(&third.stdout());
    assert_eq!((counts[0], counts[2]), (0, 0), "{}", third.stdout());
    assert!(counts[1] > 0, "{}", third.stdout());
    assert!(
        fleet.hosts[1]
            .0
            .ssh_ok("cat /etc/echo-server/config.toml")
            .contains("idle_timeout = \"1m\"")
    );
    for ((host, _), pid) in fleet.hosts.iter().zip(&pids) {
        assert_eq!(&main_pid(host), pid, "restarted, not reloaded");
    }

    // A new port takes a restart: a reload would keep the old one, and the
    // role's own check of the new one would fail.
    fleet.hosts[0].1 = free_port();
    let moved_inventory = fleet.inventory(shorter_idle_timeout_on_host1);
    let fourth = fleet.playbook(&moved_inventory);
    assert_eq!(
        changed(&fourth.stdout())[1..],
        [0, 0],
        "{}",
        fourth.stdout()
    );
    assert_ne!(
        main_pid(&fleet.hosts[0].0),
        pids[0],
        "restarted for its new port"
    );
    assert_eq!(main_pid(&fleet.hosts[1].0), pids[1]);

    // The fleet checked at once; then one host stopped is the one reported.
    let hosts = fleet.hosts_file();
    let healthy = check_hosts(&hosts);
    assert_eq!(healthy.code, 0, "{}", healthy.stdout());
    fleet.hosts[2].0.ssh_ok("systemctl stop echo-server");
    let one_down = check_hosts(&hosts);
    assert_eq!(one_down.code, 2, "{}", one_down.stdout());
    let report: serde_json::Value = serde_json::from_slice(&one_down.stdout).unwrap();
    let verdicts: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["healthy", "healthy", "unreachable"]);

    // A host that goes away is reported; the others are still served.
    fleet.hosts[2].0.power_off();
    let partial = fleet.run_playbook(&moved_inventory, &[]);
    assert_ne!(
        partial.code,
        0,
        "a run with a host down succeeded:\n{}",
        partial.stdout()
    );
    let recap = partial.stdout();
    let line = |name: &str| {
        recap
            .lines()
            .rfind(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("host0").contains("unreachable=0") && line("host0").contains("failed=0"),
        "{recap}"
    );
    assert!(
        line("host1").contains("unreachable=0") && line("host1").contains("failed=0"),
        "{recap}"
    );
    assert!(line("host2").contains("unreachable=1"), "{recap}");
}

#[test]
fn echo_deploy_runs_three_hosts_in_parallel_over_both_transports() {
    let fleet = Fleet::boot();
    let package = format!(
        "{ROOT}/target/packages/echo-service_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    );
    // The inventory format echo-deploy and echo-client share, with the host
    // key fingerprints PuTTY needs.
    let mut inventory = String::new();
    let known_hosts = fleet.work.path().join("known_hosts");
    let mut known = String::new();
    for (host, port) in &fleet.hosts {
        let fingerprint = std::fs::read_to_string(host.file("hostkey.sha256")).unwrap();
        // All hosts share this machine's network: each needs a port of its own.
        let config = fleet.work.write(
            &format!("config-{port}.toml"),
            &format!("[server]\nport = {port}\n"),
        );
        inventory.push_str(&format!(
            "root@127.0.0.1:{} echo_port={port} hostkey={} config={}\n",
            host.ssh_port,
            fingerprint.trim(),
            config.display()
        ));
        known.push_str(&std::fs::read_to_string(host.file("known_hosts")).unwrap());
    }
    std::fs::write(&known_hosts, known).unwrap();
    let hosts = fleet.work.write("fleet", &inventory);
    let key = fleet.hosts[0].0.file("client_key");
    // Each host trusts its own client key, and echo-deploy uses one key for
    // all hosts: the others learn the first host's key too.
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    for (host, _) in &fleet.hosts[1..] {
        let added = host.ssh_with_input("cat >> /root/.ssh/authorized_keys2", public.as_bytes());
        assert_eq!(added.code, 0, "{}", added.stderr);
    }
    let deploy = |transport: &str, args: &[&str]| {
        let mut command = Command::new(DEPLOY);
        command.args([
            "--hosts",
            hosts.to_str().unwrap(),
            "-j",
            "3",
            "--transport",
            transport,
        ]);
        if transport == "putty" {
            command.arg("-i").arg(key.with_extension("ppk"));
        } else {
            command
                .arg("-i")
                .arg(&key)
                .arg("--known-hosts")
                .arg(&known_hosts);
        }
        command.args(args).env("HOME", fleet.work.path());
        finish_within(command, b"", Duration::from_secs(300))
    };
    let installed = deploy("openssh", &["--deb", &package, "install"]);
    assert_eq!(
        installed.code,
        0,
        "{}{}",
        installed.stdout(),
        installed.stderr
    );
    let status = deploy("putty", &["status"]);
    assert_eq!(status.code, 0, "{}{}", status.stdout(), status.stderr);
    assert_eq!(
        status.stdout().matches("active (systemd)").count(),
        3,
        "{}",
        status.stdout()
    );
    assert!(status.stderr.contains("summary"), "{}", status.stderr);
    let mut command = Command::new(CLIENT);
    command.args([
        "check",
        "--hosts",
        hosts.to_str().unwrap(),
        "--timeout",
        "3s",
    ]);
    let checked = finish_within(command, b"", Duration::from_secs(30));
    assert_eq!(checked.code, 0, "{}", checked.stdout());
}

#[test]
fn the_role_installs_the_release_binaries_where_there_is_no_package() {
    let fleet = Fleet::boot_hosts(1);
    // On the IPv6 wildcard, which the role's own check reaches as [::1].
    let inventory = fleet.inventory(|i| format!("{} echo_server_host='::'", release_binaries(i)));
    let first = fleet.playbook(&inventory).stdout();
    let check = first
        .split("TASK [echo_server : Check that the host echoes]")
        .nth(1)
        .and_then(|task| task.lines().nth(1))
        .unwrap_or_default();
    assert!(check.starts_with("ok: [host0]"), "{first}");
    let (host, port) = &fleet.hosts[0];
    assert_eq!(host.ssh_ok("systemctl is-active echo-server"), "active");
    assert_eq!(
        host.ssh_ok("readlink -f $(command -v echo-server)"),
        "/usr/local/bin/echo-server"
    );
    assert!(
        host.ssh("dpkg -s echo-service").code != 0,
        "the package was installed"
    );
    let mut command = Command::new(CLIENT);
    command.args(["check", &format!("[::1]:{port}")]);
    assert_eq!(finish_within(command, b"", Duration::from_secs(30)).code, 0);
    let second = fleet.playbook(&inventory);
    assert_eq!(changed(&second.stdout()), [0], "{}", second.stdout());
}

/// One host that the role gives a TLS listener on a port of its own,
/// with the certificates and keys of a test PKI.
struct TlsFleet {
    fleet: Fleet,
    pki: Pki,
    tls_port: u16,
}

impl TlsFleet {
    fn boot() -> TlsFleet {
        TlsFleet {
            fleet: Fleet::boot_hosts(1),
            pki: Pki::new(),
            tls_port: free_port(),
        }
    }

    fn host(&self) -> &SystemdHost {
        &self.fleet.hosts[0].0
    }

    /// An inventory that installs the release binaries and serves the
    /// PKI's files `certificate` and `key`, with the variables `extra`.
    fn inventory(&self, certificate: &str, key: &str, extra: &str) -> PathBuf {
        self.fleet.inventory(|i| {
            format!(
                "{} echo_server_tls_listen='[\"127.0.0.1:{}\"]' \
                 echo_server_tls_certificate={} echo_server_tls_key={} {extra}",
                release_binaries(i),
                self.tls_port,
                self.pki.arg(certificate),
                self.pki.arg(key)
            )
        })
    }

    /// The notAfter of the certificate served to a new connection.
    fn served(&self) -> String {
        served_not_after(&self.pki, &format!("localhost:{}", self.tls_port))
    }

    /// Waits until new connections get the certificate `name`: the
    /// reload's SIGHUP may still be on its way when the play ends.
    fn wait_until_served(&self, name: &str) {
        let deadline = std::time::Instant::now() + common::PATIENCE;
        while self.served() != self.pki.not_after(name) {
            assert!(
                std::time::Instant::now() < deadline,
                "the certificate {name} is not served"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        rustls_connect(
            &rustls_client(&self.pki),
            std::net::SocketAddr::from(([127, 0, 0, 1], self.tls_port)),
        )
    }

    /// Owner, group and mode of the installed key.
    fn installed_key(&self) -> String {
        self.host()
            .ssh_ok("stat -c '%U:%G %a' /etc/echo-server/tls/server.key")
    }

    /// The unit's TLS drop-in, as installed.
    fn drop_in(&self) -> String {
        assert_eq!(
            self.host()
                .ssh_ok("systemctl show -p DropInPaths --value echo-server"),
            "/etc/systemd/system/echo-server.service.d/tls.conf"
        );
        self.host()
            .ssh_ok("cat /etc/systemd/system/echo-server.service.d/tls.conf")
    }
}

/// A drop-in of systemd/, as `SystemdHost::ssh_ok` prints a file.
fn systemd_file(name: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/systemd/{name}"))
        .unwrap()
        .trim()
        .to_string()
}

const SSL_CERT: &str = "echo_server_tls_key_access=ssl-cert";

/// TLS through the role: `--check` of a first TLS setup; the certificate
/// and key from the controller, the key root's alone and handed to the
/// service by the credentials drop-in (the default key access); a second
/// run changes nothing; a certificate renewed for the same key is served
/// after a reload (the same process), a new key after a restart.
#[test]
fn the_role_installs_the_tls_certificate_and_key() {
    let tls = TlsFleet::boot();
    let (fleet, pki, host) = (&tls.fleet, &tls.pki, tls.host());
    pki.renew("server", "renewed");

    // Without TLS first; then --check, with the TLS files not on the host
    // yet, foresees the restart and changes nothing.
    fleet.playbook(&fleet.inventory(release_binaries));
    let checked = fleet.playbook_with(&tls.inventory("server.pem", "server.key", ""), &["--check"]);
    assert!(
        checked
            .stdout()
            .contains("RUNNING HANDLER [echo_server : Restart echo-server]"),
        "{}",
        checked.stdout()
    );
    assert_ne!(host.ssh("test -e /etc/echo-server/tls").code, 0);

    fleet.playbook(&tls.inventory("server.pem", "server.key", ""));
    assert_eq!(tls.served(), pki.not_after("server"));
    assert_eq!(tls.installed_key(), "root:root 600");
    assert_eq!(tls.drop_in(), systemd_file("echo-server-tls.conf"));
    let second = fleet.playbook(&tls.inventory("server.pem", "server.key", ""));
    assert_eq!(changed(&second.stdout()), [0], "{}", second.stdout());

    let pid = main_pid(host);
    fleet.playbook(&tls.inventory("renewed.pem", "server.key", ""));
    tls.wait_until_served("renewed");
    assert_eq!(
        main_pid(host),
        pid,
        "a new certificate restarted the service"
    );

    fleet.playbook(&tls.inventory("server2.pem", "server2.key", ""));
    assert_eq!(tls.served(), pki.not_after("server2"));
    assert_ne!(main_pid(host), pid, "a new key did not restart the service");
}

/// The key access `ssl-cert`, switched to from `credential` and back: the
/// switch installs the ssl-cert drop-in, gives the same key to the group
/// ssl-cert (0640) and restarts the service once; a second run changes
/// nothing; a new key is served after the play by the same process (a
/// reload) while a connection made before keeps echoing; back to
/// `credential`, the key is root's alone again, handed over as a
/// credential after a restart.
#[test]
fn the_role_switches_the_tls_key_to_the_group_ssl_cert_and_back() {
    let tls = TlsFleet::boot();
    let (fleet, pki, host) = (&tls.fleet, &tls.pki, tls.host());

    fleet.playbook(&tls.inventory("server2.pem", "server2.key", ""));
    let credential_pid = main_pid(host);
    fleet.playbook(&tls.inventory("server2.pem", "server2.key", SSL_CERT));
    assert_eq!(tls.installed_key(), "root:ssl-cert 640");
    assert_eq!(tls.drop_in(), systemd_file("echo-server-tls-ssl-cert.conf"));
    let pid = main_pid(host);
    assert_ne!(
        pid, credential_pid,
        "the new drop-in did not restart the service"
    );
    assert_eq!(tls.served(), pki.not_after("server2"));
    let second = fleet.playbook(&tls.inventory("server2.pem", "server2.key", SSL_CERT));
    assert_eq!(changed(&second.stdout()), [0], "{}", second.stdout());

    let mut old = tls.connect();
    fleet.playbook(&tls.inventory("server.pem", "server.key", SSL_CERT));
    tls.wait_until_served("server");
    assert_eq!(main_pid(host), pid, "a new key restarted the service");
    assert_eq!(tls.installed_key(), "root:ssl-cert 640");
    echo_once(&mut old, b"after the reload with a new key");

    fleet.playbook(&tls.inventory("server.pem", "server.key", ""));
    assert_eq!(tls.installed_key(), "root:root 600");
    assert_eq!(tls.drop_in(), systemd_file("echo-server-tls.conf"));
    assert_ne!(
        main_pid(host),
        pid,
        "the new drop-in did not restart the service"
    );
    host.ssh_ok("cmp /run/credentials/echo-server.service/tls-key /etc/echo-server/tls/server.key");
    assert_eq!(tls.served(), pki.not_after("server"));
    let second = fleet.playbook(&tls.inventory("server.pem", "server.key", ""));
    assert_eq!(changed(&second.stdout()), [0], "{}", second.stdout());
}

/// The key access `ssl-cert` on a host without the group (the ssl-cert
/// package not installed): the preflight stops the play with the remedy,
/// before anything is installed.
#[test]
fn a_host_without_the_group_ssl_cert_is_refused_before_anything_changes() {
    let tls = TlsFleet::boot();
    let host = tls.host();
    host.ssh_ok("groupdel ssl-cert");
    let refused = tls
        .fleet
        .run_playbook(&tls.inventory("server.pem", "server.key", SSL_CERT), &[]);
    let output = stopped_at(&refused, "Require the group ssl-cert");
    assert!(
        output.contains("the host has no group ssl-cert: apt install ssl-cert"),
        "{output}"
    );
    let untouched = host.ssh(
        "test ! -e /usr/local/bin/echo-server && test ! -e /etc/echo-server \
         && test ! -e /etc/systemd/system/echo-server.service.d",
    );
    assert_eq!(untouched.code, 0, "{output}");
}

/// A log level that, written into the TOML as it is, ends its string and
/// adds a key of its own, which `echo-server --check-config` accepts.
const INJECTED_LOG_LEVEL: &str = "info\"\ndirectory = \"/etc/cron.d";

#[test]
fn the_role_refuses_a_variable_that_would_rewrite_the_config_and_changes_nothing() {
    let fleet = Fleet::boot_hosts(1);
    let inventory = fleet.inventory(release_binaries);
    fleet.playbook(&inventory);
    let host = &fleet.hosts[0].0;
    let live = host.ssh_ok("cat /etc/echo-server/config.toml");
    let pid = main_pid(host);

    let injection = fleet.work.write(
        "injection.json",
        &serde_json::json!({ "echo_server_log_level": INJECTED_LOG_LEVEL }).to_string(),
    );
    let refused = fleet.run_playbook(&inventory, &["-e", &format!("@{}", injection.display())]);
    let output = refused.stdout();
    assert_ne!(refused.code, 0, "the play accepted it:\n{output}");
    assert!(output.contains("echo_server_log_level"), "{output}");
    assert_eq!(changed(&output), [0], "{output}");
    let after = host.ssh_ok("cat /etc/echo-server/config.toml");
    assert_eq!(after, live);
    assert!(
        !after.lines().any(|l| l.starts_with("directory")),
        "{after}"
    );
    assert_eq!(main_pid(host), pid);
}

/// The template's own encoding, without the role's checks in front of it:
/// whatever string a variable holds, the TOML holds that same string.
#[test]
fn the_template_writes_every_string_variable_as_a_toml_string_of_the_same_text() {
    let work = TestDir::new();
    let role = format!("{ROOT}/deploy/ansible/roles/echo_server");
    // What a TOML basic string must escape, what JSON may escape that TOML
    // does not accept escaped (`\/`, surrogate pairs), and what both take as is.
    let awkward = [
        INJECTED_LOG_LEVEL,
        r#"back\slash \u0041 \/ '''""""#,
        "\t\r\n\u{8}\u{c}",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "é \u{85} \u{2028} \u{ffff} 😀 \u{10ffff}",
    ];
    let strings = [
        ("server", "host"),
        ("server", "idle_timeout"),
        ("server", "shutdown_grace"),
        ("log", "level"),
        ("log", "format"),
        ("log", "directory"),
        ("log", "rotation"),
        ("daemon", "pid_file"),
        ("daemon", "user"),
        ("daemon", "group"),
        ("metrics", "listen"),
    ];
    let variable = |section: &str, key: &str| match section {
        "server" => format!("echo_server_{key}"),
        _ => format!("echo_server_{section}_{key}"),
    };
    let values: serde_json::Map<String, serde_json::Value> = strings
        .iter()
        .zip(awkward.iter().cycle())
        .map(|(&(section, key), &value)| (variable(section, key), value.into()))
        .collect();
    // In a JSON file, which Ansible reads as JSON: YAML refuses control characters.
    let mut vars = values.clone();
    vars.insert("awkward".into(), serde_json::json!(awkward));
    let vars = work.write("values.json", &serde_json::Value::from(vars).to_string());
    let template = format!("{role}/templates/config.toml.j2");
    let out = work.path().display();
    // With the Python that runs Ansible: discovery may find another on this machine.
    let playbook = work.write(
        "template.yml",
        &format!(
            "- hosts: localhost
  connection: local
  gather_facts: false
  vars: {{ ansible_python_interpreter: \"{{{{ ansible_playbook_python }}}}\" }}
  vars_files: [{role}/defaults/main.yml, {vars}]
  tasks:
    - ansible.builtin.template: {{ src: {template}, dest: {out}/host.toml }}
    - ansible.builtin.template: {{ src: {template}, dest: {out}/listen.toml }}
      vars: {{ echo_server_listen: \"{{{{ awkward }}}}\" }}
",
            vars = vars.display(),
        ),
    );
    let filters = format!("{role}/filter_plugins");
    let templated = ansible_playbook(
        &work,
        &["-i", "localhost,", playbook.to_str().unwrap()],
        &[("ANSIBLE_FILTER_PLUGINS", &filters)],
    );
    assert_eq!(
        templated.code,
        0,
        "{}{}",
        templated.stdout(),
        templated.stderr
    );
    let read = |name: &str| -> toml::Table {
        let text = std::fs::read_to_string(work.path().join(name)).unwrap();
        toml::from_str(&text).unwrap_or_else(|e| panic!("{name} is not TOML: {e}\n{text:?}"))
    };
    let host = read("host.toml");
    for (section, key) in strings {
        assert_eq!(
            host[section][key].as_str(),
            values[&variable(section, key)].as_str(),
            "{section}.{key}"
        );
    }
    let listen = read("listen.toml");
    let listen: Vec<&str> = listen["server"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry.as_str().unwrap())
        .collect();
    assert_eq!(listen, awkward);
}

/// Listeners behind a load balancer: the template writes a PROXY protocol
/// entry as the table the daemon reads (the daemon itself checks the file),
/// the health check picks the first listener a plain client can reach, and
/// a misspelt entry stops the play with a message that names it.
#[test]
fn proxy_protocol_listeners_are_written_for_the_daemon_and_left_out_of_the_check() {
    let work = TestDir::new();
    let role = format!("{ROOT}/deploy/ansible/roles/echo_server");
    let template = format!("{role}/templates/config.toml.j2");
    let out = work.path().display();
    let playbook = work.write(
        "proxy.yml",
        &format!(
            "- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: \"{{{{ ansible_playbook_python }}}}\"
    mixed: [{{ address: \"[::1]:7007\", proxy_protocol: true }}, \"127.0.0.1:7\"]
    proxied: [{{ address: \"127.0.0.1:7007\", proxy_protocol: true }}]
  vars_files: [{role}/defaults/main.yml]
  tasks:
    - ansible.builtin.template: {{ src: {template}, dest: {out}/mixed.toml }}
      vars: {{ echo_server_listen: \"{{{{ mixed }}}}\" }}
    - ansible.builtin.copy:
        dest: {out}/plain.txt
        content: \"{{{{ mixed | plain_listen_address }}}}|{{{{ proxied | plain_listen_address }}}}\"
    - ansible.builtin.template: {{ src: {template}, dest: {out}/misspelt.toml }}
      vars: {{ echo_server_listen: [{{ adress: \"127.0.0.1:7\" }}] }}
      register: misspelt
      ignore_errors: true
    - ansible.builtin.copy: {{ dest: {out}/misspelt.txt, content: \"{{{{ misspelt.msg }}}}\" }}
",
        ),
    );
    let filters = format!("{role}/filter_plugins");
    let played = ansible_playbook(
        &work,
        &["-i", "localhost,", playbook.to_str().unwrap()],
        &[("ANSIBLE_FILTER_PLUGINS", &filters)],
    );
    assert_eq!(played.code, 0, "{}{}", played.stdout(), played.stderr);
    let config = work.path().join("mixed.toml");
    let checked = Command::new(SERVER)
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "the daemon refuses the template's file: {}\n{}",
        String::from_utf8_lossy(&checked.stderr),
        std::fs::read_to_string(&config).unwrap()
    );
    assert!(
        printed.contains(r#"{ address = "[::1]:7007", proxy_protocol = true }"#),
        "{printed}"
    );
    let read = |name: &str| std::fs::read_to_string(work.path().join(name)).unwrap();
    assert_eq!(read("plain.txt"), "127.0.0.1:7|");
    let message = read("misspelt.txt");
    assert!(message.contains("unknown key adress"), "{message}");
}

/// The site playbook run against a host without systemd (an SSH host in
/// namespaces of its own), with `vars` as extra variables in JSON.
fn play_on_a_host_without_systemd(vars: serde_json::Value) -> (SshHost, Finished) {
    let host = SshHost::start();
    let work = TestDir::new();
    let inventory = work.write(
        "inventory.ini",
        &format!(
            "[echo_servers]\n{}",
            inventory_line(
                0,
                host.port,
                &host.key,
                &host.known_hosts,
                // This machine's own Python: discovery may find a shim that
                // a login's PATH does not resolve.
                &format!(
                    "ansible_python_interpreter=/usr/bin/python3 {}",
                    release_binaries(0)
                )
            )
        ),
    );
    let vars = work.write("vars.json", &vars.to_string());
    let site = format!("{ROOT}/deploy/ansible/site.yml");
    let played = ansible_playbook(
        &work,
        &[
            "-i",
            inventory.to_str().unwrap(),
            "-e",
            &format!("@{}", vars.display()),
            &site,
        ],
        &[],
    );
    (host, played)
}

/// The names of the role's tasks that ran, in order.
fn role_tasks(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("TASK [echo_server : "))
        .map(|l| l.split(']').next().unwrap())
        .collect()
}

/// The output of a play that failed, the last of the role's tasks to run
/// being `task`, with nothing changed.
fn stopped_at(refused: &Finished, task: &str) -> String {
    let output = refused.stdout();
    assert_ne!(refused.code, 0, "the play accepted it:\n{output}");
    assert_eq!(role_tasks(&output).last(), Some(&task), "{output}");
    assert_eq!(changed(&output), [0], "{output}");
    output
}

#[test]
fn a_host_without_systemd_is_refused_before_anything_changes() {
    let (host, refused) = play_on_a_host_without_systemd(serde_json::json!({}));
    let output = stopped_at(&refused, "Check that the host runs systemd");
    assert!(
        output.contains("does not run systemd") && output.contains("deploy/echo-deploy"),
        "{output}"
    );
    let untouched =
        host.shell("test ! -e /usr/local/bin/echo-server && test ! -e /etc/echo-server");
    assert_eq!(untouched.code, 0, "{output}");
}

#[test]
fn a_variable_of_the_wrong_type_fails_before_any_task_runs() {
    let (_host, refused) =
        play_on_a_host_without_systemd(serde_json::json!({ "echo_server_port": "many" }));
    let output = refused.stdout();
    assert_ne!(refused.code, 0, "the play accepted it:\n{output}");
    assert!(
        output.contains("Validation of arguments failed") && output.contains("echo_server_port"),
        "{output}"
    );
    let tasks = role_tasks(&output);
    assert_eq!(tasks.len(), 1, "{output}");
    assert!(tasks[0].starts_with("Validating arguments"), "{output}");
}
