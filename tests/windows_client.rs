//! The Windows client, run here: `echo-client.exe`, cross-built for
//! `x86_64-pc-windows-gnu` with Debian's mingw-w64, run under Wine against
//! a Linux `echo-server` on loopback. Every verb, and the exit codes that
//! monitoring on Windows acts on, go through the Windows build of the
//! client: its socket code (mio on Winsock), name resolution, and standard
//! input and output as binary pipes.
//!
//! What Wine cannot tell about real Windows: Wine turns Winsock calls into
//! Linux socket calls, so Windows' own TCP stack (its retries of a refused
//! connection, its buffer sizes, its timers) never runs here, and latency
//! and throughput under Wine say nothing about Windows. The GitHub Actions
//! job `windows-client` (.github/workflows/ci.yml) runs the client on real
//! Windows for that.
//!
//! `./scripts/test.sh` builds what this test runs, before `cargo test`
//! (see `build_windows_client` there): the exe, and a stand-in for a DLL
//! that Debian 12's Wine lacks (`tests/support/wine/bcryptprimitives.c`,
//! which says why). Behind the `host-tests` feature, as it needs mingw-w64
//! and Wine.

#![cfg(unix)]

mod common;

use std::any::Any;
use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::tls::{Foreign, Pki};
use common::{Finished, Server, finish_with_patience, finish_within, random_bytes};
use echo_service::shared::exit_code::{CERTIFICATE, OK, TIMED_OUT, UNREACHABLE, USAGE};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Built by `cargo build --target x86_64-pc-windows-gnu --bin echo-client`
/// (a debug build: the release profile's link-time optimisation takes
/// longer, and the test measures nothing).
const EXE: &str = "target/x86_64-pc-windows-gnu/debug/echo-client.exe";

/// Built by scripts/test.sh from `SHIM_SOURCE` with mingw-w64.
const SHIM: &str = "target/wine/bcryptprimitives.dll";
const SHIM_SOURCE: &str = "tests/support/wine/bcryptprimitives.c";

/// Wine's 64-bit loader: the `wine` wrapper looks for a 32-bit one first,
/// which a 64-bit-only install lacks.
const WINE: &str = "/usr/lib/wine/wine64";

/// What the test runs from: the exe and the stand-in DLL side by side
/// (Wine looks for a DLL in the exe's directory), and the Wine prefix
/// (Wine's `C:` drive and registry). Both are kept in `target/wine/`
/// between runs: making a prefix takes seconds and copies some 700 MB of
/// Wine's DLLs into it.
struct Wine {
    exe: PathBuf,
    prefix: PathBuf,
}

impl Wine {
    /// Ready once per test run: the exe and the DLL copied beside each
    /// other, and the prefix made, by a first start of the exe. A failed
    /// start is kept too (see `made_once`).
    fn get() -> &'static Wine {
        static WINE_READY: OnceLock<Result<Wine, String>> = OnceLock::new();
        made_once(&WINE_READY, Wine::start)
    }

    fn start() -> Wine {
        let exe = built(EXE, &exe_sources());
        let shim = built(SHIM, &[Path::new(ROOT).join(SHIM_SOURCE)]);
        let bin = Path::new(ROOT).join("target/wine/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(&exe, bin.join("echo-client.exe")).unwrap();
        std::fs::copy(&shim, bin.join("bcryptprimitives.dll")).unwrap();
        let wine = Wine {
            exe: bin.join("echo-client.exe"),
            prefix: Path::new(ROOT).join("target/wine/prefix"),
        };
        // The first start makes the prefix, which takes far longer than
        // anything else here.
        let started = finish_within(wine.command(&["--version"]), b"", Duration::from_secs(300));
        assert!(
            started.code == OK && started.stdout().starts_with("echo-client "),
            "echo-client.exe does not start under Wine (exit {}; 53 is a DLL not \
             found: see {SHIM_SOURCE}): {}{}",
            started.code,
            started.stdout(),
            started.stderr
        );
        wine
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(WINE);
        command
            .arg(&self.exe)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            // Wine's own diagnostics off: the client's standard error
            // stays the client's.
            .env("WINEDEBUG", "-all")
            // No offer to install Wine's .NET and HTML engines into a new
            // prefix: nothing here uses them.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        command
    }
}

