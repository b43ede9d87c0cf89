//! Reaching the daemon's directories and files without following anything
//! its user can change.
//!
//! The pid file's directory and the log directory belong to the daemon's
//! user, who could put a symbolic link to, say, `/etc/shadow` in them
//! between two starts, or swap a directory for a link while root works in
//! it. So root walks each path one component at a time from directory
//! descriptors, and follows a link only in a directory that nobody but
//! root (or the process's own user) may change; it creates a missing
//! directory relative to its parent's descriptor and hands it over through
//! its own descriptor, never by path. The files inside are opened by the
//! daemon once it is its user, and never through a link either.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, mkdirat};
use nix::unistd::{Gid, Uid, fchown, geteuid};

/// As many links as Linux follows in one path (MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Opens the directory `path`, creating with `mode` whatever is missing of
/// it. The last directory goes to `owner` if it was created here; one that
/// exists is the operator's and stays as it is (never chown /var/log).
pub(crate) fn prepare_directory(
    path: &Path,
    mode: u32,
    owner: Option<(Uid, Gid)>,
) -> io::Result<OwnedFd> {
    let mut walked = PathBuf::from(if path.has_root() { "/" } else { "." });
    let mut dir = open_directory(&walked)?;
    // A stack: the next component last, so that a link's target can be
    // pushed in its place.
    let mut pending: Vec<OsString> = components(path);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        walked.push(&name);
        dir = match step(&dir, &name, &walked)? {
            Step::Directory(next) => next,
            Step::Missing => create(
                &dir,
                &name,
                &walked,
                mode,
                owner.filter(|_| pending.is_empty()),
            )?,
            Step::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(at(&walked, Errno::ELOOP));
                }
                walked.pop();
                if target.has_root() {
                    walked = PathBuf::from("/");
                    dir = open_directory(&walked)?;
                }
                pending.extend(components(&target));
                continue;
            }
        };
        if name == ".." {
            walked.pop();
            walked.pop();
        }
    }
    Ok(dir)
}

/// Opens the file `path` in `dir` (its directory, opened by
/// `prepare_directory`) with `flags`, creating it with `mode` if `flags`
/// say so. Only a regular file will do: not a link, and not a FIFO that
/// would hang the daemon.
pub(crate) fn open_file(dir: &OwnedFd, path: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let safe = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags | safe, Mode::from_bits_truncate(mode)).map_err(|e| {
        if e == Errno::ELOOP {
            io::Error::other(format!(
                "{} is a symbolic link, which echo-server never follows there; remove it",
                path.display()
            ))
        } else {
            at(path, e)
        }
    })?;
    if file_type(&fstat(&fd)?) != SFlag::S_IFREG {
        return Err(io::Error::other(format!(
            "{} is not a regular file; remove it",
            path.display()
        )));
    }
    // Writes to a regular file never return EAGAIN, but the flag would
    // still be inherited by whoever reads the daemon's output.
    let status = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(status - OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

/// What one component of a path turned out to be.
enum Step {
    Directory(OwnedFd),
    Missing,
    /// A link to follow, in a directory only root may change.
    Link(PathBuf),
}

fn step(dir: &OwnedFd, name: &OsString, walked: &Path) -> io::Result<Step> {
    match openat(dir, name.as_os_str(), directory_flags(), Mode::empty()) {
        Ok(next) => Ok(Step::Directory(next)),
        Err(Errno::ENOENT) => Ok(Step::Missing),
        Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
            let Ok(target) = readlinkat(dir, name.as_os_str()) else {
                return Err(at(walked, e));
            };
            if others_may_change(&fstat(dir)?) {
                return Err(io::Error::other(format!(
                    "{} is a symbolic link in a directory that users other than root may change, \
                     which echo-server does not follow as root; make it a directory",
                    walked.display()
                )));
            }
            Ok(Step::Link(target.into()))
        }
        Err(e) => Err(at(walked, e)),
    }
}

