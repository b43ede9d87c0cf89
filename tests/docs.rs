//! Every `--help` the documentation shows is the program's current one,
//! whichever page (README.md or docs/*.md) shows it, and the README's table
//! of exit codes is the one the programs exit with. The man pages and shell
//! completions the programs print (`--generate`, docs/MANUALS.md) hold and
//! complete what their `--help` names.

#![cfg(unix)]

mod common;

use std::process::Command;

use common::{
    CLIENT, DEPLOY, SERVER, TestDir, assert_documented, bash_completion_script,
    finish_with_patience,
};

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
        &["mtu", "--help"],
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

/// Every subcommand and every long option that `--help` names is in the
/// program's man page (`--generate man`), in roff's spelling (`\-\-port`).
#[test]
fn the_man_pages_hold_everything_help_names() {
    let long_options = |help: &str| -> Vec<String> {
        help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|word| word.starts_with("--") && word.len() > 2)
            .map(|word| word.replace('-', "\\-"))
            .collect()
    };
    let server_page = help(SERVER, &["--generate", "man"]);
    assert!(server_page.contains(".TH echo-server 8 "), "{server_page}");
    for option in long_options(&help(SERVER, &["--help"])) {
        assert!(
            server_page.contains(&option),
            "echo-server(8) lacks {option}"
        );
    }
    let client_page = help(CLIENT, &["--generate", "man"]);
    assert!(client_page.contains(".TH echo-client 1 "), "{client_page}");
    let client_help = help(CLIENT, &["--help"]);
    let verbs: Vec<&str> = client_help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|verb| *verb != "help")
        .collect();
    assert_eq!(verbs, ["send", "check", "bench", "pipe", "mtu"]);
    for verb in verbs {
        let heading = format!(".SH \"ECHO-CLIENT {}\"", verb.to_uppercase());
        assert!(
            client_page.contains(&heading),
            "echo-client(1) lacks {heading}"
        );
        let section = client_page.split(&heading).nth(1).unwrap();
        let section = section.split("\n.SH ").next().unwrap();
        for option in long_options(&help(CLIENT, &[verb, "--help"])) {
            assert!(
                section.contains(&option),
                "echo-client(1) lacks {verb} {option}"
            );
        }
    }
    let deploy_page = help(DEPLOY, &["--generate", "man"]);
    assert!(deploy_page.contains(".TH ECHO-DEPLOY 1 "), "{deploy_page}");
    for option in long_options(&help(DEPLOY, &["--help"])) {
        assert!(
            deploy_page.contains(&option),
            "echo-deploy(1) lacks {option}"
        );
    }
}

