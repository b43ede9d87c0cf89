//! `scripts/bench.sh` runs end to end: it builds the reference programs,
//! drives every server with verified echoes and reports each part. This
//! checks that the benchmark works and what it reports, never how fast
//! anything was: the numbers belong to the benchmark, not to the tests.

#![cfg(target_os = "linux")]

use std::process::Command;

use serde_json::Value;

const BENCH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh");

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(BENCH)
        .args(args)
        .output()
        .expect("run scripts/bench.sh")
}

/// A run that must succeed, and its report as JSON.
fn bench_report(args: &[&str]) -> Value {
    let output = bench(&[args, &["--json"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench.sh failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// A part that pairs two servers, run as short as it can be: two rounds of
/// two sizes, so that each cell has a ratio per round.
fn short_paired_run(part: &str) -> Value {
    bench_report(&[
        part,
        "--rounds",
        "2",
        "--duration",
        "0.2",
        "--connections",
        "2",
        "--sizes",
        "64,300",
    ])
}

/// The report's row for `server` at `connections` (and `size`, if given).
fn row_of<'a>(rows: &'a [Value], server: &str, connections: u64, size: Option<u64>) -> &'a Value {
    rows.iter()
        .find(|row| {
            row["server"] == server
                && row["connections"] == connections
                && size.is_none_or(|size| row["size"] == size)
        })
        .unwrap_or_else(|| panic!("no row for {server} at {connections} × {size:?}: {rows:#?}"))
}

/// Each of `figures` in `row` is a number above zero.
fn assert_positive(row: &Value, figures: &[&str]) {
    for figure in figures {
        assert!(
            row[*figure].as_f64().is_some_and(|value| value > 0.0),
            "{figure} in {row:#?}"
        );
    }
}

#[test]
fn a_short_run_reports_every_server_cell_and_target() {
    let report = bench_report(&[
        "--rounds",
        "1",
        "--duration",
        "0.3",
        "--connections",
        "1,3",
        "--sizes",
        "64,5000",
        "--idle-connections",
        "50",
    ]);

    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3 * 2 * 2, "{cells:#?}");
    for server in ["C epoll", "tokio minimal", "echo-server"] {
        for (connections, size) in [(1, 64), (3, 64), (1, 5000), (3, 5000)] {
            let cell = row_of(cells, server, connections, Some(size));
            assert_positive(
                cell,
                &[
                    "requests_per_s",
                    "p50_us",
                    "p99_us",
                    "cpu_ns_per_round_trip",
                    "p99_all_rounds_vs_c",
                ],
            );
            let percentile = |name: &str| cell[name].as_f64().unwrap();
            assert!(
                percentile("p50_us") <= percentile("p99_us")
                    && percentile("p99_us") <= percentile("p999_us"),
                "percentiles of one merged histogram are ordered: {cell:#?}"
            );
            assert!(
                cell["rounds"][0].get("latency_histogram_ns").is_none(),
                "the histograms are merged, not kept per round: {cell:#?}"
            );
            // One round: the merged p99 is that run's own p99 (printed to
            // 0.1 µs) rounded down to three significant digits.
            let run_p99 = cell["rounds"][0]["p99_us"].as_f64().unwrap();
            let merged_p99 = percentile("p99_us");
            assert!(
                merged_p99 <= run_p99 + 0.05 && merged_p99 >= 0.99 * run_p99 - 0.1,
                "merged p99 {merged_p99} against the run's {run_p99}: {cell:#?}"
            );
            if server == "C epoll" {
                assert_eq!(cell["p99_all_rounds_vs_c"], 1.0, "{cell:#?}");
            }
        }
    }
    let idle = report["idle"].as_array().unwrap();
    assert_eq!(idle.len(), 3);
    assert!(idle.iter().all(|i| i["connections"] == 50));
    let client = report["client"].as_array().unwrap();
    assert_eq!(client.len(), 4);
    for cell in client {
        for tool in ["generator", "echo_client"] {
            let runs = cell[format!("{tool}_runs")].as_array().unwrap();
            let rounds = cell[format!("{tool}_rounds")].as_array().unwrap();
            assert_eq!(runs.len(), 1, "one round: {cell:#?}");
            let runs: Vec<f64> = runs[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|run| run.as_f64().unwrap())
                .collect();
            assert_eq!(runs.len(), 2, "each tool runs twice a round: {cell:#?}");
            let mean = (runs[0] + runs[1]) / 2.0;
            let round = rounds[0].as_f64().unwrap();
            assert!(
                (round - mean).abs() <= 1e-6 * mean,
                "a round's figure is the mean of its runs: {cell:#?}"
            );
        }
    }
    assert!(report["noise"].is_null(), "noise runs only on request");
    assert!(report["metrics"].is_null(), "metrics runs only on request");
    let scaling = report["scaling"].as_array().unwrap();
    assert_eq!(scaling.len(), 3 * 2, "{scaling:#?}");
    for server in ["echo-server, 1 worker", "echo-server, 2 workers", "C epoll"] {
        for size in [64, 5000] {
            let row = scaling
                .iter()
                .find(|r| r["server"] == server && r["size"] == size)
                .unwrap_or_else(|| panic!("no scaling row for {server} at {size} B"));
            assert_eq!(row["connections"], 3, "the busiest count only: {row:#?}");
            assert!(row["requests_per_s"].as_f64().unwrap() > 0.0, "{row:#?}");
        }
    }
    let overall = &report["client_overall"];
    assert_eq!(
        overall["round_count"], 4,
        "one paired ratio per cell and round"
    );
    let figure = |name: &str| overall[name].as_f64().unwrap();
    assert!(
        figure("low") <= figure("median") && figure("median") <= figure("high"),
        "{overall:#?}"
    );
    assert!(
        figure("confidence") < 0.95 && overall["met"] == false,
        "four rounds are too few to show anything: {overall:#?}"
    );
    let udp = report["udp"].as_array().unwrap();
    assert_eq!(udp.len(), 3 * 2 * 2, "{udp:#?}");
    for server in ["C recvfrom", "C recvmmsg", "echo-server"] {
        for (flows, size) in [(1, 64), (3, 64), (1, 1400), (3, 1400)] {
            let row = row_of(udp, server, flows, Some(size));
            assert_positive(
                row,
                &["requests_per_s", "cpu_ns_per_echo", "p50_us", "p99_us"],
            );
            let loss = row["loss"].as_f64().unwrap();
            assert!(
                (0.0..1.0).contains(&loss),
                "a share of those sent: {row:#?}"
            );
            if server == "C recvfrom" {
                assert_eq!(row["rate_vs_reference"]["median"], 1.0, "{row:#?}");
            }
        }
    }
    let churn = report["churn"].as_array().unwrap();
    assert_eq!(churn.len(), 3 * 2, "{churn:#?}");
    for server in ["C epoll", "echo-server", "echo-server, PROXY v2"] {
        for clients in [1, 3] {
            let row = row_of(churn, server, clients, None);
            assert_eq!(row["size"], 64, "one small echo per connection: {row:#?}");
            assert_positive(row, &["requests_per_s", "cpu_ns_per_echo"]);
            assert_eq!(row["lost"], 0, "TCP loses nothing: {row:#?}");
        }
    }
    let cost = &report["proxy_protocol_cost"];
    assert_eq!(
        cost["round_count"], 2,
        "the proxied listener against the plain one, every round of every churn cell: {cost:#?}"
    );
    assert!(cost["median"].as_f64().unwrap() > 0.0, "{cost:#?}");
    assert_eq!(
        report["tls"]["cells"].as_array().unwrap().len(),
        2 * 2 * 2,
        "the tls part runs in the default one, at every cell: {:#?}",
        report["tls"]
    );
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 5 + 3 + 6, "{targets:#?}");
    for wanted in [
        "UDP echoes/s ≥ 1.00× the plain C loop's in every cell",
        "UDP CPU per datagram ≤ 0.80× the plain C loop's with more than one flow",
        "churn CPU per connection ≤ 1.10× C in every cell",
    ] {
        assert!(
            targets.iter().any(|t| t["target"] == wanted),
            "{wanted}: {targets:#?}"
        );
    }
    assert!(targets.iter().all(|t| t["met"].is_boolean()));
    assert!(report["machine"]["cpu"].is_string());
}

