//! Daemon mode started by root with `[daemon] user`: root never follows a
//! path that user can change (issue 15). The attacks run as that user,
//! `nobody`, against a file only root may touch, as a compromised daemon
//! could between two starts.

#![cfg(unix)]

mod common;

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemon::{DaemonDir, proc_status_ids};
use common::{Signal, round_trip, run_server};

const AS_NOBODY: &str = "user = \"nobody\"\n";
const NOBODY: &str = "65534";

/// Runs `args` as the daemon's user, with none of root's groups.
fn as_nobody(args: &[&str]) {
    let status = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(args)
        .status()
        .expect("run setpriv");
    assert!(status.success(), "as nobody: {args:?} failed");
}

/// A file of root's that the daemon's user must never own, read or change.
struct Victim(PathBuf);

impl Victim {
    fn new(dir: &Path) -> Victim {
        let path = dir.join("victim");
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o600)).unwrap();
        Victim(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn assert_untouched(&self) {
        let meta = std::fs::metadata(&self.0).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o600),
            "the victim changed hands"
        );
        assert_eq!(std::fs::read_to_string(&self.0).unwrap(), "secret");
    }
}

/// Starts and stops a daemon as `nobody`, which leaves the pid file's
/// directory and the log directory to that user, as on a real host after
/// the first run.
fn run_once(dir: &DaemonDir, config: &str) {
    let started = dir.start(config);
    assert_eq!(started.code, 0, "{}", started.stderr);
    dir.stop();
    for directory in [dir.logs(), dir.pid_file().parent().unwrap().to_path_buf()] {
        let meta = std::fs::metadata(&directory).unwrap();
        assert_eq!(meta.uid(), 65534, "{} is not nobody's", directory.display());
    }
}

/// Plants `link` -> the victim as nobody, starts the daemon as root, and
/// checks that it refused with a message naming the link.
fn assert_planted_link_refused(dir: &DaemonDir, config: &str, link: &Path) {
    let victim = Victim::new(dir.path());
    as_nobody(&["ln", "-sf", victim.path(), link.to_str().unwrap()]);
    let started = dir.start(config);
    victim.assert_untouched();
    assert_eq!(started.code, 73, "{}", started.stderr);
    assert!(
        started.stderr.contains("symbolic link")
            && started.stderr.contains(&link.display().to_string()),
        "{}",
        started.stderr
    );
}

#[test]
fn a_link_planted_at_the_pid_file_is_not_followed() {
    let dir = DaemonDir::new();
    let config = dir.config(AS_NOBODY);
    run_once(&dir, &config);
    assert_planted_link_refused(&dir, &config, &dir.pid_file());
}

#[test]
fn a_link_planted_at_the_output_file_is_not_followed() {
    let dir = DaemonDir::new();
    let config = dir.config(AS_NOBODY);
    run_once(&dir, &config);
    assert_planted_link_refused(&dir, &config, &dir.logs().join("echo-server.out"));
}

#[test]
fn a_link_planted_at_the_log_file_is_opened_only_as_the_user() {
    let dir = DaemonDir::new();
    let config = dir.config_with_log("rotation = \"never\"\n", AS_NOBODY);
    run_once(&dir, &config);
    let victim = Victim::new(dir.path());
    let link = dir.logs().join("echo-server.log");
    as_nobody(&["ln", "-sf", victim.path(), link.to_str().unwrap()]);
    let started = dir.start(&config);
    victim.assert_untouched();
    assert_eq!(started.code, 73, "{}", started.stderr);
    assert!(
        started.stderr.contains("cannot open the log directory"),
        "{}",
        started.stderr
    );
}

