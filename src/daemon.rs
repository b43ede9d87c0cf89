//! Classic daemon mode (`--daemon`), for hosts without systemd.
//!
//! The order matters. The configuration is loaded, the pid file checked and
//! the sockets bound in the foreground, so a mistake is reported to the
//! terminal that typed the command. Only then does the process fork (before
//! any thread or runtime exists, which a fork would not carry over), detach
//! from the terminal, write and lock the pid file, point standard output and
//! error at the log directory and drop to the configured user, supplementary
//! groups included. The parent waits on a pipe until the daemon says it is
//! ready, or why it failed, and exits with the matching code, so
//! `echo-server --daemon && echo started` tells the truth.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{PipeWriter, Read, Write};
use std::path::{Path, PathBuf};

use daemonize::{Daemonize, Outcome};
use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{StartupError, exit_code};
use crate::notify::ParentReport;

/// Where the daemon's standard output and error go, inside the log directory.
const OUTPUT_FILE: &str = "echo-server.out";

/// The daemon settings that apply, after the command line had its say. The
/// paths are absolute: the daemon works from `/`.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub pid_file: PathBuf,
    pub user: Option<String>,
    pub group: Option<String>,
    pub log_directory: PathBuf,
}

/// Everything checked and made ready in the foreground, before binding.
pub struct Prepared {
    owner: Option<(Uid, Gid)>,
    output: File,
}

/// The running daemon's side: removes the pid file when dropped, which is
/// when the daemon stops (drop it while logging still works: a failure to
/// remove it is worth a warning).
#[derive(Debug)]
pub struct PidFileGuard {
    path: PathBuf,
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(pid_file = %self.path.display(), error = %e,
                "cannot remove the pid file; keep it in a directory the daemon's user may write");
        }
    }
}

/// Checks the user and the pid file, and makes the directories the daemon
/// writes to. Refuses to start when a live daemon holds the pid file; a
/// file nobody holds is stale (its daemon died without cleaning up) and is
/// taken over.
pub fn prepare(options: &DaemonOptions) -> Result<Prepared, StartupError> {
    let owner = resolve_owner(options)?;
    let pid_error = |source| StartupError::PidFile {
        pid_file: options.pid_file.clone(),
        source,
    };
    if let Some(pid_dir) = options.pid_file.parent() {
        prepare_directory(pid_dir, 0o755, owner).map_err(pid_error)?;
    }
    check_not_running(&options.pid_file)?;
    // Fail here, with the terminal still attached, if the file cannot be made.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.pid_file)
        .map_err(pid_error)?;

    let log_error = |e: std::io::Error| StartupError::LogDirectory {
        directory: options.log_directory.clone(),
        message: e.to_string(),
    };
    prepare_directory(&options.log_directory, 0o750, owner).map_err(log_error)?;
    let output_path = options.log_directory.join(OUTPUT_FILE);
    let output = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output_path)
        .map_err(log_error)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&output_path, Some(uid.as_raw()), Some(gid.as_raw()))
            .map_err(log_error)?;
    }
    Ok(Prepared { owner, output })
}

fn check_not_running(pid_file: &Path) -> Result<(), StartupError> {
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
        Err(TryLockError::Error(source)) => Err(StartupError::PidFile {
            pid_file: pid_file.to_path_buf(),
            source,
        }),
    }
}

/// Forks into the background. Returns only in the daemon, with the pipe on
/// which to report readiness; the original process waits for that report
/// and exits with its code.
pub fn detach(
    options: &DaemonOptions,
    prepared: Prepared,
) -> Result<(PipeWriter, PidFileGuard), StartupError> {
    let stderr = prepared
        .output
        .try_clone()
        .map_err(|e| StartupError::LogDirectory {
            directory: options.log_directory.clone(),
            message: e.to_string(),
        })?;
    let (mut from_daemon, to_parent) = std::io::pipe().map_err(StartupError::Runtime)?;
    let owner = prepared.owner;
    let mut daemonize = Daemonize::new()
        .pid_file(&options.pid_file)
        .chown_pid_file(owner.is_some())
        .working_directory("/")
        // Pid and log files readable by monitoring tools running as others.
        .umask(0o022)
        .stdout(prepared.output)
        .stderr(stderr)
        // Runs just before the switch of user and group, which leaves the
        // supplementary groups (root's, say) alone: drop them here.
        .privileged_action(move || match owner {
            Some((_, gid)) => nix::unistd::setgroups(&[gid]).map_err(|e| e.to_string()),
            None => Ok(()),
        });
    if let Some(user) = &options.user {
        daemonize = daemonize.user(user.as_str());
    }
    if let Some((_, gid)) = owner {
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
        Outcome::Child(Ok(child)) => match child.privileged_action_result {
            Ok(()) => {
                drop(from_daemon);
                Ok((
                    to_parent,
                    PidFileGuard {
                        path: options.pid_file.clone(),
                    },
                ))
            }
            Err(e) => fail_in_child(
                to_parent,
                daemonize_failure(&format!("cannot drop supplementary groups: {e}"), options),
            ),
        },
        Outcome::Child(Err(e)) => {
            fail_in_child(to_parent, daemonize_failure(&e.to_string(), options))
        }
    }
}

/// Detached already, and failed: only the parent can tell anyone.
fn fail_in_child(mut to_parent: PipeWriter, failure: StartupError) -> ! {
    let report = ParentReport::Failed {
        exit_code: failure.exit_code(),
        message: failure.to_string(),
    };
    let _ = to_parent.write_all(report.encode().as_bytes());
    std::process::exit(failure.exit_code());
}

/// The `daemonize` crate reports only a message. The pid file was checked
/// in the foreground, so a lock failure here means another daemon won a race.
fn daemonize_failure(message: &str, options: &DaemonOptions) -> StartupError {
    if message.contains("lock pid file") {
        StartupError::AlreadyRunning {
            pid_file: options.pid_file.clone(),
            pid: "(just started)".to_string(),
        }
    } else {
        StartupError::Daemonize(message.to_string())
    }
}

/// What the waiting parent prints, and its exit code.
fn finish_parent(report: Option<ParentReport>, options: &DaemonOptions) -> i32 {
    match report {
        Some(ParentReport::Ready { pid }) => {
            // The daemon is up whether or not this line can be shown: a
            // failed start must not be reported for a running daemon.
            let _ = writeln!(
                std::io::stdout(),
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
fn prepare_directory(path: &Path, mode: u32, owner: Option<(Uid, Gid)>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;

    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))?;
    }
    Ok(())
}