/// Makes the directory `name` in `dir` and opens it. Should someone swap
/// it for a link in between, the open fails rather than follows.
fn create(
    dir: &OwnedFd,
    name: &OsString,
    walked: &Path,
    mode: u32,
    owner: Option<(Uid, Gid)>,
) -> io::Result<OwnedFd> {
    let created = match mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(mode)) {
        Ok(()) => true,
        // Made by someone else meanwhile: theirs, like any existing one.
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(at(walked, e)),
    };
    let new = openat(dir, name.as_os_str(), directory_flags(), Mode::empty())
        .map_err(|e| at(walked, e))?;
    if let (true, Some((uid, gid))) = (created, owner) {
        fchown(&new, Some(uid), Some(gid)).map_err(|e| at(walked, e))?;
    }
    Ok(new)
}

fn open_directory(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(path, directory_flags(), Mode::empty()).map_err(|e| at(path, e))
}

fn directory_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// True unless only root, or the user this process runs as, may add,
/// remove or rename the directory's entries.
fn others_may_change(stat: &FileStat) -> bool {
    let owner_trusted = stat.st_uid == 0 || stat.st_uid == geteuid().as_raw();
    !owner_trusted || stat.st_mode & 0o022 != 0
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

/// The components to walk, the first last ("." is where the walk stands).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(name) => Some(name.to_os_string()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// An error that names the path it happened at.
fn at(path: &Path, errno: Errno) -> io::Error {
    let error = io::Error::from(errno);
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// They hand directories to `nobody`, which takes root: host tests.
#[cfg(all(test, feature = "host-tests"))]
mod tests {
    use super::*;

    const NOBODY: (u32, u32) = (65534, 65534);

    fn nobody() -> Option<(Uid, Gid)> {
        Some((Uid::from_raw(NOBODY.0), Gid::from_raw(NOBODY.1)))
    }

    /// A root-owned temporary directory with `users`, a directory the
    /// daemon's user owns, and `elsewhere`, one of root's.
    fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&users).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::chown(&users, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
        (dir, users, elsewhere)
    }

    fn owner_of(path: &Path) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    }

    #[test]
    fn a_link_in_a_directory_the_user_owns_is_not_followed() {
        let (_dir, users, elsewhere) = layout();
        // As the user could do at any moment, in the directory they own.
        std::os::unix::fs::symlink(&elsewhere, users.join("link")).unwrap();

        let error = prepare_directory(&users.join("link/logs"), 0o750, nobody()).unwrap_err();
        assert!(
            error.to_string().contains("does not follow as root"),
            "{error}"
        );
        assert!(!elsewhere.join("logs").exists(), "followed the user's link");
        assert_eq!(owner_of(&elsewhere), (0, 0));
    }

    #[test]
    fn a_link_in_a_directory_of_roots_is_followed() {
        let (dir, _users, elsewhere) = layout();
        // Like the operator's /var/run -> /run.
        std::os::unix::fs::symlink("elsewhere", dir.path().join("link")).unwrap();

        prepare_directory(&dir.path().join("link/logs"), 0o750, nobody()).unwrap();
        assert_eq!(owner_of(&elsewhere.join("logs")), NOBODY);
    }

    #[test]
    fn only_the_created_last_directory_goes_to_the_user() {
        let (_dir, users, elsewhere) = layout();
        prepare_directory(&users.join("a/b"), 0o750, nobody()).unwrap();
        assert_eq!(owner_of(&users.join("a")), (0, 0));
        assert_eq!(owner_of(&users.join("a/b")), NOBODY);

        prepare_directory(&elsewhere, 0o750, nobody()).unwrap();
        assert_eq!(
            owner_of(&elsewhere),
            (0, 0),
            "an existing one changed hands"
        );
    }

    #[test]
    fn a_link_at_a_file_is_refused() {
        let (_dir, users, elsewhere) = layout();
        let victim = elsewhere.join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::os::unix::fs::symlink(&victim, users.join("echo-server.pid")).unwrap();

        let dir = prepare_directory(&users, 0o750, None).unwrap();
        let error = open_file(
            &dir,
            &users.join("echo-server.pid"),
            OFlag::O_RDWR | OFlag::O_CREAT,
            0o644,
        )
        .unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
    }
}
