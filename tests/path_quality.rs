//! `check --udp` measures a real path: through an emulated network (three
//! network namespaces and a router, `common::netns`) whose router drops
//! datagrams at random with iptables' `statistic` match, or hands them to a
//! holder program through NFQUEUE that delays and reorders them, or copies
//! them (TEE), the loss, reordering, duplicates, round trips and jitter the
//! client reports must be what the router caused, within stated bounds. And through a router that
//! translates addresses (MASQUERADE) and clamps the TCP MSS, `check`,
//! `bench` and `pipe` still prove the path, and `mtu --tcp` shows the MSS.
//!
//! Needs root, `ip`, `iptables` and `ip6tables`, and gcc with
//! libnetfilter-queue-dev for the holder (scripts/test.sh installs them);
//! behind the `host-tests` feature.

#![cfg(target_os = "linux")]

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};

use common::netns::{Hold, Network, ROUTER_TO_CLIENT, SERVER_V4, SERVER_V6};
use serde_json::Value;

/// Probes per target and run. With the round-trip loss of 30% each way
/// (q = 0.51) the 99.9% bounds are 946 to 1094 of 2000 probes (47.3% to
/// 54.7%), and of 5% each way (q = 0.0975) 153 to 240 (7.65% to 12%):
/// narrow enough to tell the cases apart and to catch a client that counts
/// wrong, wide enough that a correct client fails one case in a thousand.
const PROBES: u32 = 2000;
/// 500 probes a second: the server's per-source rate limit is off (below),
/// and the client's socket buffer holds far more than the answers of the
/// longest pause its receiving thread could plausibly take.
const INTERVAL: &str = "2ms";
/// The two-sided probability outside the bounds.
const OUTSIDE: f64 = 0.001;

/// One probe to each target before any fault, so that the first datagrams
/// of a measurement do not wait for neighbour discovery (ARP, NDP): the
/// path is known to work before it is measured.
/// The emulated networks here are built and measured one at a time: a
/// figure of time (delay, jitter, the client's own lateness) taken while
/// another test's client and server compete for this machine's two cores
/// measures the machine, not the path.
fn one_network_at_a_time() -> MutexGuard<'static, ()> {
    static NETWORKS: Mutex<()> = Mutex::new(());
    NETWORKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The far side's echo, over IPv4 and IPv6.
fn targets() -> [String; 2] {
    [format!("{SERVER_V4}:7007"), format!("[{SERVER_V6}]:7007")]
}

/// A network of the test's own with echo-server serving on its far side,
/// each of `targets` warmed up: the clean path a test then breaks. Dropped
/// in the order of its fields: the server, the network, then the turn.
struct ServedNetwork {
    _server: common::Server,
    network: Network,
    _alone: MutexGuard<'static, ()>,
}

impl std::ops::Deref for ServedNetwork {
    type Target = Network;

    fn deref(&self) -> &Network {
        &self.network
    }
}

fn served_network(targets: &[&str]) -> ServedNetwork {
    let alone = one_network_at_a_time();
    let network = Network::build();
    let server = network.start_echo_server();
    warm_up(&network, targets);
    ServedNetwork {
        _server: server,
        network,
        _alone: alone,
    }
}

fn warm_up(network: &Network, targets: &[&str]) {
    let mut args = vec!["check", "--udp", "-t", "5s"];
    args.extend_from_slice(targets);
    let run = network.run_client(&args);
    assert_eq!(
        run.code,
        0,
        "the clean path works: {}{}",
        run.stdout(),
        run.stderr
    );
}

