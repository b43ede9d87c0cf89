//! The command line and start-up failures: each has its own message and its
//! own documented exit code.

#![cfg(unix)]

mod common;

use common::{Launcher, SERVER, round_trip, run_server, with_lost_stdout};

const SHIPPED_CONFIG: &str = include_str!("../config/echo-server.toml");

#[test]
fn check_config_names_the_changes_only_a_restart_applies() {
    let dir = common::TestDir::new();
    let running = dir.write("running.toml", "[server]\nport = 7007\n");
    let new = dir.write(
        "new.toml",
        "[server]\nport = 7008\nidle_timeout = \"1m\"\n[log]\nformat = \"json\"\n",
    );
    let out = common::check_config_against_running(&new, &running);
    assert!(
        out.starts_with("# Takes effect only on a restart: server.listen, log.format\n"),
        "{out}"
    );
    let out = common::check_config_against_running(&running, &running);
    assert!(!out.contains("Takes effect only on a restart"), "{out}");
    // Only with --check-config.
    let (code, _, _) = run_server(&["--running", running.to_str().unwrap()], &[]);
    assert_eq!(code, 64);
}

#[test]
fn version_and_default_config() {
    let (code, out, _) = run_server(&["--version"], &[]);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("echo-server {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
    let (code, out, _) = run_server(&["--print-default-config"], &[]);
    assert_eq!((code, out.as_str()), (0, SHIPPED_CONFIG));
}

#[test]
fn printing_to_a_lost_standard_output_does_not_crash() {
    let print = || {
        let mut command = std::process::Command::new(SERVER);
        command.arg("--print-default-config");
        command
    };
    let [(closed_code, closed_err), (full_code, full_err)] = with_lost_stdout(print);
    assert_eq!(
        (closed_code, closed_err.as_str()),
        (0, ""),
        "`| head` is fine"
    );
    assert_eq!(full_code, 74, "{full_err}");
    assert!(
        full_err.contains("cannot write to standard output"),
        "{full_err}"
    );
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &["--bogus"][..],
        &["--port", "70000"],
        &["--log-level", "loud"],
        &["--host", "1.2.3.4:5"],
    ] {
        let (code, _, err) = run_server(args, &[]);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains("error:"), "{args:?}: {err}");
    }
}

#[test]
fn check_config_prints_the_effective_settings_with_overrides() {
    let dir = common::TestDir::new();
    let path = dir.write(
        "c.toml",
        "[server]\nlisten = [\"0.0.0.0:7\", \"[::]:7\"]\nidle_timeout = \"90s\"\n",
    );
    let (code, out, err) = run_server(
        &[
            "-t",
            "-c",
            path.to_str().unwrap(),
            "--port",
            "7007",
            "--log-level",
            "debug",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(
        out.contains("listen = [\"0.0.0.0:7007\", \"[::]:7007\"]"),
        "{out}"
    );
    assert!(out.contains("idle_timeout = \"1m 30s\""), "{out}");
    assert!(out.contains("level = \"debug\""), "{out}");
}

#[test]
fn an_invalid_file_names_file_line_and_column_and_exits_78() {
    let dir = common::TestDir::new();
    for (text, position, what) in [
        (
            "[server]\nport = \"seven\"\n",
            "line 2, column 8",
            "invalid type",
        ),
        (
            "[server]\nprot = 7\n",
            "line 2, column 1",
            "unknown field `prot`",
        ),
        ("[server\nport = 7\n", "line 1, column 8", ""),
        (
            "[log]\nrotation = \"weekly\"\n",
            "line 2, column 12",
            "unknown variant `weekly`",
        ),
        (
            "[server]\nidle_timeout = \"soon\"\n",
            "line 2, column 16",
            "not a duration",
        ),
    ] {
        let path = dir.write("bad.toml", text);
        let (code, _, err) =
            run_server(&["--check-config", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(code, 78, "{text}: {err}");
        assert!(
            err.contains(&format!("{}, {position}", path.display())),
            "{text}: {err}"
        );
        assert!(err.contains(what), "{text}: {err}");
    }
}

#[test]
fn a_file_that_is_not_utf8_is_invalid_with_a_position() {
    let dir = common::TestDir::new();
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"[server]\n# caf\xe9\nport = 7\n").unwrap();
    let (code, _, err) = run_server(&["-t", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("line 2, column 6: the file is not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn a_missing_file_exits_66() {
    let (code, _, err) = run_server(&["--config", "/nonexistent/echo.toml"], &[]);
    assert_eq!(code, 66, "{err}");
    assert!(
        err.contains("/nonexistent/echo.toml: cannot read the config file"),
        "{err}"
    );
}

#[test]
fn the_config_comes_from_the_command_line_then_the_environment() {
    let dir = common::TestDir::new();
    let broken = dir.write("broken.toml", "nonsense");
    let good = dir.write("good.toml", "[server]\nport = 4242\n");
    let broken_env = [("ECHO_SERVER_CONFIG", broken.to_str().unwrap())];
    let (code, out, err) = run_server(&["-t", "-c", good.to_str().unwrap()], &broken_env);
    assert_eq!(code, 0, "--config must win over $ECHO_SERVER_CONFIG: {err}");
    assert!(out.contains("4242"), "{out}");
    let (code, _, err) = run_server(&["-t"], &broken_env);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains(broken.to_str().unwrap()), "{err}");

    let server = Launcher::new("[server]\nport = 0\n")
        .config_from_env()
        .start();
    server.log.wait_for("ECHO_SERVER_CONFIG");
    assert_eq!(round_trip(server.addr(), b"from env"), b"from env");
}

#[test]
fn an_address_in_use_exits_69_and_says_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, err) = run_server(&["--port", &port], &[]);
    assert_eq!(code, 69, "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on TCP 127.0.0.1:{port}: the address is already in use"
        )),
        "{err}"
    );
}

#[test]
fn an_address_of_another_machine_exits_69() {
    let (code, _, err) = run_server(&["--host", "192.0.2.1", "--port", "0"], &[]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("does not belong to this machine"), "{err}");
}

#[test]
fn an_unresolvable_host_exits_68() {
    let (code, _, err) = run_server(&["--host", "no-such-host.invalid"], &[]);
    assert_eq!(code, 68, "{err}");
    assert!(
        err.contains("cannot resolve host `no-such-host.invalid`"),
        "{err}"
    );
}

#[test]
fn a_log_directory_that_cannot_be_created_exits_73() {
    let dir = common::TestDir::new();
    let path = dir.write(
        "c.toml",
        "[server]\nport = 0\n[log]\ndirectory = \"/proc/echo-server-logs\"\n",
    );
    let (code, _, err) = run_server(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 73, "{err}");
    assert!(
        err.contains("cannot open the log directory /proc/echo-server-logs"),
        "{err}"
    );
}
