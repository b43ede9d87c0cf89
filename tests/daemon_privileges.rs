//! Daemon mode started by root with `[daemon] user`: root never follows a
//! path that user can change (issue 15). The attacks run as that user,
//! `nobody`, against a file only root may touch, as a compromised daemon
//! could between two starts.

#![cfg(unix)]

mod common;

use common::daemon::{DaemonDir, proc_status_ids};
use common::run_server;

const NOBODY: &str = "65534";

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