/// The smallest and largest number of lost probes, out of `probes`, that a
/// loss probability `q` gives but with probability `OUTSIDE`: the exact
/// binomial quantiles, half of `OUTSIDE` on each side.
fn binomial_bounds(probes: u32, q: f64) -> (u32, u32) {
    if q == 0.0 {
        return (0, 0);
    }
    let n = f64::from(probes);
    // The probability of k losses, from k = 0 upwards, in logarithms so
    // that (1 - q)^2000 does not underflow.
    let mut log_pmf = n * (1.0 - q).ln();
    let mut cumulative = 0.0;
    let mut lower = None;
    for k in 0..=probes {
        if k > 0 {
            let k = f64::from(k);
            log_pmf += ((n - k + 1.0) / k).ln() + (q / (1.0 - q)).ln();
        }
        cumulative += log_pmf.exp();
        if lower.is_none() && cumulative > OUTSIDE / 2.0 {
            lower = Some(k);
        }
        if cumulative >= 1.0 - OUTSIDE / 2.0 {
            return (lower.expect("set before"), k);
        }
    }
    (lower.unwrap_or(probes), probes)
}

#[test]
fn the_bounds_are_the_binomial_quantiles_stated() {
    assert_eq!(binomial_bounds(PROBES, 1.0 - 0.95f64.powi(2)), (153, 240));
    assert_eq!(binomial_bounds(PROBES, 1.0 - 0.7f64.powi(2)), (946, 1094));
    assert_eq!(binomial_bounds(500, 1.0 - 0.7f64.powi(2)), (218, 292));
}

#[test]
fn reported_loss_is_the_routers_random_loss_within_binomial_bounds() {
    let [v4, v6] = targets();
    let network = served_network(&[&v4, &v6]);
    for each_way in [0.0, 0.05, 0.30] {
        network.random_loss_each_way(each_way);
        // A probe is lost if the router drops it on the way out or its
        // echo on the way back.
        let round_trip_loss = 1.0 - (1.0 - each_way) * (1.0 - each_way);
        let (lowest, highest) = binomial_bounds(PROBES, round_trip_loss);
        let run = network.run_client(&[
            "check",
            "--udp",
            &v4,
            &v6,
            "-n",
            &PROBES.to_string(),
            "-i",
            INTERVAL,
            "-t",
            "1s",
            "--json",
        ]);
        let report: Value = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
        for target in report["targets"].as_array().unwrap() {
            let field = |name: &str| target[name].as_u64().unwrap_or_else(|| panic!("{name}"));
            let (sent, answered, lost) = (field("probes"), field("healthy"), field("lost"));
            let path = &target["path"];
            let context = format!("{each_way} each way: {target:#}");
            assert_eq!(sent, u64::from(PROBES), "{context}");
            assert_eq!(answered + lost, sent, "{context}");
            assert!(
                (u64::from(lowest)..=u64::from(highest)).contains(&lost),
                "lost {lost}, expected {lowest} to {highest}: {context}"
            );
            // Nothing on this path copies a datagram.
            assert_eq!(path["duplicated"], 0, "{context}");
            assert!(path["late"].as_u64().unwrap() <= lost, "{context}");
            assert_eq!(
                path["jitter_method"],
                "RFC 3550 interarrival jitter of the round trips"
            );
            assert!(path["client_late_ms"]["max"].is_number(), "{context}");
            let verdict = if lost == 0 { "healthy" } else { "timeout" };
            assert_eq!(target["verdict"], verdict, "{context}");
        }
        let code = if each_way == 0.0 { 0 } else { 3 };
        assert_eq!(run.code, code, "{}", run.stdout());
        // bench finds its server with a few datagrams: at 30% each way
        // (51% a round trip) it may well not start.
        if each_way <= 0.05 {
            bench_reports_the_loss(&network, &v4, round_trip_loss);
        }
    }
}

