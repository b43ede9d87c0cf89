//! `echo-client mtu` finds a real path's MTU: through an emulated network
//! (three network namespaces and a router, `common::netns`) whose far link
//! has a smaller MTU than the client's own, once with the router's ICMP
//! "fragmentation needed" / "packet too big" let out (the path signals its
//! MTU) and once with it dropped (a black hole), over IPv4 and IPv6. And
//! `mtu --tcp` reports the MSS a router clamps TCP connections to.
//!
//! Needs root, `ip`, `iptables` and `ip6tables` (scripts/test.sh installs
//! them); behind the `host-tests` feature.

#![cfg(target_os = "linux")]

mod common;

use common::netns::{Network, SERVER_V4, SERVER_V6};
use serde_json::Value;

/// `mtu --json ARGS`, which must succeed.
fn mtu_report(network: &Network, args: &[&str]) -> Value {
    let mut all = vec!["mtu", "--json"];
    all.extend_from_slice(args);
    let run = network.run_client(&all);
    assert_eq!(run.code, 0, "{all:?}: {}{}", run.stdout(), run.stderr);
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout(), run.stderr))
}

#[test]
fn the_far_links_mtu_is_found_whether_signalled_or_swallowed() {
    for mtu in [1400u64, 1280] {
        let network = Network::build();
        network.far_link_mtu(mtu as u32);
        let _server = network.start_echo_server();
        // The black hole first: a signalled run would leave the path MTU
        // in the client's kernel, and the next search would start from it.
        for (signals, limit) in [(false, "black_hole"), (true, "signalled")] {
            network.path_mtu_signals(signals);
            for (target, overhead) in [
                (format!("{SERVER_V4}:7007"), 28),
                (format!("[{SERVER_V6}]:7007"), 48),
            ] {
                let report = mtu_report(&network, &[&target, "--timeout", "500ms"]);
                let context = format!("MTU {mtu}, limit {limit}: {report:#}");
                assert_eq!(report["protocol"], "udp", "{context}");
                assert_eq!(report["path_mtu"], mtu, "{context}");
                assert_eq!(report["largest_payload"], mtu - overhead, "{context}");
                assert_eq!(report["limit"], limit, "{context}");
                assert_eq!(report["first_hop_mtu"], 1500, "{context}");
                assert!(report["seconds"].is_number(), "{context}");
            }
        }
    }
}

#[test]
fn the_human_report_names_the_limit_and_the_search() {
    let network = Network::build();
    network.far_link_mtu(1400);
    let _server = network.start_echo_server();
    network.path_mtu_signals(false);
    let run = network.run_client(&[
        "mtu",
        "-t",
        &format!("{SERVER_V4}:7007"),
        "--timeout",
        "500ms",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout(), run.stderr);
    let text = run.stdout();
    assert!(
        text.contains("path MTU 1400 bytes (largest echo 1372 bytes)")
            && text.contains("a black hole: probes of 1373 bytes and more were lost")
            && text.contains("first hop MTU 1500"),
        "{text}"
    );
}

#[test]
fn a_clamped_tcp_mss_is_reported() {
    let network = Network::build();
    // Without timestamps the MSS in use is the clamped one itself, not less
    // the 12 bytes of the timestamp option.
    network.exec(
        &network.client,
        "sysctl",
        &["-qw", "net.ipv4.tcp_timestamps=0"],
    );
    let _server = network.start_echo_server();
    let v4 = format!("{SERVER_V4}:7007");
    let v6 = format!("[{SERVER_V6}]:7007");
    // Time for a retransmitted SYN, should the first wait for neighbour
    // discovery.
    let tcp = |target: &str| mtu_report(&network, &["--tcp", target, "--timeout", "5s"]);
    assert_eq!(tcp(&v4)["mss"], 1460);
    assert_eq!(tcp(&v6)["mss"], 1440);
    network.clamp_mss(1200);
    for target in [&v4, &v6] {
        let report = tcp(target);
        assert_eq!(report["protocol"], "tcp", "{report:#}");
        assert_eq!(report["mss"], 1200, "{report:#}");
        assert_eq!(report["echoed_bytes"], 64 * 1024, "{report:#}");
    }
}

#[test]
fn a_dead_server_is_no_tiny_mtu() {
    let network = Network::build();
    let run = network.run_client(&["mtu", &format!("{SERVER_V4}:7007"), "--timeout", "200ms"]);
    // Nothing listens: ICMP port unreachable, so unreachable (2).
    assert_eq!(run.code, 2, "{}{}", run.stdout(), run.stderr);
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
}
