//! An emulated network of three network namespaces, for tests that need a
//! real path between client and server with faults on it.
//!
//! Why: loopback never loses, reorders or delays a datagram, so path
//! figures measured over it prove nothing. Here a client namespace and a
//! server namespace are joined through a router namespace by veth pairs,
//! and the router's packet filter injects faults (this machine's kernel has
//! no netem). Addresses come from 198.18.0.0/15 (reserved for network
//! benchmarks, RFC 2544) and 2001:db8::/32 (documentation, RFC 3849), and no
//! namespace has a route outside: nothing leaves the namespaces the test
//! made. Dropping the [`Network`] deletes them, also when a test panics.
//!
//! ```text
//!   client ns          router ns                 server ns
//!   [c0] 198.18.0.2 -- [r0] 198.18.0.1
//!                       [r1] 198.19.0.1 -------- [s0] 198.19.0.2
//!        2001:db8:1::2      2001:db8:1::1 / 2001:db8:2::1   2001:db8:2::2
//! ```

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's addresses, as the client reaches them through the router.
pub const SERVER_V4: &str = "198.19.0.2";
pub const SERVER_V6: &str = "2001:db8:2::2";

/// The router's interfaces facing the client and the server: the packet
/// filter matches on them to drop one way or the other.
pub const ROUTER_TO_CLIENT: &str = "r0";
pub const ROUTER_TO_SERVER: &str = "r1";

/// Three namespaces and their links; deleted on drop.
pub struct Network {
    pub client: String,
    pub router: String,
    pub server: String,
}

