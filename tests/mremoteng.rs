//! `deploy/echo-deploy mremoteng` writes a connections file mRemoteNG loads
//! (File > Open and File > Import, 1.76 to the development branch) without
//! asking for a password, with every host an SSH2 session on its own user
//! and port.
//!
//! mRemoteNG is a Windows .NET program, so the file is checked against what
//! mRemoteNG itself checks: its own schema (`tests/data/
//! mremoteng_confcons_v2_6.xsd`, validated by `xmllint`), and its reader,
//! followed step by step in `tests/mremoteng_file.py` (every attribute 1.76
//! reads, and the root's `Protected` value decrypted with the default
//! password to the known plain text). Needs `xmllint` and the `cryptography`
//! package in `target/ansible-venv`, both installed by `scripts/test.sh`.

#![cfg(unix)]

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use common::{DEPLOY, Finished, TestDir, finish_with_patience, free_port};
use serde_json::Value;

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/mremoteng_confcons_v2_6.xsd"
);
const READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mremoteng_file.py");
const PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/ansible-venv/bin/python3"
);

/// `Protected` values from mRemoteNG's own test files (mRemoteNGTests/
/// Resources/confCons_v2_6.xml and confCons_v2_6_5k-iterations.xml, both
/// under the default password): the reader must decrypt what mRemoteNG
/// wrote, or it proves nothing about what echo-deploy writes.
const MREMOTENG_OWN_PROTECTED: [(&str, &str); 2] = [
    (
        "8LmIO3+MWBY0zTmfjfOEdCGxhTAwnlohb1veTGNZFt6lAYvY2UOzWyjVzkx6V93smpbP0ZOuexN15u7rvwJEjawC",
        "1000",
    ),
    (
        "Z1IOT8h7neJ5V7es5Iv63A2WsDG6QWl10F/Rb9ljKxvCseEITty1BfMNgiaVPfm7w61uabQKqu2waDCXUpLo1OZW",
        "5000",
    ),
];

/// `echo-deploy ARGS mremoteng` in `dir`, with `dir` as its home (where
/// PuTTY keeps saved sessions); its output must be a success.
fn mremoteng(dir: &TestDir, args: &[&str]) -> String {
    let mut command = Command::new(DEPLOY);
    command.current_dir(dir.path()).args(args).arg("mremoteng");
    in_home(&mut command, dir, &[]);
    let finished = finish_with_patience(command, b"");
    assert_eq!(finished.code, 0, "{args:?}: {}", finished.stderr);
    finished.stdout()
}

fn xmllint(file: &Path) -> Finished {
    let mut command = Command::new("xmllint");
    command.args(["--noout", "--schema", SCHEMA]).arg(file);
    finish_with_patience(command, b"")
}

fn reader(args: &[&str]) -> Finished {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: scripts/test.sh creates it (install_ansible)"
    );
    let mut command = Command::new(PYTHON);
    command.arg(READER).args(args);
    finish_with_patience(command, b"")
}

