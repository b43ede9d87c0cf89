//! Classic daemon mode (`--daemon`), for hosts without systemd.
//!
//! The order matters. The configuration is loaded and the sockets are bound
//! in the foreground, so a mistake is reported to the terminal that typed
//! the command. Only then does the process fork (before any thread or
//! runtime exists, which a fork would not carry over), detach from the
//! terminal, write and lock the pid file, point standard output and error at
//! the log directory and drop to the configured user. The parent waits on a
//! pipe until the daemon says it is ready, or why it failed, and exits with
//! the matching code, so `echo-server --daemon && echo started` tells the
//! truth.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{PipeWriter, Read};
use std::path::{Path, PathBuf};

use daemonize::{Daemonize, Outcome};
use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{StartupError, exit_code};
use crate::notify::ParentReport;

/// Where the daemon's standard output and error go, inside the log directory.
const OUTPUT_FILE: &str = "echo-server.out";

/// The daemon settings that apply, after the command line had its say.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub pid_file: PathBuf,
    pub user: Option<String>,
    pub group: Option<String>,
    pub log_directory: PathBuf,
}

/// The running daemon's side: removes the pid file when dropped, which is
/// when the daemon stops.
#[derive(Debug)]
pub struct PidFileGuard {
    path: PathBuf,
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(pid_file = %self.path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

/// Refuses to start when a live daemon holds the pid file. A file nobody
/// holds is stale (its daemon died without cleaning up) and is taken over.
pub fn check_not_running(pid_file: &Path) -> Result<(), StartupError> {
    let Ok(file) = File::open(pid_file) else {
        return Ok(());
    };
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = (&file).read_to_string(&mut pid);
            Err(StartupError::AlreadyRunning {
                pid_file: pid_file.to_path_buf(),
                pid: pid.trim().to_string(),
            })
        }
        Err(TryLockError::Error(e)) => Err(StartupError::PidFile {
            pid_file: pid_file.to_path_buf(),
            source: e,
        }),
    }
}

/// Forks into the background. Returns only in the daemon, with the pipe on
/// which to report readiness; the original process waits for that report
/// and exits with its code.
pub fn detach(options: &DaemonOptions) -> Result<(PipeWriter, PidFileGuard), StartupError> {
    let owner = resolve_owner(options)?;
    let pid_dir = options
        .pid_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    prepare_directory(pid_dir, 0o755, owner)?;
    prepare_directory(&options.log_directory, 0o750, owner)?;
    let output_path = options.log_directory.join(OUTPUT_FILE);
    let output = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output_path)
        .map_err(|e| StartupError::LogDirectory {
            directory: options.log_directory.clone(),
            message: e.to_string(),
        })?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&output_path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(
            |e| StartupError::LogDirectory {
                directory: options.log_directory.clone(),
                message: e.to_string(),
            },
        )?;
    }
    let stderr = output.try_clone().map_err(|e| StartupError::LogDirectory {
        directory: options.log_directory.clone(),
        message: e.to_string(),
    })?;

    let (mut from_daemon, to_parent) = std::io::pipe().map_err(StartupError::Runtime)?;
    let mut daemonize = Daemonize::new()
        .pid_file(&options.pid_file)
        .chown_pid_file(owner.is_some())
        .working_directory("/")
        // Pid and log files readable by monitoring tools running as others.
        .umask(0o022)
        .stdout(output)
        .stderr(stderr);
    if let Some(user) = &options.user {
        daemonize = daemonize.user(user.as_str());
    }
    if let Some(group) = &options.group {
        daemonize = daemonize.group(group.as_str());
    } else if let Some((_, gid)) = owner {
        daemonize = daemonize.group(gid.as_raw());
    }
    match daemonize.execute() {
        Outcome::Parent(Ok(_)) => {
            drop(to_parent);
            let mut report = String::new();
            let _ = from_daemon.read_to_string(&mut report);
            std::process::exit(finish_parent(ParentReport::decode(&report), options));
        }
        Outcome::Parent(Err(e)) => Err(StartupError::Daemonize(e.to_string())),
        Outcome::Child(Ok(_)) => {
            drop(from_daemon);
            Ok((
                to_parent,
                PidFileGuard {
                    path: options.pid_file.clone(),
                },
            ))
        }
        Outcome::Child(Err(e)) => {
            // Detached already: only the parent can tell anyone.
            let failure = StartupError::Daemonize(e.to_string());
            let report = ParentReport::Failed {
                exit_code: failure.exit_code(),
                message: failure.to_string(),
            };
            let mut to_parent = to_parent;
            let _ = std::io::Write::write_all(&mut to_parent, report.encode().as_bytes());
            std::process::exit(failure.exit_code());
        }
    }
}

/// What the waiting parent prints, and its exit code.
fn finish_parent(report: Option<ParentReport>, options: &DaemonOptions) -> i32 {
    match report {
        Some(ParentReport::Ready { pid }) => {
            println!(
                "echo-server: running in the background as pid {pid} (pid file {})",
                options.pid_file.display()
            );
            exit_code::OK
        }
        Some(ParentReport::Failed { exit_code, message }) => {
            eprintln!("echo-server: error: {message}");
            exit_code
        }
        None => {
            eprintln!(
                "echo-server: error: the daemon exited during start-up without saying why; see {}",
                options.log_directory.join(OUTPUT_FILE).display()
            );
            exit_code::SOFTWARE
        }
    }
}

/// The uid and gid to hand directories to, when a user or group is set.
fn resolve_owner(options: &DaemonOptions) -> Result<Option<(Uid, Gid)>, StartupError> {
    let user = match &options.user {
        Some(name) => Some(
            User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| StartupError::NoSuchUser(format!("user `{name}`")))?,
        ),
        None => None,
    };
    let group = match &options.group {
        Some(name) => Some(
            Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| StartupError::NoSuchUser(format!("group `{name}`")))?
                .gid,
        ),
        None => None,
    };
    Ok(match (user, group) {
        (Some(user), group) => Some((user.uid, group.unwrap_or(user.gid))),
        (None, Some(gid)) => Some((Uid::current(), gid)),
        (None, None) => None,
    })
}

/// Creates a missing directory the daemon writes to and, while still
/// privileged, hands it to the daemon's user so it can write there after
/// dropping privileges. A directory that already exists is the operator's
/// and is left as it is (never chown /run or /var/log).
fn prepare_directory(
    path: &Path,
    mode: u32,
    owner: Option<(Uid, Gid)>,
) -> Result<(), StartupError> {
    use std::os::unix::fs::DirBuilderExt;

    if path.is_dir() {
        return Ok(());
    }
    let fail = |e: std::io::Error| StartupError::LogDirectory {
        directory: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(fail)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(fail)?;
    }
    Ok(())
}