/// What the bash completion that `program --generate complete-bash` prints
/// offers for the words of `line`, the last one being completed: its
/// function is called as bash calls it on TAB.
fn bash_completes(program: &str, line: &str) -> Vec<String> {
    let script = bash_completion_script(r#"source <("$1" --generate complete-bash)"#, line);
    let mut bash = Command::new("bash");
    bash.args(["-c", &script, "bash", program]);
    let run = finish_with_patience(bash, b"");
    assert_eq!(run.code, 0, "completing `{line}`: {}", run.stderr);
    run.stdout().lines().map(str::to_string).collect()
}

/// The generated completions of the Rust programs complete their verbs,
/// and the options of each verb (which clap_complete's own script, for a
/// name with a hyphen, does not: see `shared::manual`).
#[test]
fn echo_client_and_echo_server_complete_verbs_and_options() {
    assert_eq!(bash_completes(CLIENT, "echo-client ch"), ["check"]);
    assert_eq!(bash_completes(CLIENT, "echo-client check --js"), ["--json"]);
    assert_eq!(
        bash_completes(CLIENT, "echo-client bench --war"),
        ["--warmup"]
    );
    assert_eq!(
        bash_completes(SERVER, "echo-server --check-c"),
        ["--check-config"]
    );
}

/// echo-deploy's completion offers exactly the verbs and options its
/// `--help` lists (read here from the help text, independently of the
/// script's own reading), and echo-deploy accepts each of them.
#[test]
fn echo_deploy_completes_what_its_help_lists_and_it_accepts() {
    let usage = help(DEPLOY, &["--help"]);
    let mut verbs = Vec::new();
    let mut options = Vec::new();
    let mut section = "";
    for line in usage.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
        } else if let Some(item) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            let term = item.split("  ").next().unwrap();
            if section == "Verbs:" {
                verbs.extend(
                    term.split(" | ")
                        .map(|v| v.split(' ').next().unwrap().to_string()),
                );
            } else {
                options.extend(
                    term.split([',', ' '])
                        .filter(|word| word.starts_with('-'))
                        .map(str::to_string),
                );
            }
        }
    }
    assert!(verbs.contains(&"mremoteng".to_string()), "{verbs:?}");
    assert_eq!(bash_completes(DEPLOY, "echo-deploy "), verbs);
    assert_eq!(
        bash_completes(DEPLOY, "echo-deploy --"),
        options
            .iter()
            .filter(|o| o.starts_with("--"))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        bash_completes(DEPLOY, "echo-deploy --transport "),
        ["openssh", "putty"]
    );
    assert_eq!(
        bash_completes(DEPLOY, "echo-deploy --host h1 st"),
        ["start", "stop", "status"]
    );
    assert_eq!(
        bash_completes(DEPLOY, "echo-deploy --host h1 uninstall --p"),
        ["--purge"]
    );
    assert_eq!(
        bash_completes(DEPLOY, "echo-deploy --host h1 config p"),
        ["push"]
    );

    // echo-deploy checks the verb before --jobs: a usage error about
    // --jobs means the verb was taken.
    let refusal = |args: &[&str]| {
        let mut deploy = Command::new(DEPLOY);
        deploy.args(args);
        finish_with_patience(deploy, b"").stderr
    };
    for verb in &verbs {
        let stderr = refusal(&["--jobs", "0", verb]);
        assert!(!stderr.contains("unknown verb"), "{verb}: {stderr}");
    }
    assert!(refusal(&["--jobs", "0", "frob"]).contains("unknown verb 'frob'"));
    for option in &options {
        let stderr = refusal(&[option, "value", "--jobs", "0", "status"]);
        assert!(!stderr.contains("unknown option"), "{option}: {stderr}");
    }
}

/// Runs `shell` with `args`; a missing shell fails loudly (scripts/test.sh
/// installs zsh and fish).
fn run_shell(shell: &str, args: &[&str]) -> String {
    let mut command = Command::new(shell);
    command.args(args);
    let run = finish_with_patience(command, b"");
    assert_eq!(run.code, 0, "{shell} {args:?}: {}", run.stderr);
    run.stdout()
}

/// The zsh completions of all three programs parse, and fish, given each
/// program's completion, completes as bash does.
#[test]
fn the_zsh_and_fish_completions_work() {
    for program in [SERVER, CLIENT, DEPLOY] {
        let script = run_shell(program, &["--generate", "complete-zsh"]);
        let file = TestDir::new();
        let path = file.write("completion.zsh", &script);
        run_shell("zsh", &["-n", path.to_str().unwrap()]);
    }
    let fish_completes = |program: &str, line: &str| -> Vec<String> {
        let script =
            format!("\"$argv[1]\" --generate complete-fish | source; complete -C '{line}'");
        run_shell("fish", &["-c", &script, program])
            .lines()
            .map(|line| line.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(fish_completes(CLIENT, "echo-client ch"), ["check"]);
    assert_eq!(fish_completes(CLIENT, "echo-client check --js"), ["--json"]);
    assert_eq!(
        fish_completes(SERVER, "echo-server --check-c"),
        ["--check-config"]
    );
    assert_eq!(
        fish_completes(DEPLOY, "echo-deploy --host h1 st"),
        ["start", "status", "stop"]
    );
    assert_eq!(
        fish_completes(DEPLOY, "echo-deploy --transport "),
        ["openssh", "putty"]
    );
}