#[test]
fn the_noise_part_pairs_the_reference_with_itself() {
    let report = short_paired_run("noise");

    let noise = &report["noise"];
    let cells = noise["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{noise:#?}");
    for cell in cells {
        for ratio in ["cpu_ns_per_round_trip_b_vs_a", "requests_per_s_b_vs_a"] {
            let rounds = cell[ratio]["rounds"].as_array().unwrap();
            assert_eq!(rounds.len(), 2, "{ratio} in {cell:#?}");
            assert!(
                rounds.iter().all(|r| r.as_f64().unwrap() > 0.0),
                "{cell:#?}"
            );
        }
    }
    assert_eq!(noise["requests_per_s_overall"]["round_count"], 4);
    assert!(report["cells"].as_array().unwrap().is_empty());
    assert!(report["scaling"].as_array().unwrap().is_empty());
    assert!(
        report["targets"].as_array().unwrap().is_empty(),
        "no target is judged on the noise"
    );
}

#[test]
fn the_metrics_part_pairs_metrics_on_with_off_and_judges_the_target() {
    let report = short_paired_run("metrics");

    let metrics = &report["metrics"];
    let cells = metrics["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{metrics:#?}");
    for cell in cells {
        for figure in ["off_cpu_ns_per_round_trip", "on_cpu_ns_per_round_trip"] {
            assert!(cell[figure].as_f64().unwrap() > 0.0, "{cell:#?}");
        }
        assert_eq!(
            cell["on_vs_off"]["rounds"].as_array().unwrap().len(),
            2,
            "{cell:#?}"
        );
    }
    assert_eq!(metrics["on_vs_off_overall"]["round_count"], 4);
    assert!(
        metrics["scrapes"].as_u64().unwrap() > 0,
        "the server with metrics on was scraped: {metrics:#?}"
    );
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{targets:#?}");
    assert!(
        targets[0]["target"]
            .as_str()
            .unwrap()
            .contains("metrics on"),
        "{targets:#?}"
    );
    assert!(report["cells"].as_array().unwrap().is_empty());
}

#[test]
fn the_tls_part_pairs_echo_server_with_stunnel_and_judges_every_figure() {
    let report = bench_report(&[
        "tls",
        "--rounds",
        "1",
        "--duration",
        "0.3",
        "--connections",
        "1,3",
        "--sizes",
        "64",
        "--idle-connections",
        "20",
    ]);

    let tls = &report["tls"];
    let cells = tls["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2 * 2, "{cells:#?}");
    for server in ["stunnel + C epoll", "echo-server"] {
        for connections in [1, 3] {
            let cell = row_of(cells, server, connections, None);
            assert_eq!(cell["size"], 64, "{cell:#?}");
            assert_positive(
                cell,
                &[
                    "requests_per_s",
                    "p50_us",
                    "p99_us",
                    "cpu_ns_per_round_trip",
                ],
            );
            for ratio in ["rate_vs_reference", "cpu_vs_reference", "p99_vs_reference"] {
                assert_eq!(
                    cell[ratio]["rounds"].as_array().unwrap().len(),
                    1,
                    "{ratio}: one paired ratio a round: {cell:#?}"
                );
            }
        }
    }
    let handshakes = tls["handshakes"].as_array().unwrap();
    assert_eq!(handshakes.len(), 2, "{handshakes:#?}");
    for row in handshakes {
        assert_positive(row, &["handshakes_per_s", "cpu_ns_per_handshake"]);
        let run = &row["rounds"][0];
        assert!(
            run["version"] == "TLSv1.3" || run["version"] == "TLSv1.2",
            "{row:#?}"
        );
    }
    let idle = tls["idle"].as_array().unwrap();
    assert_eq!(idle.len(), 2, "{idle:#?}");
    assert!(idle.iter().all(|i| i["connections"] == 20), "{idle:#?}");
    let targets = report["targets"].as_array().unwrap();
    for wanted in [
        "TLS round trips/s ≥ stunnel's in every cell",
        "TLS server CPU per round trip ≤ stunnel's in every cell",
        "TLS p99 at 3 connections ≤ stunnel's",
        "TLS handshakes/s ≥ stunnel's",
        "TLS server CPU per handshake ≤ stunnel's",
        "idle memory per TLS connection ≤ stunnel's and ≤ 16384 B",
    ] {
        assert!(
            targets.iter().any(|t| t["target"] == wanted),
            "{wanted}: {targets:#?}"
        );
    }
    assert_eq!(targets.len(), 6, "{targets:#?}");
    assert!(targets.iter().all(|t| t["met"].is_boolean()));
    assert!(report["cells"].as_array().unwrap().is_empty());
}

#[test]
fn the_text_report_names_the_machine_and_the_targets() {
    let output = bench(&[
        "cells",
        "--rounds",
        "1",
        "--duration",
        "0.2",
        "--connections",
        "2",
        "--sizes",
        "100",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("machine: Linux"), "{stdout}");
    assert!(stdout.contains("CPU vs C"), "{stdout}");
    assert!(
        stdout.contains("server CPU per round trip ≤ 1.10× C in every cell"),
        "{stdout}"
    );
}

#[test]
fn a_bad_value_is_refused_with_64() {
    let output = bench(&["idle", "--idle-connections", "many"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--idle-connections: invalid"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_datagram_too_small_for_the_sequence_number_is_refused_with_64() {
    let output = bench(&["udp", "--udp-sizes", "64,4"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("from 8 to 65507 bytes"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn only_the_whole_report_goes_into_the_readme() {
    let output = bench(&["noise", "--readme"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--readme writes the whole report"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bad_usage_is_refused_with_64() {
    for args in [
        &["sideways"][..],
        &["--rounds"][..],
        &["cells", "--bogus"][..],
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("Usage: ./scripts/bench.sh"),
            "{args:?}"
        );
    }
}

#[test]
fn the_benchmarks_modules_pass_their_own_examples() {
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");
    let modules = [
        "compare_servers",
        "bench_runs",
        "bench_stats",
        "bench_report",
    ];
    let output = Command::new("python3")
        .args(["-m", "doctest", "-v"])
        .args(modules.map(|module| format!("{scripts}/{module}.py")))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for examples in [
        "bench_stats.median_confidence_interval",
        "bench_runs.mirrored_turns",
        "bench_report.not_measurably_slower",
    ] {
        assert!(stdout.contains(&format!("tests in {examples}")), "{stdout}");
    }
}

/// The C load generator, built as bench.sh builds it, in a directory of its own.
fn built_generator() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let generator = dir.path().join("pingpong_client");
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bench/reference/pingpong_client.c"
    );
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&generator)
        .arg(source)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc failed on {source}");
    (dir, generator)
}

/// The generator's UDP mode, 2 flows × 64 B for 0.5 s, against `server`.
fn udp_generator_run(generator: &std::path::Path, server: std::net::SocketAddr) -> (i32, Value) {
    let output = Command::new(generator)
        .args(["-m", "udp", "127.0.0.1"])
        .arg(server.port().to_string())
        .args(["2", "0.5", "64"])
        .output()
        .expect("run the generator");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("an exit code"), report)
}

#[test]
fn the_udp_generator_counts_unanswered_datagrams_as_lost() {
    let (_dir, generator) = built_generator();
    // A server that takes every datagram and answers none.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

    let (code, report) = udp_generator_run(&generator, silent.local_addr().unwrap());

    assert_eq!(code, 0, "{report:#?}");
    assert_eq!(report["requests"], 0, "{report:#?}");
    // Each flow sends at once and again after every 200 ms timeout.
    assert!(
        report["lost"].as_u64().unwrap() >= 2,
        "each flow's datagram times out at least once in 0.5 s: {report:#?}"
    );
}

#[test]
fn the_udp_generator_refuses_an_answer_longer_than_the_datagram() {
    let (_dir, generator) = built_generator();
    // A server that answers every datagram with one byte more.
    let padding = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = padding.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((len, peer)) = padding.recv_from(&mut buf) {
            let _ = padding.send_to(&buf[..=len], peer);
        }
    });

    let (code, report) = udp_generator_run(&generator, address);

    assert_eq!(code, 1, "a wrong echo fails the run: {report:#?}");
    assert!(report["mismatches"].as_u64().unwrap() > 0, "{report:#?}");
}