/// The connections of `xml` as mRemoteNG reads them, once the file has
/// passed mRemoteNG's schema and its reader's checks.
fn loaded(dir: &TestDir, xml: &str) -> Vec<Value> {
    let file = dir.write("connections.xml", xml);
    let validated = xmllint(&file);
    assert_eq!(validated.code, 0, "{}\n{xml}", validated.stderr);
    let read = reader(&["read", file.to_str().unwrap()]);
    assert_eq!(read.code, 0, "{}\n{xml}", read.stderr);
    serde_json::from_str::<Value>(&read.stdout())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// (Name, Hostname, Port, Username, PuttySession) of every connection, after
/// checking each is an SSH2 session with a panel.
fn sessions(connections: &[Value]) -> Vec<(String, String, u64, String, String)> {
    connections
        .iter()
        .map(|connection| {
            assert_eq!(connection["protocol"], "SSH2", "{connection}");
            assert_eq!(connection["panel"], "General", "{connection}");
            let text = |key: &str| connection[key].as_str().unwrap().to_string();
            (
                text("name"),
                text("hostname"),
                connection["port"].as_u64().unwrap(),
                text("username"),
                text("putty_session"),
            )
        })
        .collect()
}

fn session(name: &str, host: &str, port: u64, user: &str) -> (String, String, u64, String, String) {
    (
        name.to_string(),
        host.to_string(),
        port,
        user.to_string(),
        "Default Settings".to_string(),
    )
}

#[test]
fn every_host_of_an_inventory_loads_as_an_ssh2_session_with_its_user_and_port() {
    let cases: [(&str, Vec<_>); 3] = [
        (
            "web1\nadmin@web2:2222 echo_port=7\n# gone\n",
            vec![
                session("web1", "web1", 22, ""),
                session("admin@web2:2222", "web2", 2222, "admin"),
            ],
        ),
        (
            "deploy@192.0.2.10:22022\n[2001:db8::7]:2200\n2001:db8::8\nops@[2001:db8::9]\r\n",
            vec![
                session("deploy@192.0.2.10:22022", "192.0.2.10", 22022, "deploy"),
                session("[2001:db8::7]:2200", "2001:db8::7", 2200, ""),
                session("2001:db8::8", "2001:db8::8", 22, ""),
                session("ops@[2001:db8::9]", "2001:db8::9", 22, "ops"),
            ],
        ),
        (
            "# nothing but\n\nbastion.example.com\n",
            vec![session(
                "bastion.example.com",
                "bastion.example.com",
                22,
                "",
            )],
        ),
    ];
    for (inventory, want) in cases {
        let dir = TestDir::new();
        dir.write("hosts", inventory);
        let xml = mremoteng(&dir, &["--hosts", "hosts"]);
        assert_eq!(sessions(&loaded(&dir, &xml)), want, "{inventory:?}");
    }
}

#[test]
fn every_line_the_inventory_grammar_accepts_makes_a_loadable_file() {
    let table: Value = serde_json::from_str(include_str!("data/inventory-lines.json")).unwrap();
    let lines: Vec<&str> = table["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap())
        .collect();
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.path().join("hosts.d")).unwrap();
    dir.write("hosts.d/web5.toml", "[server]\nport = 7\n");
    dir.write("hosts", &(lines.join("\n") + "\n"));
    let xml = mremoteng(&dir, &["--hosts", "hosts"]);
    assert_eq!(loaded(&dir, &xml).len(), lines.len(), "{xml}");
}

#[test]
fn a_host_key_is_named_in_the_description_as_mremoteng_has_no_field_for_it() {
    let key = "SHA256:Vb1iOXk3zQ2mL8m3lS9r7Zt0cPq4x6Yb2Wd5Ue8Fa1A";
    let dir = TestDir::new();
    dir.write("hosts", &format!("admin@web1 hostkey={key}\nweb2\n"));
    let connections = loaded(&dir, &mremoteng(&dir, &["--hosts", "hosts"]));
    let descriptions: Vec<&str> = connections
        .iter()
        .map(|connection| connection["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            format!("echo-server host (echo-deploy); host key {key}").as_str(),
            "echo-server host (echo-deploy)"
        ]
    );
}

/// The session "Web 9 (prod)", and its file's name (PuTTY on Unix writes
/// each byte but letters, digits and "+-.@_" as %XX).
const SESSION_NAME: &str = "Web 9 (prod)";
const SESSION_FILE_NAME: &str = "Web%209%20%28prod%29";

/// The variables that move PuTTY's saved sessions (unix/storage.c's
/// make_filename()): cleared for every test, so that only what a case sets
/// counts.
const PUTTY_LOCATION_VARIABLES: [&str; 3] = ["PUTTYSESSIONS", "PUTTYDIR", "XDG_CONFIG_HOME"];

/// `command` with `dir` as its home, and `variables` (names, and paths
/// under `dir`) as the only PuTTY location variables.
fn in_home<'c>(
    command: &'c mut Command,
    dir: &TestDir,
    variables: &[(&str, &str)],
) -> &'c mut Command {
    command.env("HOME", dir.path());
    for name in PUTTY_LOCATION_VARIABLES {
        command.env_remove(name);
    }
    for (name, relative) in variables {
        command.env(name, dir.path().join(relative));
    }
    command
}