/// What `make` returns, made once for every caller of `cell`; if `make`
/// panics, its message is kept and every caller panics with it at once.
/// Otherwise each test would start Wine again after a failed start, each
/// waiting up to 300 s for the same failure.
fn made_once<T>(cell: &OnceLock<Result<T, String>>, make: impl FnOnce() -> T) -> &T {
    let made = cell.get_or_init(|| {
        std::panic::catch_unwind(AssertUnwindSafe(make))
            .map_err(|panic| panic_message(panic.as_ref()).to_string())
    });
    match made {
        Ok(made) => made,
        Err(message) => panic!("failed before, in the first test to start it: {message}"),
    }
}

/// The text a panic was raised with (`panic!` with arguments gives a
/// `String`, without them a `&str`).
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
}

/// How to make what this test runs, for its failure messages.
const REBUILD: &str =
    "./scripts/test.sh builds it before the tests (see build_windows_client there)";

/// The path of a file scripts/test.sh builds, which must exist and be
/// newer than each of `sources`: a test of an old build would prove
/// nothing about the code.
fn built(relative: &str, sources: &[PathBuf]) -> PathBuf {
    let path = Path::new(ROOT).join(relative);
    let built_at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {REBUILD}", path.display()));
    for source in sources {
        let changed = std::fs::metadata(source).and_then(|m| m.modified());
        assert!(
            changed.is_ok_and(|changed| changed <= built_at),
            "{} is older than {} (or that is gone): {REBUILD}",
            path.display(),
            source.display()
        );
    }
    path
}

/// The files the exe was built from, as cargo's dep-info file beside it
/// (`echo-client.d`, one line `EXE: SOURCE...`) lists them: the files
/// whose change makes cargo build it again.
fn exe_sources() -> Vec<PathBuf> {
    let dep_info = Path::new(ROOT).join(EXE).with_extension("d");
    let text = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {REBUILD}", dep_info.display()));
    let (_, sources) = text
        .lines()
        .next()
        .and_then(|line| line.split_once(": "))
        .unwrap_or_else(|| panic!("{} lists no sources", dep_info.display()));
    sources.split_whitespace().map(PathBuf::from).collect()
}

fn client(args: &[&str]) -> Finished {
    client_with_input(args, b"")
}

fn client_with_input(args: &[&str], input: &[u8]) -> Finished {
    finish_with_patience(Wine::get().command(args), input)
}

fn json(run: &Finished) -> Value {
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", run.stdout(), run.stderr))
}

#[test]
fn send_prints_the_echo() {
    let server = Server::start("");
    let run = client(&["send", "-t", &server.addr().to_string(), "Hello,", "world"]);
    assert_eq!(
        (run.code, run.stdout()),
        (OK, "Hello, world".to_string()),
        "{}",
        run.stderr
    );
}

#[test]
fn check_a_healthy_server_as_text_and_as_json() {
    let server = Server::start("");
    let target = server.addr().to_string();
    let run = client(&["check", &target, "-n", "3", "-i", "10ms"]);
    assert_eq!(run.code, OK, "{}{}", run.stdout(), run.stderr);
    assert!(
        run.stdout().starts_with(&format!(
            "{target}: healthy, 3/3 echoes of 64 bytes over TCP, rtt"
        )),
        "{}",
        run.stdout()
    );

    let run = client(&["check", &target, "--json"]);
    assert_eq!(run.code, OK, "{}", run.stderr);
    let report = json(&run);
    assert_eq!(report["exit_code"], OK, "{report}");
    assert_eq!(report["targets"][0]["verdict"], "healthy", "{report}");
    assert_eq!(report["targets"][0]["address"], target.as_str(), "{report}");
}

#[test]
fn check_a_refused_port_or_an_unknown_name_exits_unreachable() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for (target, why) in [
        (closed.as_str(), "refused"),
        ("no-such-host.invalid:7", "cannot resolve"),
    ] {
        let run = client(&["check", target]);
        assert_eq!(run.code, UNREACHABLE, "{}{}", run.stdout(), run.stderr);
        let line = run.stdout();
        assert!(
            line.starts_with(&format!("{target}: unreachable")) && line.contains(why),
            "{line}"
        );
    }
}

#[test]
fn check_a_server_that_never_answers_exits_timed_out() {
    // Listening but never accepting: the kernel completes the handshake and
    // takes the probe into the backlog, and no echo ever comes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let run = client(&["check", &target, "--timeout", "500ms"]);
    assert_eq!(run.code, TIMED_OUT, "{}{}", run.stdout(), run.stderr);
    assert!(
        run.stdout().starts_with(&format!("{target}: timeout")),
        "{}",
        run.stdout()
    );
    drop(listener);
}