#[test]
fn a_directory_the_user_cannot_write_is_named_with_the_fix() {
    for which in ["log directory", "pid file's directory"] {
        let dir = DaemonDir::new();
        let config = dir.config(AS_NOBODY);
        let directory = match which {
            "log directory" => dir.logs(),
            _ => dir.pid_file().parent().unwrap().to_path_buf(),
        };
        // Left by an earlier daemon that ran as root.
        std::fs::create_dir(&directory).unwrap();
        let started = dir.start(&config);
        assert_eq!(started.code, 73, "{which}: {}", started.stderr);
        let fix = format!("`chown -R nobody: {}`", directory.display());
        assert!(
            started
                .stderr
                .contains(&format!("user `nobody` may not write the {which}"))
                && started.stderr.contains(&fix),
            "{}",
            started.stderr
        );
    }
}

#[test]
fn user_and_group_on_the_command_line_win_over_the_config() {
    let dir = DaemonDir::new();
    let config = dir.config("user = \"no-such-user-here\"\ngroup = \"no-such-group-here\"\n");
    let started = dir.start_with(&config, &["--user", "nobody", "--group", "nogroup"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    assert_eq!(proc_status_ids(dir.pid(), "Uid"), [NOBODY; 4]);
    assert_eq!(proc_status_ids(dir.pid(), "Gid"), [NOBODY; 4]);
    dir.stop();
}

#[test]
fn user_and_group_need_daemon_mode() {
    for args in [["--user", "nobody"], ["--group", "nogroup"]] {
        let (code, _, err) = run_server(&args, &[]);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains("--daemon"), "{args:?}: {err}");
    }
}

#[test]
fn a_daemon_as_nobody_owns_its_files_refuses_a_second_start_and_cleans_up() {
    let dir = DaemonDir::new();
    let config = dir.config(AS_NOBODY);
    let started = dir.start(&config);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let pid = dir.pid();
    assert_eq!(proc_status_ids(pid, "Uid"), [NOBODY; 4]);
    assert_eq!(proc_status_ids(pid, "Gid"), [NOBODY; 4]);
    assert_eq!(
        proc_status_ids(pid, "Groups"),
        [NOBODY],
        "root's groups were kept"
    );
    // Made by the daemon itself, after it became nobody.
    for file in [dir.pid_file(), dir.logs().join("echo-server.out")] {
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(meta.is_file(), "{}", file.display());
        assert_eq!(meta.uid(), 65534, "{} is not nobody's", file.display());
    }

    dir.assert_second_start_refused(&config, pid);

    dir.stop();
    assert!(!dir.pid_file().exists(), "the pid file was left behind");
}

#[test]
fn a_daemon_drops_to_its_user_after_binding_a_privileged_port() {
    let dir = DaemonDir::new();
    let config = dir.config("user = \"nobody\"\n");
    // Port 7 needs root to bind; the daemon binds first, then becomes nobody.
    let config_text = std::fs::read_to_string(&config).unwrap();
    let port_line = config_text
        .lines()
        .find(|l| l.starts_with("port = "))
        .unwrap()
        .to_string();
    let free_low_port = (7u16..1024)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    std::fs::write(
        &config,
        config_text.replace(&port_line, &format!("port = {free_low_port}")),
    )
    .unwrap();
    let started = dir.start(&config);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let status = std::fs::read_to_string(format!("/proc/{}/status", dir.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(
        groups.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"],
        "root's groups were kept: {groups}"
    );
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "65534"),
        "{uid}"
    );
    assert_eq!(
        round_trip(
            format!("127.0.0.1:{free_low_port}").parse().unwrap(),
            b"low"
        ),
        b"low"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dir.pid()), Signal::SIGTERM).unwrap();
}

#[test]
fn an_error_after_the_fork_reaches_the_terminal_with_its_exit_code() {
    let dir = DaemonDir::new();
    // The daemon, now nobody, cannot create its output file in a directory
    // root owns. The parent still reports it.
    std::fs::create_dir_all(dir.logs()).unwrap();
    let config = dir.config("user = \"nobody\"\n");
    let started = dir.start(&config);
    assert_eq!(started.code, 73, "{}", started.stderr);
    assert!(
        started.stderr.contains("may not write the log directory"),
        "{}",
        started.stderr
    );
}
