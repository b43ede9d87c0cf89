//! Classic daemon mode (`--daemon`), for hosts without systemd.
//!
//! The order matters. The configuration is loaded, the user looked up, the
//! directories made, the pid file checked and the sockets bound in the
//! foreground, so a mistake is reported to the terminal that typed the
//! command. Only then does the process fork (before any thread or runtime
//! exists, which a fork would not carry over), detach from the terminal and
//! drop to the configured user, supplementary groups included. Only as that
//! user does it create, lock and write the pid file and point standard
//! output and error at the log directory: both directories are the user's,
//! and root never opens a file in them (see `paths`). The parent waits on a
//! pipe until the daemon says it is ready, or why it failed, and exits with
//! the matching code, so `echo-server --daemon && echo started` tells the
//! truth.

mod paths;
mod pid_file;

use std::fs::File;
use std::io::{PipeWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Group, Uid, User, fork};

pub(crate) use self::pid_file::PidFileGuard;
use crate::server::error::StartupError;
use crate::server::notify::ParentReport;
use crate::shared::exit_code;

/// Where the daemon's standard output and error go, inside the log directory.
const OUTPUT_FILE: &str = "echo-server.out";

/// The daemon settings that apply, after the command line had its say. The
/// paths are absolute: the daemon works from `/`.
#[derive(Debug, Clone)]
pub(crate) struct DaemonOptions {
    pub(crate) pid_file: PathBuf,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) log_directory: PathBuf,
}

/// Everything checked and made ready in the foreground, before binding:
/// the user to become, and the directories the daemon writes to, opened
/// once by root so that the daemon finds exactly those.
pub(crate) struct Prepared {
    owner: Option<(Uid, Gid)>,
    pid_directory: OwnedFd,
    log_directory: OwnedFd,
}

/// Looks up the user and makes the directories the daemon writes to.
/// Refuses to start when a live daemon holds the pid file.
pub(crate) fn prepare(options: &DaemonOptions) -> Result<Prepared, StartupError> {
    let owner = resolve_owner(options)?;
    let pid_directory = options.pid_file.parent().unwrap_or(Path::new("/"));
    let pid_directory =
        paths::prepare_directory(pid_directory, 0o755, owner).map_err(|source| {
            StartupError::PidFile {
                pid_file: options.pid_file.clone(),
                source,
            }
        })?;
    pid_file::check_not_running(&pid_directory, &options.pid_file)?;
    let log_directory = paths::prepare_directory(&options.log_directory, 0o750, owner)
        .map_err(|e| log_directory_error(options, &e))?;
    Ok(Prepared {
        owner,
        pid_directory,
        log_directory,
    })
}

/// Forks into the background. Returns only in the daemon, with the pipe on
/// which to report readiness; the original process waits for that report
/// and exits with its code.
pub(crate) fn detach(
    options: &DaemonOptions,
    prepared: Prepared,
) -> Result<(PipeWriter, PidFileGuard), StartupError> {
    let (mut from_daemon, to_parent) = std::io::pipe().map_err(StartupError::Runtime)?;
    match fork_here()? {
        ForkResult::Parent { child } => {
            drop(to_parent);
            // The first child exits as soon as it has forked the daemon.
            let _ = waitpid(child, None);
            let mut report = String::new();
            let _ = from_daemon.read_to_string(&mut report);
            std::process::exit(finish_parent(ParentReport::decode(&report), options));
        }
        ForkResult::Child => {
            drop(from_daemon);
            match become_daemon(options, prepared) {
                Ok(pid_file) => Ok((to_parent, pid_file)),
                Err(failure) => fail_in_child(to_parent, failure),
            }
        }
    }
}

/// In the first child: a session of its own, without a terminal, then a
/// second fork so that the daemon, no session leader, can never acquire
/// one. Then the daemon gives up root before it opens any file.
fn become_daemon(
    options: &DaemonOptions,
    prepared: Prepared,
) -> Result<PidFileGuard, StartupError> {
    nix::unistd::setsid().map_err(|e| os_error("cannot start a session", e))?;
    if let ForkResult::Parent { .. } = fork_here()? {
        std::process::exit(exit_code::OK);
    }
    nix::unistd::chdir("/").map_err(|e| os_error("cannot change to /", e))?;
    // Pid and log files readable by monitoring tools running as others.
    umask(Mode::from_bits_truncate(0o022));
    if let Some(owner) = prepared.owner {
        drop_privileges(owner).map_err(|e| os_error("cannot drop privileges", e))?;
    }
    let pid_file = pid_file::lock(&prepared.pid_directory, &options.pid_file, |source| {
        not_writable(
            options,
            "the pid file's directory",
            &options.pid_file,
            &source,
        )
        .unwrap_or(StartupError::PidFile {
            pid_file: options.pid_file.clone(),
            source,
        })
    })?;
    redirect_output(options, &prepared.log_directory)?;
    Ok(pid_file)
}

fn fork_here() -> Result<ForkResult, StartupError> {
    // SAFETY: no other thread exists yet (see the module's documentation),
    // so the child's copy of the process is whole.
    unsafe { fork() }.map_err(|e| os_error("cannot fork", e))
}

/// Supplementary groups first (root's would stay otherwise), then the
/// group, then the user, after which none of this is allowed any more.
fn drop_privileges((uid, gid): (Uid, Gid)) -> nix::Result<()> {
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setgid(gid)?;
    nix::unistd::setuid(uid)
}

/// Standard input from /dev/null; standard output and error, where a panic
/// message would go, appended to `echo-server.out` in the log directory.
fn redirect_output(options: &DaemonOptions, log_directory: &OwnedFd) -> Result<(), StartupError> {
    let path = options.log_directory.join(OUTPUT_FILE);
    let output = paths::open_file(
        log_directory,
        &path,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
        0o640,
    )
    .map_err(|e| {
        not_writable(options, "the log directory", &path, &e)
            .unwrap_or_else(|| log_directory_error(options, &e))
    })?;
    let null = File::open("/dev/null").map_err(|e| os_error("cannot open /dev/null", e))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&output))
        .and_then(|()| nix::unistd::dup2_stderr(&output))
        .map_err(|e| os_error("cannot redirect standard input and output", e))
}

/// Permission denied, once the daemon is its user: that user may not
/// write a directory that existed already (made by a daemon that ran as
/// root, say), or a file left in it. `None` for any other failure.
fn not_writable(
    options: &DaemonOptions,
    purpose: &'static str,
    file: &Path,
    error: &std::io::Error,
) -> Option<StartupError> {
    let user = options.user.as_ref()?;
    (error.kind() == std::io::ErrorKind::PermissionDenied).then(|| StartupError::NotWritable {
        user: user.clone(),
        group: options.group.clone().unwrap_or_default(),
        purpose,
        directory: file.parent().unwrap_or(Path::new("/")).to_path_buf(),
    })
}

fn log_directory_error(options: &DaemonOptions, error: &std::io::Error) -> StartupError {
    StartupError::LogDirectory {
        directory: options.log_directory.clone(),
        message: error.to_string(),
    }
}

fn os_error(what: &str, error: impl std::fmt::Display) -> StartupError {
    StartupError::Daemonize(format!("{what}: {error}"))
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