/// Runs `ip ARGS` to success, or fails the test loudly with what `ip` said.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (is iproute2 installed?): {e}"));
    assert!(
        output.status.success(),
        "ip {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Network {
    /// Builds the three namespaces, their links, addresses and routes.
    pub fn build() -> Network {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Unique per test process and per network within it; the interface
        // names need not be, since each lives in its own namespace.
        let tag = format!(
            "pq{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Named before any is made: if making one fails, dropping `network`
        // deletes those that were made.
        let network = Network {
            client: format!("{tag}-c"),
            router: format!("{tag}-r"),
            server: format!("{tag}-s"),
        };
        for name in [&network.client, &network.router, &network.server] {
            ip(&["netns", "add", name]);
            // No duplicate address detection on the links made next: their
            // link-local addresses would stay tentative for a second or
            // two, and neighbour discovery, which needs them, would hold
            // and drop the first datagrams (counted as path loss).
            network.exec(
                name,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            );
        }
        network.link(&network.client, "c0", ROUTER_TO_CLIENT);
        network.link(&network.server, "s0", ROUTER_TO_SERVER);
        let addresses = [
            (&network.client, "c0", "198.18.0.2/24", "2001:db8:1::2/64"),
            (&network.router, "r0", "198.18.0.1/24", "2001:db8:1::1/64"),
            (&network.router, "r1", "198.19.0.1/24", "2001:db8:2::1/64"),
            (&network.server, "s0", "198.19.0.2/24", "2001:db8:2::2/64"),
        ];
        for (namespace, device, v4, v6) in addresses {
            ip(&["-n", namespace, "addr", "add", v4, "dev", device]);
            ip(&["-n", namespace, "addr", "add", v6, "dev", device]);
        }
        for namespace in [&network.client, &network.router, &network.server] {
            ip(&["-n", namespace, "link", "set", "lo", "up"]);
        }
        for (namespace, device) in [
            (&network.client, "c0"),
            (&network.router, "r0"),
            (&network.router, "r1"),
            (&network.server, "s0"),
        ] {
            ip(&["-n", namespace, "link", "set", device, "up"]);
        }
        // Each end host reaches only the other end's subnet, via the router.
        let routes = [
            (&network.client, "198.19.0.0/24", "198.18.0.1"),
            (&network.client, "2001:db8:2::/64", "2001:db8:1::1"),
            (&network.server, "198.18.0.0/24", "198.19.0.1"),
            (&network.server, "2001:db8:1::/64", "2001:db8:2::1"),
        ];
        for (namespace, to, via) in routes {
            ip(&["-n", namespace, "route", "add", to, "via", via]);
        }
        network.exec(
            &network.router,
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        );
        network
    }

    /// A veth pair with one end in `namespace` and the other in the router.
    fn link(&self, namespace: &str, inside: &str, router_end: &str) {
        ip(&[
            "-n",
            namespace,
            "link",
            "add",
            inside,
            "type",
            "veth",
            "peer",
            "name",
            router_end,
            "netns",
            &self.router,
        ]);
    }

    /// Runs a program inside `namespace` to success (a missing program, such
    /// as iptables, fails the test with `ip netns exec`'s message).
    pub fn exec(&self, namespace: &str, program: &str, args: &[&str]) {
        let mut full = vec!["netns", "exec", namespace, program];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Drops each datagram that enters the router from either side with
    /// `probability` (0 to 1), for IPv4 and IPv6, replacing earlier faults.
    /// iptables' `statistic` match decides each packet independently.
    pub fn random_loss_each_way(&self, probability: f64) {
        for filter in ["iptables", "ip6tables"] {
            self.exec(&self.router, filter, &["-F", "FORWARD"]);
            if probability == 0.0 {
                continue;
            }
            for device in [ROUTER_TO_CLIENT, ROUTER_TO_SERVER] {
                self.exec(
                    &self.router,
                    filter,
                    &[
                        "-A",
                        "FORWARD",
                        "-i",
                        device,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability.to_string(),
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
    }
}

impl Network {
    /// An echo-server in the server namespace on both of its addresses,
    /// port 7007, TCP and UDP, with `udp_rate_limit = 0` (unlimited): the
    /// default of 100 datagrams a second per source would drop the tests'
    /// probes and be taken for path loss.
    pub fn start_echo_server(&self) -> super::Server {
        super::Launcher::new(&format!(
            "[server]\nlisten = [\"{SERVER_V4}:7007\", \"[{SERVER_V6}]:7007\"]\n\
             udp = true\nudp_rate_limit = 0\n"
        ))
        .wrapped_in(&["ip", "netns", "exec", &self.server])
        .start()
    }

    /// Runs echo-client inside the client namespace, to the end.
    pub fn run_client(&self, args: &[&str]) -> super::Finished {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client, super::CLIENT])
            .args(args);
        super::finish_with_patience(command, b"")
    }

    /// Sets the MTU of the router's far link (router to server), both ends:
    /// the client's first hop keeps 1500, so only the path can tell it.
    pub fn far_link_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        ip(&[
            "-n",
            &self.router,
            "link",
            "set",
            ROUTER_TO_SERVER,
            "mtu",
            &mtu,
        ]);
        ip(&["-n", &self.server, "link", "set", "s0", "mtu", &mtu]);
    }

    /// Whether the router's own ICMP "fragmentation needed" (IPv4) and
    /// "packet too big" (IPv6) leave it: when not, the path is an MTU black
    /// hole. Messages the router makes pass its OUTPUT chain.
    pub fn path_mtu_signals(&self, sent: bool) {
        for (filter, protocol, kind) in [
            ("iptables", "icmp", "--icmp-type"),
            ("ip6tables", "icmpv6", "--icmpv6-type"),
        ] {
            self.exec(&self.router, filter, &["-F", "OUTPUT"]);
            if sent {
                continue;
            }
            let name = if protocol == "icmp" {
                "fragmentation-needed"
            } else {
                "packet-too-big"
            };
            self.exec(
                &self.router,
                filter,
                &["-A", "OUTPUT", "-p", protocol, kind, name, "-j", "DROP"],
            );
        }
    }

    /// Clamps the MSS of TCP connections through the router to `mss`, as
    /// a VPN or PPPoE router does.
    pub fn clamp_mss(&self, mss: u32) {
        for filter in ["iptables", "ip6tables"] {
            self.exec(
                &self.router,
                filter,
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "FORWARD",
                    "-p",
                    "tcp",
                    "--tcp-flags",
                    "SYN,RST",
                    "SYN",
                    "-j",
                    "TCPMSS",
                    "--set-mss",
                    &mss.to_string(),
                ],
            );
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends and its filter rules.
        for name in [&self.client, &self.router, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
