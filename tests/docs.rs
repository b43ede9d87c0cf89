//! Every `--help` the documentation shows is the program's current one,
//! whichever page (README.md or docs/*.md) shows it, and the README's table
//! of exit codes is the one the programs exit with.

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

/// The README's exit-code table, row by row, is `shared::exit_code::TABLE`:
/// the code, then its meaning from echo-server and from echo-client (`–`
/// where that program never exits with it).
#[test]
fn the_readme_exit_codes_are_the_programs() {
    let readme = include_str!("../README.md");
    let rows: Vec<String> = readme
        .lines()
        .skip_while(|line| !line.starts_with("| code | echo-server |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = echo_service::shared::exit_code::TABLE
        .iter()
        .map(|code| {
            let cell = |meaning: Option<&str>| meaning.unwrap_or("–").replace('|', "\\|");
            format!(
                "| {} | {} | {} |",
                code.code,
                cell(code.echo_server),
                cell(code.echo_client)
            )
        })
        .collect();
    assert_eq!(rows, expected, "README.md's exit-code table");
}
