//! One grammar for the hosts file: `deploy/echo-deploy` (bash) accepts and
//! refuses exactly the lines of `tests/data/inventory-lines.json` that
//! echo-client's parser does (whose unit test reads the same table), and
//! reads the same SSH destination from each. Nothing here connects
//! anywhere: `mremoteng` only parses, and a refused file stops either tool
//! before it resolves a name.

#![cfg(unix)]

mod common;

use std::process::Command;

use common::{CLIENT, DEPLOY, Finished, TestDir, finish_with_patience};
use serde_json::Value;

fn table() -> Value {
    let text = include_str!("data/inventory-lines.json");
    serde_json::from_str(text).unwrap()
}

/// A directory holding `hosts` (the given text) and the config file that
/// the table's `config=` lines name.
fn inventory(text: &str) -> TestDir {
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.path().join("hosts.d")).unwrap();
    dir.write("hosts.d/web5.toml", "[server]\nport = 7\n");
    dir.write("hosts", text);
    dir
}

fn deploy_mremoteng(dir: &TestDir) -> Finished {
    let mut command = Command::new(DEPLOY);
    command
        .current_dir(dir.path())
        .args(["--hosts", "hosts", "mremoteng"]);
    finish_with_patience(command, b"")
}

/// (Hostname, Port, Username) of every connection in an mRemoteNG file.
fn connections(xml: &str) -> Vec<(String, u64, String)> {
    let script = "import sys, xml.etree.ElementTree as E\n\
         for n in E.fromstring(sys.stdin.read()).iter('Node'):\n\
         \x20   if n.get('Type') == 'Connection':\n\
         \x20       print(n.get('Hostname'), n.get('Port'), n.get('Username'), sep='\\t')";
    let mut command = Command::new("python3");
    command.args(["-c", script]);
    let parsed = finish_with_patience(command, xml.as_bytes());
    assert_eq!(parsed.code, 0, "{}\n{xml}", parsed.stderr);
    parsed
        .stdout()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (
                fields[0].to_string(),
                fields[1].parse().unwrap(),
                fields[2].to_string(),
            )
        })
        .collect()
}

/// What the table says echo-deploy must hand to ssh for an accepted row.
fn expected(row: &Value) -> (String, u64, String) {
    (
        row[2].as_str().unwrap().to_string(),
        row[3].as_u64().unwrap_or(22),
        row[1].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn echo_deploy_reads_every_accepted_line_as_echo_client_does() {
    for row in table()["accepted"].as_array().unwrap() {
        let line = row[0].as_str().unwrap();
        let dir = inventory(&format!("# the fleet\n{line}\n"));
        let listed = deploy_mremoteng(&dir);
        assert_eq!(listed.code, 0, "{line:?}: {}", listed.stderr);
        assert_eq!(connections(&listed.stdout()), [expected(row)], "{line:?}");
    }
}

#[test]
fn a_file_written_on_windows_reads_the_same() {
    let table = table();
    let rows = table["accepted"].as_array().unwrap();
    let text: String = rows
        .iter()
        .map(|row| format!("{}\r\n", row[0].as_str().unwrap().trim_end_matches('\r')))
        .collect();
    let listed = deploy_mremoteng(&inventory(&text));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let want: Vec<_> = rows.iter().map(expected).collect();
    assert_eq!(connections(&listed.stdout()), want);
}

#[test]
fn both_tools_refuse_every_rejected_line_naming_it() {
    for row in table()["rejected"].as_array().unwrap() {
        let line = row.as_str().unwrap();
        let dir = inventory(&format!("# the fleet\nweb0\n{line}\n"));
        let listed = deploy_mremoteng(&dir);
        assert_eq!(listed.code, 64, "echo-deploy accepted {line:?}");
        assert!(
            listed.stderr.contains("hosts, line 3: "),
            "{line:?}: {}",
            listed.stderr
        );
        let mut command = Command::new(CLIENT);
        command
            .current_dir(dir.path())
            .args(["check", "--hosts", "hosts"]);
        let checked = finish_with_patience(command, b"");
        assert_eq!(checked.code, 64, "echo-client accepted {line:?}");
        assert!(
            checked.stderr.contains("hosts, line 3: "),
            "{line:?}: {}",
            checked.stderr
        );
    }
}