#[test]
fn check_by_name_tries_each_address_of_localhost() {
    // The server is on 127.0.0.1 only: if Wine's resolver gives ::1 first,
    // that one is refused and the next is tried.
    let server = Server::start("");
    let port = server.addr().port();
    let run = client(&["check", &format!("localhost:{port}"), "--json"]);
    assert_eq!(run.code, OK, "{}{}", run.stdout(), run.stderr);
    let report = json(&run);
    assert_eq!(report["targets"][0]["target"], format!("localhost:{port}"));
    assert_eq!(
        report["targets"][0]["address"],
        SocketAddr::from(([127, 0, 0, 1], port)).to_string(),
        "{report}"
    );
}

#[test]
fn bench_reports_every_echo_verified() {
    let server = Server::start("");
    let run = client(&[
        "bench",
        &server.addr().to_string(),
        "-c",
        "4",
        "-d",
        "2s",
        "--json",
    ]);
    assert_eq!(run.code, OK, "{}{}", run.stdout(), run.stderr);
    let report = json(&run);
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    for error in ["connect", "io", "closed", "timeout", "mismatch"] {
        assert_eq!(report["errors"][error], 0, "{error}: {report}");
    }
    let latency = &report["latency_ms"];
    assert!(
        latency["p50"].as_f64().unwrap() <= latency["max"].as_f64().unwrap(),
        "{report}"
    );
}

#[test]
fn ten_mebibytes_through_pipe_come_back_byte_for_byte() {
    let server = Server::start("");
    let file = random_bytes(10 << 20, 18);
    let run = client_with_input(&["pipe", &server.addr().to_string()], &file);
    assert_eq!(run.code, OK, "{}", run.stderr);
    assert_eq!(run.stdout.len(), file.len());
    assert!(run.stdout == file, "the piped file came back different");
}

/// rustls with ring on Winsock and mio's IOCP: every TLS verb against
/// socat, the CA given as a file; the system store (Windows' own, through
/// Wine's crypt32) does not hold the test CA, so without it the
/// certificate is refused.
#[test]
fn tls_verbs_through_socat() {
    let pki = Pki::new();
    let socat = Foreign::socat(&pki, "server", "verify=0");
    let target = socat.target();
    let ca = pki.arg("ca.pem");
    let tls = ["--tls", "--ca", &ca];
    let run = client(&[&["send", "-t", &target][..], &tls, &["hello"]].concat());
    assert_eq!(
        (run.code, run.stdout()),
        (OK, "hello".to_string()),
        "{}",
        run.stderr
    );
    let run = client(&[&["check", &target, "--json"][..], &tls].concat());
    assert_eq!(run.code, OK, "{}{}", run.stdout(), run.stderr);
    let session = &json(&run)["targets"][0]["tls"];
    assert_eq!(session["certificate_not_after"], pki.not_after("server"));
    let file = random_bytes(1 << 20, 19);
    let run = client_with_input(&[&["pipe", &target][..], &tls].concat(), &file);
    assert_eq!(run.code, OK, "{}", run.stderr);
    assert!(run.stdout == file, "the piped file came back different");
    let run = client(
        &[
            &["bench", &target, "-d", "1s", "-c", "4", "--json"][..],
            &tls,
        ]
        .concat(),
    );
    assert_eq!(run.code, OK, "{}{}", run.stdout(), run.stderr);
    assert!(
        json(&run)["requests"].as_u64().unwrap() > 0,
        "{}",
        run.stdout()
    );
    let run = client(&["send", "-t", &target, "--tls", "hello"]);
    assert_eq!(run.code, CERTIFICATE, "{}", run.stderr);
    assert!(run.stderr.contains("not signed by a CA"), "{}", run.stderr);
}

#[test]
fn a_bad_command_line_exits_usage() {
    let run = client(&["check", "--size", "0"]);
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    assert!(run.stderr.contains("error"), "{}", run.stderr);
}

#[test]
fn a_failed_start_fails_every_later_caller_without_starting_again() {
    let cell = OnceLock::new();
    let starts = AtomicUsize::new(0);
    for _ in 0..3 {
        let failed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            made_once(&cell, || -> () {
                starts.fetch_add(1, Ordering::SeqCst);
                panic!("wine64: not found")
            })
        }));
        let panic = failed.expect_err("a failed start was taken for a start");
        let message = panic_message(panic.as_ref());
        assert!(message.contains("wine64: not found"), "{message}");
    }
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}
