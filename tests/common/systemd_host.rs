//! Real systemd hosts for the end-to-end tests, booted by
//! `tests/e2e-host.sh` with systemd-nspawn and reached over SSH.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{DEPLOY, Finished, PATIENCE, SshLogin, TestDir, finish_within, free_port};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const E2E_HOST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e-host.sh");

/// Booting, with the root filesystem built on the first run, takes longer
/// than the harness's usual patience.
pub const BOOT_PATIENCE: Duration = Duration::from_secs(600);

/// A booted systemd host, powered off when dropped.
pub struct SystemdHost {
    pub dir: TestDir,
    pub ssh_port: u16,
    /// A root filesystem of its own that survives a power-off, rather than
    /// a throwaway copy.
    persistent: bool,
}

impl SystemdHost {
    pub fn boot() -> SystemdHost {
        SystemdHost::start(false)
    }

    pub fn boot_persistent() -> SystemdHost {
        SystemdHost::start(true)
    }

    fn start(persistent: bool) -> SystemdHost {
        let host = SystemdHost {
            dir: TestDir::new(),
            ssh_port: free_port(),
            persistent,
        };
        host.power_on();
        host
    }

    pub fn power_on(&self) {
        let mut command = Command::new(E2E_HOST);
        let port = self.ssh_port.to_string();
        command.args([
            "boot",
            "--dir",
            self.dir.path().to_str().unwrap(),
            "--ssh-port",
            &port,
        ]);
        if self.persistent {
            command.arg("--persistent");
        }
        let booted = finish_within(command, b"", BOOT_PATIENCE);
        assert_eq!(
            booted.code, 0,
            "the systemd host did not boot:\n{}",
            booted.stderr
        );
    }

    pub fn power_off(&self) {
        let mut command = Command::new(E2E_HOST);
        command.args(["stop", "--dir", self.dir.path().to_str().unwrap()]);
        let stopped = finish_within(command, b"", Duration::from_secs(60));
        assert_eq!(
            stopped.code, 0,
            "the host did not power off:\n{}",
            stopped.stderr
        );
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a shell command on the host as root.
    pub fn ssh(&self, script: &str) -> Finished {
        self.ssh_with_input(script, b"")
    }

    pub fn ssh_with_input(&self, script: &str, input: &[u8]) -> Finished {
        let (key, known_hosts) = (self.file("client_key"), self.file("known_hosts"));
        SshLogin {
            port: self.ssh_port,
            key: &key,
            known_hosts: &known_hosts,
        }
        .run(script, input)
    }

    pub fn ssh_ok(&self, script: &str) -> String {
        let finished = self.ssh(script);
        assert_eq!(
            finished.code,
            0,
            "on the host: {script}\n{}{}\n{}",
            finished.stdout(),
            finished.stderr,
            self.service_state()
        );
        finished.stdout().trim().to_string()
    }

    /// What the host says about echo-server, for a failure's message: a
    /// failed step often shows only its symptom ("the control process
    /// exited with error code"), and the host is gone once the test ends.
    fn service_state(&self) -> String {
        let state = self.ssh(
            "systemctl status echo-server --no-pager --lines 0; \
             journalctl -u echo-server --no-pager --lines 40",
        );
        format!(
            "echo-server on the host:\n{}{}",
            state.stdout(),
            state.stderr
        )
    }

    pub fn deploy(&self, transport: &str, args: &[&str]) -> Finished {
        let mut command = Command::new(DEPLOY);
        command
            .arg("--host")
            .arg(format!("root@127.0.0.1:{}", self.ssh_port))
            .arg("--transport")
            .arg(transport);
        if transport == "putty" {
            let fingerprint = std::fs::read_to_string(self.file("hostkey.sha256")).unwrap();
            command
                .arg("-i")
                .arg(self.file("client_key.ppk"))
                .arg("--hostkey")
                .arg(fingerprint.trim());
        } else {
            command
                .arg("-i")
                .arg(self.file("client_key"))
                .arg("--known-hosts")
                .arg(self.file("known_hosts"));
        }
        command.args(args).env("HOME", self.dir.path());
        finish_within(command, b"", Duration::from_secs(120))
    }

    /// Waits until `script` succeeds on the host.
    pub fn wait_until(&self, script: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.ssh(script).code != 0 {
            assert!(
                Instant::now() < deadline,
                "{what}: `{script}` never succeeded"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        let mut command = Command::new(E2E_HOST);
        command.args(["stop", "--dir", self.dir.path().to_str().unwrap()]);
        let _ = finish_within(command, b"", Duration::from_secs(60));
    }
}