/// One way a home can hold PuTTY's files: the directories that exist, the
/// variables set, the directory the saved session is written to, and
/// whether PuTTY finds it there.
struct SessionLayout {
    what: &'static str,
    directories: &'static [&'static str],
    variables: &'static [(&'static str, &'static str)],
    sessions: &'static str,
    found: bool,
}

/// PuTTY's search order on Unix: $PUTTYSESSIONS, $PUTTYDIR/sessions, then
/// the first existing one of $XDG_CONFIG_HOME/putty (~/.config/putty
/// without it) and ~/.putty.
const SESSION_LAYOUTS: [SessionLayout; 6] = [
    SessionLayout {
        what: "~/.putty alone",
        directories: &[],
        variables: &[],
        sessions: ".putty/sessions",
        found: true,
    },
    SessionLayout {
        what: "~/.config/putty alone",
        directories: &[],
        variables: &[],
        sessions: ".config/putty/sessions",
        found: true,
    },
    SessionLayout {
        what: "~/.putty, hidden by an existing ~/.config/putty",
        directories: &[".config/putty"],
        variables: &[],
        sessions: ".putty/sessions",
        found: false,
    },
    SessionLayout {
        what: "$XDG_CONFIG_HOME/putty before ~/.putty",
        directories: &[".putty/sessions"],
        variables: &[("XDG_CONFIG_HOME", "xdg")],
        sessions: "xdg/putty/sessions",
        found: true,
    },
    SessionLayout {
        what: "$PUTTYDIR/sessions before ~/.config/putty",
        directories: &[".config/putty/sessions"],
        variables: &[("PUTTYDIR", "puttydir")],
        sessions: "puttydir/sessions",
        found: true,
    },
    SessionLayout {
        what: "$PUTTYSESSIONS before $PUTTYDIR",
        directories: &["puttydir/sessions"],
        variables: &[("PUTTYSESSIONS", "saved"), ("PUTTYDIR", "puttydir")],
        sessions: "saved",
        found: true,
    },
];

#[test]
fn echo_deploy_finds_a_saved_session_exactly_where_plink_itself_does() {
    for layout in SESSION_LAYOUTS {
        let dir = TestDir::new();
        for directory in layout.directories.iter().chain([&layout.sessions]) {
            std::fs::create_dir_all(dir.path().join(directory)).unwrap();
        }
        let port = free_port();
        dir.write(
            &format!("{}/{SESSION_FILE_NAME}", layout.sessions),
            &format!("HostName=127.0.0.1\nPortNumber={port}\nProtocol=ssh\n"),
        );
        let mut plink = Command::new("plink");
        in_home(&mut plink, &dir, layout.variables).args(["-batch", SESSION_NAME, "true"]);
        let finished = finish_with_patience(plink, b"");
        // Refused by the session's closed loopback port: the name was a
        // session, not a host name (which does not resolve).
        assert_eq!(
            finished.stderr.contains("Connection refused"),
            layout.found,
            "plink, {}: {}",
            layout.what,
            finished.stderr
        );
        let mut deploy = Command::new(DEPLOY);
        in_home(&mut deploy, &dir, layout.variables).args([
            "--transport",
            "putty",
            "--host",
            SESSION_NAME,
            "mremoteng",
        ]);
        let finished = finish_with_patience(deploy, b"");
        assert_eq!(finished.code, 0, "{}: {}", layout.what, finished.stderr);
        let want = if layout.found {
            (
                SESSION_NAME.to_string(),
                "127.0.0.1".to_string(),
                u64::from(port),
                String::new(),
                SESSION_NAME.to_string(),
            )
        } else {
            session(SESSION_NAME, SESSION_NAME, 22, "")
        };
        assert_eq!(
            sessions(&loaded(&dir, &finished.stdout())),
            [want],
            "echo-deploy, {}",
            layout.what
        );
    }
}

