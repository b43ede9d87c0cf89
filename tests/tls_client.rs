//! `echo-client --tls` against TLS echo servers this project did not write:
//! socat (`OPENSSL-LISTEN … PIPE`) and stunnel in front of echo-server's
//! plain TCP listener, with certificates the `openssl` CLI makes for each
//! run: a CA, a server certificate, an expired one, one for another name,
//! and a client certificate for mutual TLS.

#![cfg(unix)]

mod common;

use std::process::Command;

use common::tls::{Foreign, Pki};
use common::{CLIENT, Finished, Server, finish_with_patience, random_bytes};
use serde_json::Value;

/// Exit code of a refused certificate (`exit_code::CERTIFICATE`).
const CERTIFICATE: i32 = echo_service::shared::exit_code::CERTIFICATE;

fn client(args: &[&str], input: &[u8]) -> Finished {
    let mut command = Command::new(CLIENT);
    command.args(args);
    finish_with_patience(command, input)
}

fn json(run: &Finished) -> Value {
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout()))
}

/// send, check (JSON, with what the handshake settled), a 10 MiB pipe,
/// byte for byte, and a short bench through `server`, trusting the test CA.
fn sends_checks_and_pipes(pki: &Pki, server: &Foreign) {
    let target = server.target();
    let ca = pki.arg("ca.pem");
    let tls = ["--tls", "--ca", &ca];
    let sent = client(
        &[
            &["send", "-t", &target][..],
            &tls,
            &["hello", "over", "TLS"],
        ]
        .concat(),
        b"",
    );
    assert_eq!(
        (sent.code, sent.stdout()),
        (0, "hello over TLS".to_string()),
        "{}",
        sent.stderr
    );

    let checked = client(
        &[
            &["check", &target, "-n", "2", "-i", "0s", "--json"][..],
            &tls,
        ]
        .concat(),
        b"",
    );
    assert_eq!(checked.code, 0, "{}{}", checked.stdout(), checked.stderr);
    let report = &json(&checked)["targets"][0];
    assert_eq!(report["protocol"], "TLS");
    let session = &report["tls"];
    assert!(
        ["TLSv1.3", "TLSv1.2"].contains(&session["version"].as_str().unwrap()),
        "{session}"
    );
    assert!(
        session["cipher_suite"].as_str().unwrap().starts_with("TLS"),
        "{session}"
    );
    assert_eq!(session["certificate_not_after"], pki.not_after("server"));
    let days = session["certificate_expires_in_days"].as_f64().unwrap();
    assert!((29.9..=30.0).contains(&days), "{session}");

    let human = client(&[&["check", &target][..], &tls].concat(), b"");
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout().contains("over TLS"), "{}", human.stdout());
    assert!(
        human.stdout().contains("certificate expires in 30 days"),
        "{}",
        human.stdout()
    );

    let data = random_bytes(10 << 20, 20);
    let piped = client(&[&["pipe", &target][..], &tls].concat(), &data);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(piped.stdout == data, "the 10 MiB came back different");

    benches(&target, &tls);
}

/// A second's bench, small messages and large ones (many TLS records per
/// batch), without a single error.
fn benches(target: &str, tls: &[&str]) {
    for shape in [
        &["-c", "8"][..],
        &["-c", "2", "--size", "300000", "--pipeline", "2"],
    ] {
        let args = [&["bench", target, "-d", "1s", "--json"][..], tls, shape].concat();
        let run = client(&args, b"");
        assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout(), run.stderr);
        let report = json(&run);
        assert_eq!(report["protocol"], "TLS");
        assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
        for (kind, count) in report["errors"].as_object().unwrap() {
            assert_eq!(count, 0, "{kind} errors: {report}");
        }
    }
}

#[test]
fn socat_echoes_over_tls() {
    let pki = Pki::new();
    let socat = Foreign::socat(&pki, "server", "verify=0");
    sends_checks_and_pipes(&pki, &socat);
}

#[test]
fn stunnel_in_front_of_echo_server_echoes_over_tls() {
    let pki = Pki::new();
    let echo_server = Server::start("");
    let stunnel = Foreign::stunnel(&pki, echo_server.addr());
    sends_checks_and_pipes(&pki, &stunnel);
}

/// Each refused certificate gets its own words and the certificate exit
/// code; --server-name and --insecure get past the ones they are for.
#[test]
fn refused_certificates_say_why() {
    let pki = Pki::new();
    let ca = pki.arg("ca.pem");
    let send = |server: &Foreign, extra: &[&str]| {
        let target = server.target();
        client(
            &[&["send", "-t", &target, "--tls"][..], extra, &["ping"]].concat(),
            b"",
        )
    };
    let refused = |run: &Finished, words: &str| {
        assert_eq!(run.code, CERTIFICATE, "{}", run.stderr);
        assert!(run.stderr.contains(words), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout());
    };

    let expired = Foreign::socat(&pki, "expired", "verify=0");
    let bench = client(
        &["bench", &expired.target(), "--tls", "--ca", &ca, "-d", "1s"],
        b"",
    );
    refused(&bench, "the server's certificate expired");
    refused(
        &send(&expired, &["--ca", &ca]),
        "the server's certificate expired",
    );
    let insecure = send(&expired, &["--insecure"]);
    assert_eq!(
        (insecure.code, insecure.stdout()),
        (0, "ping".to_string()),
        "{}",
        insecure.stderr
    );
    assert!(
        insecure.stderr.contains("warning: --insecure"),
        "{}",
        insecure.stderr
    );
    let checked = client(
        &["check", &expired.target(), "--tls", "--insecure", "--json"],
        b"",
    );
    let days = json(&checked)["targets"][0]["tls"]["certificate_expires_in_days"].as_f64();
    assert!(days.is_some_and(|days| days < 0.0), "{}", checked.stdout());

    let wrong = Foreign::socat(&pki, "wrong", "verify=0");
    refused(
        &send(&wrong, &["--ca", &ca]),
        "not for the name `localhost`; it is for wrong.example",
    );
    let named = send(&wrong, &["--ca", &ca, "--server-name", "wrong.example"]);
    assert_eq!(
        (named.code, named.stdout()),
        (0, "ping".to_string()),
        "{}",
        named.stderr
    );

    let server = Foreign::socat(&pki, "server", "verify=0");
    // The test CA is in no system store.
    refused(&send(&server, &[]), "not signed by a CA this client trusts");
    let checked = client(&["check", &server.target(), "--tls", "--json"], b"");
    assert_eq!(checked.code, CERTIFICATE, "{}", checked.stdout());
    assert_eq!(json(&checked)["targets"][0]["verdict"], "certificate");
}

