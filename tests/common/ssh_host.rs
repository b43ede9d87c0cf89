//! A throwaway SSH host without systemd: a real OpenSSH server on loopback.
//!
//! The server runs in mount and PID namespaces of its own, with an overlay
//! over every tree a deploy writes (/etc, /opt, /usr/local, /var, /run).
//! Every login sees the overlays, the real trees stay untouched, and when
//! the test ends the namespace's init is killed, taking whatever was
//! started there with it: nothing is left behind on the machine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{Finished, PATIENCE, SshLogin, TestDir, free_port, process_tree, run};

/// Where the host sees the harness's directory.
pub const INSIDE: &str = "/run/echo-test";

/// A throwaway SSH host: sshd on a loopback port, in its own namespaces.
pub struct SshHost {
    pub dir: TestDir,
    pub port: u16,
    sshd: Child,
    /// The OpenSSH private key, its PuTTY form, the known_hosts file and
    /// the host key's SHA256 fingerprint.
    pub key: PathBuf,
    pub ppk: PathBuf,
    pub known_hosts: PathBuf,
    pub fingerprint: String,
}

/// What a test host differs in.
#[derive(Default)]
pub struct HostOptions {
    /// The size of /opt (where releases go), to make a full disk.
    pub opt_bytes: Option<u64>,
}

impl SshHost {
    pub fn start() -> SshHost {
        SshHost::start_with(&HostOptions::default())
    }

    pub fn start_with(options: &HostOptions) -> SshHost {
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
        let small_opt = options.opt_bytes.map_or(String::new(), |bytes| {
            format!("mount -t tmpfs -o size={bytes} tmpfs /opt\n")
        });
        // Inside the namespaces: an overlay over each tree a deploy writes,
        // this directory at a fixed place and a fresh /tmp (where this
        // directory may be), no trace of systemd, host names from /etc/hosts
        // alone (no query leaves the machine), two unprivileged users (one
        // with passwordless sudo, one without), then sshd as the namespace's
        // init.
        let script = format!(
            "set -e\n\
             for tree in etc opt usr/local var run; do\n\
               mkdir -p {d}/upper/$tree {d}/work/$tree\n\
               mount -t overlay overlay -o lowerdir=/$tree,upperdir={d}/upper/$tree,workdir={d}/work/$tree /$tree\n\
             done\n\
             {small_opt}\
             mkdir -p {INSIDE}\n\
             mount --bind {d} {INSIDE}\n\
             mount -t tmpfs tmpfs /tmp\n\
             sed -i 's/^hosts:.*/hosts: files/' /etc/nsswitch.conf\n\
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

    /// The host's processes and its sshd's log: what a test that hangs
    /// talking to it reports.
    pub fn state(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
        format!(
            "the host's processes:\n{}the host's sshd log:\n{log}",
            process_tree(self.sshd.id())
        )
    }

    /// Runs a command on the host, as root, over ssh.
    pub fn shell(&self, script: &str) -> Finished {
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