#[test]
fn a_putty_saved_session_carries_over_with_its_host_user_and_port() {
    let dir = TestDir::new();
    std::fs::create_dir_all(dir.path().join(".putty/sessions")).unwrap();
    dir.write(
        &format!(".putty/sessions/{SESSION_FILE_NAME}"),
        "HostName=web9.example.com\nPortNumber=2022\nUserName=deployer\nProtocol=ssh\n",
    );
    let args = [
        "--transport",
        "putty",
        "--host",
        SESSION_NAME,
        "--host",
        "web10",
    ];
    let connections = loaded(&dir, &mremoteng(&dir, &args));
    assert_eq!(
        sessions(&connections),
        [
            (
                SESSION_NAME.to_string(),
                "web9.example.com".to_string(),
                2022,
                "deployer".to_string(),
                SESSION_NAME.to_string()
            ),
            session("web10", "web10", 22, ""),
        ]
    );
    // Over OpenSSH the name is an ssh host (or ~/.ssh/config alias) instead.
    let connections = loaded(&dir, &mremoteng(&dir, &["--host", SESSION_NAME]));
    assert_eq!(
        sessions(&connections),
        [session(SESSION_NAME, SESSION_NAME, 22, "")]
    );
}

#[test]
fn a_saved_session_that_cannot_be_written_is_refused_before_any_output() {
    for (session, problem) in [
        (
            &b"HostName=web9\x01.example\n"[..],
            "a control character in its HostName",
        ),
        (
            b"HostName=web9\nPortNumber=70000\n",
            "PortNumber '70000' is not a port",
        ),
        // Latin-1, which no XML parser takes for UTF-8.
        (
            b"HostName=web9\nUserName=d\xe9ploy\n",
            "its HostName or UserName is not UTF-8",
        ),
    ] {
        let dir = TestDir::new();
        std::fs::create_dir_all(dir.path().join(".putty/sessions")).unwrap();
        let file = dir
            .path()
            .join(format!(".putty/sessions/{SESSION_FILE_NAME}"));
        std::fs::write(file, session).unwrap();
        let mut command = Command::new(DEPLOY);
        in_home(&mut command, &dir, &[]).args([
            "--transport",
            "putty",
            "--host",
            SESSION_NAME,
            "mremoteng",
        ]);
        let finished = finish_with_patience(command, b"");
        assert_eq!(finished.code, 64, "{session:?}: {}", finished.stderr);
        assert!(finished.stderr.contains(problem), "{}", finished.stderr);
        assert_eq!(finished.stdout(), "", "{session:?}");
    }
}

#[test]
fn hostile_text_is_escaped_and_reads_back_unchanged() {
    let dir = TestDir::new();
    let hostile = r#"a"b'c<d>e&f&amp;g"#;
    std::fs::create_dir_all(dir.path().join(".putty/sessions")).unwrap();
    dir.write(
        ".putty/sessions/s%22%3C%26",
        "HostName=h\"<&'>.example\nPortNumber=22\nUserName=u&<\"x\n",
    );
    let args = ["--transport", "putty", "--host", hostile, "--host", "s\"<&"];
    let connections = loaded(&dir, &mremoteng(&dir, &args));
    assert_eq!(
        sessions(&connections),
        [
            session(hostile, hostile, 22, ""),
            (
                "s\"<&".to_string(),
                "h\"<&'>.example".to_string(),
                22,
                "u&<\"x".to_string(),
                "s\"<&".to_string()
            ),
        ]
    );
}