/// A server that asks for a client certificate refuses a client without
/// one, in words that say what to give, and echoes to one with it.
#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let ca = pki.arg("ca.pem");
    let socat = Foreign::socat(&pki, "server", &format!("verify=1,cafile={ca}"));
    let target = socat.target();
    let data = random_bytes(1 << 20, 21);
    for without in [
        client(&["send", "-t", &target, "--tls", "--ca", &ca, "ping"], b""),
        client(&["pipe", &target, "--tls", "--ca", &ca], &data),
    ] {
        assert_eq!(without.code, CERTIFICATE, "{}", without.stderr);
        assert!(
            without
                .stderr
                .contains("requires a client certificate; give one with --cert"),
            "{}",
            without.stderr
        );
    }
    let (cert, key) = (pki.arg("client.pem"), pki.arg("client.key"));
    let identity = ["--tls", "--ca", &ca, "--cert", &cert, "--key", &key];
    let with = client(
        &[&["send", "-t", &target][..], &identity, &["ping"]].concat(),
        b"",
    );
    assert_eq!(
        (with.code, with.stdout()),
        (0, "ping".to_string()),
        "{}",
        with.stderr
    );
    benches(&target, &identity);
    let piped = client(&[&["pipe", &target][..], &identity].concat(), &data);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert!(piped.stdout == data, "the echo came back different");
    // A certificate the server's CA did not sign.
    let (cert, key) = (pki.arg("expired.pem"), pki.arg("expired.key"));
    let refused = client(
        &[
            "send", "-t", &target, "--tls", "--ca", &ca, "--cert", &cert, "--key", &key, "ping",
        ],
        b"",
    );
    assert_eq!(refused.code, CERTIFICATE, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("refused the client certificate"),
        "{}",
        refused.stderr
    );
}

/// As a Nagios plugin, the certificate's expiry has thresholds of its own
/// and its own performance datum; in the Prometheus textfile, a timestamp.
#[test]
fn monitoring_outputs_watch_the_certificate_expiry() {
    let pki = Pki::new();
    let socat = Foreign::socat(&pki, "server", "verify=0");
    let target = socat.target();
    let ca = pki.arg("ca.pem");
    let nagios = |thresholds: &[&str]| {
        let args = [
            &["check", &target, "--tls", "--ca", &ca, "--format", "nagios"][..],
            thresholds,
        ];
        client(&args.concat(), b"")
    };
    let ok = nagios(&[]);
    assert_eq!(ok.code, 0, "{}", ok.stdout());
    assert!(ok.stdout().starts_with("ECHO OK - "), "{}", ok.stdout());
    assert!(
        ok.stdout().contains("certificate expires in 30 days"),
        "{}",
        ok.stdout()
    );
    assert!(
        ok.stdout().contains(" cert_days=30;20:;15:;;"),
        "{}",
        ok.stdout()
    );
    let warning = nagios(&["--cert-warning", "45"]);
    assert_eq!(warning.code, 1, "{}", warning.stdout());
    assert!(
        warning.stdout().starts_with("ECHO WARNING - "),
        "{}",
        warning.stdout()
    );
    let critical = nagios(&["--cert-warning", "60", "--cert-critical", "31"]);
    assert_eq!(critical.code, 2, "{}", critical.stdout());

    let textfile = client(
        &[
            "check", &target, "--tls", "--ca", &ca, "--format", "textfile",
        ],
        b"",
    );
    assert_eq!(textfile.code, 0, "{}", textfile.stderr);
    let not_after: std::time::SystemTime =
        humantime::parse_rfc3339(&pki.not_after("server")).unwrap();
    let seconds = not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let series = format!(
        "echo_check_tls_cert_expiry_timestamp_seconds{{target=\"{target}\",protocol=\"tls\"}} {seconds}.0"
    );
    assert!(
        textfile.stdout().contains(&series),
        "{series} in:\n{}",
        textfile.stdout()
    );
}

/// Files that cannot be used are usage errors that name the file.
#[test]
fn unusable_tls_files_are_usage_errors() {
    let pki = Pki::new();
    let missing = pki.file("missing.pem");
    let run = client(
        &["send", "--tls", "--ca", missing.to_str().unwrap(), "x"],
        b"",
    );
    assert_eq!(run.code, 64, "{}", run.stderr);
    assert!(run.stderr.contains("missing.pem"), "{}", run.stderr);
    let key_as_cert = client(&["send", "--tls", "--ca", &pki.arg("ca.key"), "x"], b"");
    assert_eq!(key_as_cert.code, 64, "{}", key_as_cert.stderr);
    assert!(
        key_as_cert.stderr.contains("no CERTIFICATE block"),
        "{}",
        key_as_cert.stderr
    );
    let over_udp = client(&["send", "--udp", "--tls", "x"], b"");
    assert_eq!(over_udp.code, 64, "{}", over_udp.stderr);
}
