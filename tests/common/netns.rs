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

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The server's addresses, as the client reaches them through the router.
pub const SERVER_V4: &str = "198.19.0.2";
pub const SERVER_V6: &str = "2001:db8:2::2";

/// The client's subnets, which the server reaches only through the router.
const CLIENT_SUBNETS: [&str; 2] = ["198.18.0.0/24", "2001:db8:1::/64"];

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
fn ip(args: &[&str]) -> String {
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
    String::from_utf8_lossy(&output.stdout).into_owned()
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
            (&network.server, CLIENT_SUBNETS[0], "198.19.0.1"),
            (&network.server, CLIENT_SUBNETS[1], "2001:db8:2::1"),
        ];
        for (namespace, to, via) in routes {
            ip(&["-n", namespace, "route", "add", to, "via", via]);
        }
        network.wait_for_ipv6_addresses();
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

    /// Waits until no IPv6 address is tentative. Even without duplicate
    /// address detection, an address is tentative until its link has a
    /// carrier, and a veth end learns that its peer is up asynchronously
    /// (the kernel's link watch, up to a second later): a server binding
    /// an address before then fails with EADDRNOTAVAIL.
    fn wait_for_ipv6_addresses(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for namespace in [&self.client, &self.router, &self.server] {
            loop {
                let tentative = ip(&["-n", namespace, "-6", "addr", "show", "tentative"]);
                if tentative.trim().is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "IPv6 addresses in {namespace} still tentative after 10 s:\n{tentative}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
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
            "[server]\nlisten = [\"{SERVER_V4}:{ECHO_PORT}\", \"[{SERVER_V6}]:{ECHO_PORT}\"]\n\
             udp = true\nudp_rate_limit = 0\n"
        ))
        .wrapped_in(&["ip", "netns", "exec", &self.server])
        .start()
    }

    /// Runs echo-client inside the client namespace, to the end.
    pub fn run_client(&self, args: &[&str]) -> super::Finished {
        self.run_client_with_input(args, b"")
    }

    /// Runs echo-client inside the client namespace with `input` on its
    /// standard input, to the end.
    pub fn run_client_with_input(&self, args: &[&str], input: &[u8]) -> super::Finished {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client, super::CLIENT])
            .args(args);
        super::finish_with_patience(command, input)
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

    /// Copies every `every`-th datagram from the client to the echo port
    /// (the first, then one in `every`), so the server gets it twice and
    /// echoes both: iptables' TEE target sends the copy straight to the
    /// server from the router's mangle table, IPv4 and IPv6, each with its
    /// own count.
    pub fn duplicate_toward_server(&self, every: u32) {
        for (filter, server) in [("iptables", SERVER_V4), ("ip6tables", SERVER_V6)] {
            self.exec(
                &self.router,
                filter,
                &[
                    "-t",
                    "mangle",
                    "-A",
                    "PREROUTING",
                    "-i",
                    ROUTER_TO_CLIENT,
                    "-p",
                    "udp",
                    "--dport",
                    ECHO_PORT,
                    "-m",
                    "statistic",
                    "--mode",
                    "nth",
                    "--every",
                    &every.to_string(),
                    "--packet",
                    "0",
                    "-j",
                    "TEE",
                    "--gateway",
                    server,
                ],
            );
        }
    }

    /// Makes the router a NAT: what leaves it toward the server has the
    /// router's own address (MASQUERADE, IPv4 and IPv6), and the server
    /// loses its routes to the client's subnet, so an answer reaches the
    /// client only if the router translates it back.
    pub fn masquerade_toward_server(&self) {
        for filter in ["iptables", "ip6tables"] {
            self.exec(
                &self.router,
                filter,
                &[
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    ROUTER_TO_SERVER,
                    "-j",
                    "MASQUERADE",
                ],
            );
        }
        for subnet in CLIENT_SUBNETS {
            ip(&["-n", &self.server, "route", "del", subnet]);
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

/// The NFQUEUE queue the holder binds in the router namespace (queues are
/// per network namespace, so every network can use the same number).
const HOLDER_QUEUE: &str = "0";

/// The port the tests' echo-server listens on, and so the port whose
/// datagrams the holder takes.
const ECHO_PORT: &str = "7007";

/// `tests/support/nfqueue_holder.c`, compiled once per test process against
/// Debian's libnetfilter-queue-dev: a packet holder that delays or reorders
/// what NFQUEUE hands it.
fn holder_program() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/nfqueue_holder.c"
        );
        let program = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nfqueue_holder");
        // Built beside and renamed into place: other test processes may
        // be running the one there.
        let building = program.with_extension(std::process::id().to_string());
        let output = Command::new("gcc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&building)
            .arg(source)
            .arg("-lnetfilter_queue")
            .output()
            .unwrap_or_else(|e| panic!("cannot run gcc: {e}"));
        assert!(
            output.status.success(),
            "cannot build {source} (needs gcc and libnetfilter-queue-dev, which \
             scripts/test.sh installs): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&building, &program).unwrap();
        program
    })
}

/// How the holder treats the datagrams on their way to the server.
#[derive(Debug, Clone, Copy)]
pub enum Hold {
    /// Every one leaves this many milliseconds late.
    Delay(u32),
    /// Every second one leaves this many milliseconds late, the others at
    /// once.
    Alternate(u32),
    /// The first of every this many waits until the next one has left: one
    /// reordered datagram in so many.
    Swap(u32),
}

/// A running holder and the rules that feed it; dropping it deletes the
/// rules and ends the holder.
pub struct Holder {
    router: String,
    child: Child,
}

/// The router's rule that hands the client's datagrams to the echo port to
/// the holder: `-A` adds it, `-D` deletes it. Without `--queue-bypass`, so
/// that with no holder bound they are dropped, and a test whose holder is
/// missing fails rather than measuring a clean path.
fn holder_rule(action: &str) -> [&str; 12] {
    [
        action,
        "FORWARD",
        "-i",
        ROUTER_TO_CLIENT,
        "-p",
        "udp",
        "--dport",
        ECHO_PORT,
        "-j",
        "NFQUEUE",
        "--queue-num",
        HOLDER_QUEUE,
    ]
}

impl Network {
    /// Starts the holder in the router namespace and hands it every UDP
    /// datagram from the client to the echo port (IPv4 and IPv6), one way
    /// only: the echoes come back untouched, so what is measured is exactly
    /// what `hold` says.
    pub fn hold_toward_server(&self, hold: Hold) -> Holder {
        let (mode, amount) = match hold {
            Hold::Delay(ms) => ("delay", ms),
            Hold::Alternate(ms) => ("alternate", ms),
            Hold::Swap(every) => ("swap", every),
        };
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router])
            .arg(holder_program())
            .args([HOLDER_QUEUE, mode, &amount.to_string()])
            // It ends when this closes: never outlives the test.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the holder: {e}"));
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("piped");
        let _ = BufReader::new(stdout).read_line(&mut ready);
        let holder = Holder {
            router: self.router.clone(),
            child,
        };
        // Bound to its queue before any datagram is sent there.
        assert_eq!(
            ready, "ready\n",
            "the holder did not start (its error is above)"
        );
        for filter in ["iptables", "ip6tables"] {
            self.exec(&self.router, filter, &holder_rule("-A"));
        }
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        for filter in ["iptables", "ip6tables"] {
            let mut args = vec!["netns", "exec", &self.router, filter];
            args.extend(holder_rule("-D"));
            let _ = Command::new("ip").args(args).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
