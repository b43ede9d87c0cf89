//! The pid file: locked by the running daemon for as long as it runs, so
//! that a second start is refused while a file left by a crashed daemon is
//! simply taken over.
//!
//! Root only reads it, to say "already running" before binding (a second
//! bind would fail with a less helpful message); the daemon creates, locks
//! and writes it once it runs as its own user, who owns the directory.

use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::paths::open_file;
use crate::server::error::StartupError;

/// The running daemon's side: removes the pid file when dropped, which is
/// when the daemon stops (drop it while logging still works: a failure to
/// remove it is worth a warning), and holds the lock until then.
#[derive(Debug)]
pub(crate) struct PidFileGuard {
    path: PathBuf,
    _locked: File,
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(pid_file = %self.path.display(), error = %e,
                "cannot remove the pid file; keep it in a directory the daemon's user may write");
        }
    }
}

/// Refuses to go on if a live daemon holds the pid file `path` in `dir`.
pub(crate) fn check_not_running(dir: &OwnedFd, path: &Path) -> Result<(), StartupError> {
    let file = match open_file(dir, path, OFlag::O_RDONLY, 0) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(pid_file_error(path, source)),
    };
    try_lock(&file, path)
}

/// Creates (or takes over) the pid file `path` in `dir`, locks it and
/// writes this process's id. `cannot_open` says why the file cannot be
/// opened.
pub(crate) fn lock(
    dir: &OwnedFd,
    path: &Path,
    cannot_open: impl FnOnce(std::io::Error) -> StartupError,
) -> Result<PidFileGuard, StartupError> {
    // Readable by monitoring tools running as other users.
    let mut file =
        open_file(dir, path, OFlag::O_RDWR | OFlag::O_CREAT, 0o644).map_err(cannot_open)?;
    try_lock(&file, path)?;
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|source| pid_file_error(path, source))?;
    Ok(PidFileGuard {
        path: path.to_path_buf(),
        _locked: file,
    })
}

fn try_lock(file: &File, path: &Path) -> Result<(), StartupError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(StartupError::AlreadyRunning {
            pid_file: path.to_path_buf(),
            pid: read_pid(file).map_or_else(|| "(just started)".to_string(), |pid| pid.to_string()),
        }),
        Err(TryLockError::Error(source)) => Err(pid_file_error(path, source)),
    }
}

/// The pid in the file, if that is all it holds: whatever else is in there
/// is not echoed to the terminal.
fn read_pid(mut file: &File) -> Option<u32> {
    let mut buf = [0; 16];
    let len = file.read(&mut buf).ok()?;
    let pid: u32 = std::str::from_utf8(&buf[..len]).ok()?.trim().parse().ok()?;
    (pid > 0).then_some(pid)
}

fn pid_file_error(path: &Path, source: std::io::Error) -> StartupError {
    StartupError::PidFile {
        pid_file: path.to_path_buf(),
        source,
    }
}