/// `bench --udp` counts its messages given up at their timeout as lost,
/// as `check --udp` counts its probes: within the binomial bounds of the
/// messages whose fate fell in the measured window.
fn bench_reports_the_loss(network: &Network, target: &str, round_trip_loss: f64) {
    // Each loss holds its socket for the timeout: many sockets, a short
    // timeout (far above this path's round trip), so enough are sent.
    let run = network.run_client(&[
        "bench",
        "--udp",
        target,
        "-c",
        "16",
        "-d",
        "2s",
        "--rate",
        "2000",
        "--timeout",
        "50ms",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
    let path = &report["path"];
    let field = |value: &Value| value.as_u64().unwrap_or_else(|| panic!("{report:#}"));
    let (sent, lost) = (field(&path["sent"]), field(&path["lost"]));
    assert_eq!(sent, field(&report["requests"]) + lost, "{report:#}");
    // One message at a time per socket: each timeout gives up one.
    assert_eq!(lost, field(&report["errors"]["timeout"]), "{report:#}");
    assert!(sent >= 500, "too few to judge: {report:#}");
    let (lowest, highest) = binomial_bounds(u32::try_from(sent).unwrap(), round_trip_loss);
    assert!(
        (u64::from(lowest)..=u64::from(highest)).contains(&lost),
        "bench lost {lost} of {sent}, expected {lowest} to {highest}: {report:#}"
    );
    let percent = path["loss_percent"].as_f64().unwrap();
    assert!(
        (percent - lost as f64 * 100.0 / sent as f64).abs() < 0.01,
        "{report:#}"
    );
}

#[test]
fn loss_thresholds_judge_udp_paths_too() {
    let [target, _] = targets();
    let network = served_network(&[&target]);
    // 30% each way: 218 to 292 of 500 lost (43.6% to 58.4%), so
    // CRITICAL above 40% and WARNING above 20% both apply; CRITICAL wins.
    network.random_loss_each_way(0.30);
    let run = network.run_client(&[
        "check", "--udp", &target, "-n", "500", "-i", INTERVAL, "-t", "1s", "--format", "nagios",
        "-w", ",20%", "-c", ",40%",
    ]);
    assert_eq!(run.code, 2, "{}{}", run.stdout(), run.stderr);
    assert!(
        run.stdout().starts_with("ECHO CRITICAL - "),
        "{}",
        run.stdout()
    );
    // The path's own figures are in the human output as well.
    network.random_loss_each_way(0.0);
    let run = network.run_client(&[
        "check",
        "--udp",
        &format!("[{SERVER_V6}]:7007"),
        "-n",
        "20",
        "-i",
        INTERVAL,
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout(), run.stderr);
    assert!(
        run.stdout().contains("20/20 echoes of 64 bytes over UDP")
            && run.stdout().contains("jitter"),
        "{}",
        run.stdout()
    );
}

/// `check --udp TARGET --json` with `probes` probes every `interval`, which
/// must leave every probe answered; returns the target's report.
fn clean_udp_check(network: &Network, target: &str, probes: u32, interval: &str) -> Value {
    let run = network.run_client(&[
        "check",
        "--udp",
        target,
        "-n",
        &probes.to_string(),
        "-i",
        interval,
        // Longer than any hold, the swap's one second included.
        "-t",
        "2s",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
    let target = report["targets"][0].clone();
    assert_eq!(run.code, 0, "{target:#}{}", run.stderr);
    assert_eq!(target["lost"], 0, "{target:#}");
    assert_eq!(target["path"]["duplicated"], 0, "{target:#}");
    target
}

/// Runs of a measurement, at most, until the client could vouch for it.
const ATTEMPTS: usize = 5;

/// `clean_udp_check`, repeated until the client's own timing error, which
/// it measures and reports (`path.client_late_ms.max`), stayed below
/// `HOLDER_SLACK_MS`. On a machine that others share, the client is now
/// and then held up for longer than the delays injected (once by 800 ms in
/// these tests); its round trips and jitter then show its own stall, and it
/// says so (`jitter_reliable`). A figure it cannot vouch for is measured
/// again rather than judged; no run in `ATTEMPTS` that it can fails.
fn punctual_udp_check(network: &Network, target: &str, probes: u32, interval: &str) -> Value {
    let mut lateness = Vec::new();
    for _ in 0..ATTEMPTS {
        let report = clean_udp_check(network, target, probes, interval);
        let late = report["path"]["client_late_ms"]["max"].as_f64().unwrap();
        if late < HOLDER_SLACK_MS {
            return report;
        }
        lateness.push(late);
    }
    panic!(
        "in {ATTEMPTS} runs the client itself ran up to {lateness:?} ms late, more than the \
         {HOLDER_SLACK_MS} ms its figures are judged to: this machine is too busy to measure on"
    )
}

fn ms(report: &Value, field: &str) -> f64 {
    report["rtt_ms"][field]
        .as_f64()
        .unwrap_or_else(|| panic!("rtt_ms.{field}: {report:#}"))
}

/// One reordered probe in `SWAP_EVERY`: the holder keeps back the first
/// of every 8 datagrams toward the server until the next has passed.
const SWAP_EVERY: u32 = 8;

#[test]
fn injected_reordering_is_reported_as_rfc_4737s_ratio() {
    let [v4, v6] = targets();
    let network = served_network(&[&v4, &v6]);
    for target in [&v4, &v6] {
        // A holder of its own per run: it counts from the run's first
        // probe, so 400 probes make exactly 50 swapped pairs, the later of
        // each overtaking the earlier. Tolerance: none, as the pattern is
        // deterministic and nothing else on this path reorders.
        let _holder = network.hold_toward_server(Hold::Swap(SWAP_EVERY));
        let report = clean_udp_check(&network, target, 400, "5ms");
        let path = &report["path"];
        assert_eq!(path["reordered"], 400 / SWAP_EVERY, "{report:#}");
        assert_eq!(
            path["reordered_percent"],
            100.0 / f64::from(SWAP_EVERY),
            "{report:#}"
        );
        assert_eq!(path["late"], 0, "{report:#}");
    }
}

#[test]
fn duplicated_datagrams_are_counted_once_and_reported() {
    let [v4, v6] = targets();
    let network = served_network(&[&v4, &v6]);
    // One probe in 4 reaches the server twice and is echoed twice: of 100
    // probes exactly 25 answers come twice (a count per family, so per
    // target). Tolerance: none, the copies are counted by the router.
    network.duplicate_toward_server(4);
    let run = network.run_client(&[
        "check", "--udp", &v4, &v6, "-n", "100", "-i", "5ms", "-t", "2s", "--json",
    ]);
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
    assert_eq!(run.code, 0, "{report:#}{}", run.stderr);
    for target in report["targets"].as_array().unwrap() {
        assert_eq!(target["healthy"], 100, "never counted twice: {target:#}");
        assert_eq!(target["path"]["duplicated"], 25, "{target:#}");
    }
    // bench takes a copy for no wrong echo either, and counts the copies:
    // one answer in 4, give or take one at either end of the window.
    for target in [&v4, &v6] {
        let run = network.run_client(&[
            "bench", "--udp", target, "-c", "1", "-d", "1s", "--rate", "100", "--json",
        ]);
        let report: Value = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
        assert_eq!(run.code, 0, "{report:#}{}", run.stderr);
        assert_eq!(report["errors"]["mismatch"], 0, "{report:#}");
        let requests = report["requests"].as_f64().unwrap();
        let copies = report["path"]["duplicated"].as_f64().unwrap();
        assert!(
            (copies - requests / 4.0).abs() <= 2.0,
            "{copies} copies of {requests} answers: {report:#}"
        );
    }
}

/// The delays the holder adds, in milliseconds, and how far above them
/// the figures may come out: the holder wakes by `poll`, on a machine
/// others share, so it may let a datagram go a little late, never early.
/// The client's own lateness must stay below the slack too
/// (`punctual_udp_check`).
const DELAY_MS: u32 = 30;
const ALTERNATE_MS: u32 = 20;
const HOLDER_SLACK_MS: f64 = 10.0;

#[test]
fn a_fixed_delay_raises_every_round_trip_and_adds_no_jitter() {
    let [v4, v6] = targets();
    let network = served_network(&[&v4, &v6]);
    for target in [&v4, &v6] {
        let clean = clean_udp_check(&network, target, 100, "10ms");
        let holder = network.hold_toward_server(Hold::Delay(DELAY_MS));
        let delayed = punctual_udp_check(&network, target, 100, "10ms");
        drop(holder);
        let context = format!("clean: {clean:#}\ndelayed: {delayed:#}");
        let (before, after) = (ms(&clean, "min"), ms(&delayed, "min"));
        let delay = f64::from(DELAY_MS);
        // Every datagram is held the full delay: the fastest round trip
        // is at least that, and the clean path's fastest plus the delay,
        // give or take the holder's slack, at most.
        assert!(
            after >= delay && after <= before + delay + HOLDER_SLACK_MS,
            "min RTT {before} ms, then {after} ms with {delay} ms added: {context}"
        );
        // The same delay for every probe keeps them in order and their
        // round trips alike: the jitter stays far below the delay.
        assert_eq!(delayed["path"]["reordered"], 0, "{context}");
        let jitter = delayed["path"]["jitter_ms"].as_f64().unwrap();
        assert!(jitter < delay / 4.0, "jitter {jitter} ms: {context}");
    }
}

#[test]
fn alternating_delays_are_reported_as_jitter_of_their_difference() {
    let [v4, v6] = targets();
    let network = served_network(&[&v4, &v6]);
    for target in [&v4, &v6] {
        // Every second probe held 20 ms, the others not: each round trip
        // differs from the one before by 20 ms, and RFC 3550's jitter,
        // J += (|D| - J) / 16 from 0, is 20 × (1 - (15/16)^119) = 19.99 ms
        // after 120 answers. The probes are 50 ms apart, more than the
        // hold, so none overtakes another.
        let _holder = network.hold_toward_server(Hold::Alternate(ALTERNATE_MS));
        let report = punctual_udp_check(&network, target, 120, "50ms");
        let held = f64::from(ALTERNATE_MS);
        let jitter = report["path"]["jitter_ms"].as_f64().unwrap();
        // The holder's slack makes single differences larger or smaller;
        // the running average of 16 keeps it within a fifth below and a
        // quarter above.
        assert!(
            (held * 0.8..=held * 1.25).contains(&jitter),
            "jitter {jitter} ms for alternating holds of 0 and {held} ms: {report:#}"
        );
        assert_eq!(report["path"]["reordered"], 0, "{report:#}");
        // Half the probes pass unheld, half are held.
        assert!(ms(&report, "min") < held, "{report:#}");
        assert!(ms(&report, "max") >= held, "{report:#}");
    }
}

/// `bench --udp TARGET -c 1 --json ARGS`, repeated until its slowest
/// round trip stayed within the holder's delay and slack: a slower one is
/// a stall of this machine, not of the path (bench, unlike check, does not
/// measure its own lateness apart). Returns the report.
fn punctual_udp_bench(network: &Network, target: &str, args: &[&str]) -> Value {
    let mut slowest = Vec::new();
    for _ in 0..ATTEMPTS {
        let mut all = vec!["bench", "--udp", target, "-c", "1", "--json"];
        all.extend_from_slice(args);
        let run = network.run_client(&all);
        let report: Value = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
        assert_eq!(run.code, 0, "{all:?}: {report:#}{}", run.stderr);
        let max = report["latency_ms"]["max"].as_f64().unwrap();
        if max < f64::from(ALTERNATE_MS) + HOLDER_SLACK_MS {
            return report;
        }
        slowest.push(max);
    }
    panic!(
        "in {ATTEMPTS} runs the slowest round trips were {slowest:?} ms: this machine is too busy"
    )
}

#[test]
fn bench_over_udp_reports_the_paths_jitter_and_reordering() {
    let [target, _] = targets();
    let network = served_network(&[&target]);
    // One message at a time, 50 ms apart, every second one held 20 ms: a
    // jitter of 20 × (1 - (15/16)^59) = 19.6 ms after 60 answers, within
    // the bounds of the check above, and nothing overtaken.
    let holder = network.hold_toward_server(Hold::Alternate(ALTERNATE_MS));
    let report = punctual_udp_bench(&network, &target, &["--rate", "20", "-d", "3s"]);
    drop(holder);
    let path = &report["path"];
    let held = f64::from(ALTERNATE_MS);
    let jitter = path["jitter_ms"].as_f64().unwrap();
    assert!(
        (held * 0.8..=held * 1.25).contains(&jitter),
        "jitter {jitter} ms: {report:#}"
    );
    assert_eq!(path["reordered"], 0, "{report:#}");
    assert_eq!(path["late"], 0, "{report:#}");
    // Two messages at a time: after bench's first probe, the holder's
    // count makes the first of every pair the held one, so the second
    // overtakes it: half the answers reordered, give or take the pair at
    // either end of the window.
    let _holder = network.hold_toward_server(Hold::Alternate(ALTERNATE_MS));
    let report = punctual_udp_bench(
        &network,
        &target,
        &["--pipeline", "2", "--rate", "40", "-d", "2s"],
    );
    let reordered = report["path"]["reordered"].as_f64().unwrap();
    let requests = report["requests"].as_f64().unwrap();
    assert!(requests > 0.0, "{report:#}");
    assert!(
        (reordered - requests / 2.0).abs() <= 1.0,
        "{reordered} reordered of {requests}: {report:#}"
    );
}

#[test]
fn through_a_nat_and_an_mss_clamp_check_bench_and_pipe_prove_the_path() {
    let _alone = one_network_at_a_time();
    let network = Network::build();
    network.masquerade_toward_server();
    network.clamp_mss(1200);
    // Without timestamps the MSS in use is the clamped one itself.
    network.exec(
        &network.client,
        "sysctl",
        &["-qw", "net.ipv4.tcp_timestamps=0"],
    );
    let _server = network.start_echo_server();
    let input = common::random_bytes(1 << 20, 19);
    for target in targets() {
        // The server has no route to the client: every answer below came
        // back through the router's address translation.
        let run = network.run_client(&["check", &target, "-t", "5s"]);
        assert_eq!(
            run.code,
            0,
            "check {target}: {}{}",
            run.stdout(),
            run.stderr
        );
        clean_udp_check(&network, &target, 50, "5ms");
        for udp in [false, true] {
            let mut args = vec!["bench", &target, "-c", "2", "-d", "1s", "--json"];
            if udp {
                args.extend(["--udp", "--rate", "200"]);
            }
            let run = network.run_client(&args);
            let report: Value = serde_json::from_slice(&run.stdout)
                .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
            assert_eq!(run.code, 0, "{args:?}: {report:#}{}", run.stderr);
            assert!(report["requests"].as_u64().unwrap() > 0, "{report:#}");
        }
        let run = network.run_client_with_input(&["pipe", &target], &input);
        assert_eq!(run.code, 0, "pipe {target}: {}", run.stderr);
        assert!(run.stdout == input, "pipe {target}: the echo differs");
        let run = network.run_client(&["mtu", "--tcp", &target, "--json", "--timeout", "5s"]);
        let report: Value = serde_json::from_slice(&run.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
        assert_eq!(report["mss"], 1200, "{report:#}");
    }
}

/// The router drops the first datagram toward the server and no other:
/// `bench --udp` must still find its server (with its next datagram) and
/// run, where one lost datagram used to stop it before it started.
#[test]
fn bench_over_udp_starts_though_its_first_datagram_is_lost() {
    let [target, _] = targets();
    let network = served_network(&[&target]);
    // Packet 0 of every million from here on: the next one only.
    network.exec(
        &network.router,
        "iptables",
        &[
            "-A",
            "FORWARD",
            "-i",
            ROUTER_TO_CLIENT,
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "1000000",
            "--packet",
            "0",
            "-j",
            "DROP",
        ],
    );
    let run = network.run_client(&[
        "bench",
        "--udp",
        &target,
        "-c",
        "1",
        "-d",
        "1s",
        "--rate",
        "100",
        "--timeout",
        "200ms",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr));
    assert_eq!(run.code, 0, "{report:#}{}", run.stderr);
    assert!(report["requests"].as_u64().unwrap() > 0, "{report:#}");
    assert_eq!(
        report["path"]["lost"], 0,
        "only the finding datagram was lost: {report:#}"
    );
}