/// What no mRemoteNG file can hold is refused before any output: text
/// that would end the attribute's line, a port out of range (the schema's
/// `xs:int` would take it), and bytes that are not UTF-8 (the file would
/// not be well-formed XML).
#[test]
fn a_destination_that_cannot_be_written_is_refused() {
    for (host, problem) in [
        (&b"web1\nweb2"[..], "control characters"),
        (b"web1\r", "control characters"),
        (b"web\t1", "control characters"),
        (b"web1:99999", "the port must be a number from 1 to 65535"),
        (b"admin@web1:0", "the port must be a number from 1 to 65535"),
        (b"[::1]:70000", "the port must be a number from 1 to 65535"),
        (b"web\xff", "not UTF-8"),
        (b"d\xe9ploy@web1", "not UTF-8"),
    ] {
        let mut command = Command::new(DEPLOY);
        command
            .arg("--host")
            .arg(OsStr::from_bytes(host))
            .arg("mremoteng");
        let finished = finish_with_patience(command, b"");
        let host = String::from_utf8_lossy(host);
        assert_eq!(finished.code, 64, "{host:?}: {}", finished.stderr);
        assert!(
            finished.stderr.contains(problem),
            "{host:?}: {}",
            finished.stderr
        );
        assert_eq!(finished.stdout(), "", "{host:?}");
    }
}

#[test]
fn the_protected_value_decrypts_with_the_default_password_as_mremoteng_decrypts_it() {
    for (protected, iterations) in MREMOTENG_OWN_PROTECTED {
        let decrypted = reader(&["decrypt", protected, iterations, "mR3m"]);
        assert_eq!(decrypted.code, 0, "{}", decrypted.stderr);
        assert_eq!(decrypted.stdout().trim_end(), "ThisIsNotProtected");
        let wrong = reader(&["decrypt", protected, iterations, "mR3M"]);
        assert_ne!(
            wrong.code,
            0,
            "a wrong password decrypted: {}",
            wrong.stdout()
        );
    }
    let dir = TestDir::new();
    let xml = mremoteng(&dir, &["--host", "web1"]);
    let root = root_attribute(&xml, "Protected");
    let iterations = root_attribute(&xml, "KdfIterations");
    let decrypted = reader(&["decrypt", &root, &iterations, "mR3m"]);
    assert_eq!(decrypted.code, 0, "{}", decrypted.stderr);
    assert_eq!(decrypted.stdout().trim_end(), "ThisIsNotProtected");
}

/// The file without one attribute that mRemoteNG needs fails both checks:
/// they can fail, so their passing means something.
#[test]
fn a_file_without_protected_or_panel_fails_the_schema_and_the_reader() {
    let dir = TestDir::new();
    let xml = mremoteng(&dir, &["--host", "web1"]);
    let protected = format!(" Protected=\"{}\"", root_attribute(&xml, "Protected"));
    for (what, broken) in [
        ("Protected", xml.replacen(&protected, "", 1)),
        ("Panel", xml.replace(" Panel=\"General\"", "")),
        ("the declaration", xml.replacen("utf-8", "UTF-8", 1)),
    ] {
        assert_ne!(broken, xml, "{what}");
        let file = dir.write("broken.xml", &broken);
        let read = reader(&["read", file.to_str().unwrap()]);
        assert_ne!(read.code, 0, "the reader took a file without {what}");
        if what != "the declaration" {
            let validated = xmllint(&file);
            assert_ne!(validated.code, 0, "the schema took a file without {what}");
        }
    }
}

/// One attribute of the root element, read from the text itself.
fn root_attribute(xml: &str, name: &str) -> String {
    let root = &xml[xml.find("<mrng:Connections").unwrap()..];
    let root = &root[..root.find('>').unwrap()];
    let start = root.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    root[start..][..root[start..].find('"').unwrap()].to_string()
}
