//! Every `--help` the documentation shows is the program's current one,
//! whichever page (README.md or docs/*.md) shows it.

#![cfg(unix)]

mod common;

use std::process::Command;

use common::{CLIENT, DEPLOY, SERVER, assert_documented, finish_with_patience};

/// Runs `program args` and returns what it printed, which must be a
/// success.
fn help(program: &str, args: &[&str]) -> String {
    let mut command = Command::new(program);
    command.args(args).env_remove("ECHO_SERVER_CONFIG");
    let run = finish_with_patience(command, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout()
}

#[test]
fn echo_server_help_is_what_the_docs_show() {
    assert_documented("echo-server --help", &help(SERVER, &["--help"]));
}

#[test]
fn echo_client_help_texts_are_what_the_docs_show() {
    for args in [
        &["--help"][..],
        &["send", "--help"],
        &["check", "--help"],
        &["bench", "--help"],
        &["pipe", "--help"],
    ] {
        let shown = format!("echo-client {}", args.join(" "));
        assert_documented(&shown, &help(CLIENT, args));
    }
}

#[test]
fn echo_deploy_help_is_what_the_docs_show() {
    assert_documented("echo-deploy --help", &help(DEPLOY, &["--help"]));
}
