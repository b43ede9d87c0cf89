//! `check --udp` measures a real path: through an emulated network (three
//! network namespaces and a router, `common::netns`) whose router drops
//! datagrams at random with iptables' `statistic` match, the loss the
//! client reports must be what the router caused, within stated bounds.
//!
//! Needs root, `ip`, `iptables` and `ip6tables` (scripts/test.sh installs
//! them); behind the `host-tests` feature.

#![cfg(target_os = "linux")]

mod common;

use common::netns::{Network, SERVER_V4, SERVER_V6};
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
    let network = Network::build();
    let _server = network.start_echo_server();
    let v4 = format!("{SERVER_V4}:7007");
    let v6 = format!("[{SERVER_V6}]:7007");
    warm_up(&network, &[&v4, &v6]);
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
    }
}

#[test]
fn loss_thresholds_judge_udp_paths_too() {
    let network = Network::build();
    let _server = network.start_echo_server();
    // 30% each way: 218 to 292 of 500 lost (43.6% to 58.4%), so
    // CRITICAL above 40% and WARNING above 20% both apply; CRITICAL wins.
    let target = format!("{SERVER_V4}:7007");
    warm_up(&network, &[&target]);
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
