#!/usr/bin/env python3
"""Benchmark echo-server side by side with reference echo servers.

Run by scripts/bench.sh, which builds every program first and passes their
paths. Each server runs pinned to one CPU and the load generator to the
other, on loopback, so the server's cost is measured alone:

* cells: ping-pong round trips at several connection counts and message
  sizes, driven by bench/reference/pingpong_client.c (every echo verified).
  Reported per server: round trips per second, latency percentiles and the
  server's CPU time per round trip from the kernel's scheduler accounting.
  Every cell runs several rounds, the servers' order rotating from round to
  round, and the medians are reported, because a virtual machine's timings
  wander. A comparison of rates or CPU with the reference is the median of
  each round's own ratio: the two runs of a round are minutes closer in
  time than the medians of all rounds, so the machine's drift cancels out
  of it.
  Latency percentiles are those of all rounds' round trips together (see
  `bench_stats.histogram_quantile`), which a stall in one run cannot swing.
* idle: the server's resident memory per idle connection, each server freshly
  started, with many connections that have each echoed one byte.
* client: `echo-client bench` in place of the C generator against
  echo-server, to show that the product's own load tool is not the limit.
  Each round of each cell runs the two against echo-server, twice each, in
  mirrored order (`bench_runs.mirrored_turns`), and the verdict pools every
  round of every cell (see `bench_report.not_measurably_slower`).
* udp: UDP ping-pong at several flow counts and datagram sizes, driven by
  the same generator (-m udp), against the plain recvfrom/sendto C loop
  (the reference), the recvmmsg/sendmmsg C loop
  (bench/reference/udp_echo_server.c) and echo-server with UDP on; lost
  datagrams counted. Rounds and paired ratios as in cells.
* churn: connect, one 64-byte echo, close, again, at several client counts
  (-m churn), against the C epoll server: connections per second and the
  server's CPU per connection. Rounds and paired ratios as in cells. Also
  echo-server on a PROXY protocol listener (-m churn -P): what the header
  costs per connection, against the plain listener.
* tls: echo-server's [tls] listener against stunnel in front of the C epoll
  server (what a user would pick instead), the same certificate (made with
  the openssl command line in the run's temporary directory): ping-pong
  at every cell driven by `echo-client bench --tls` (the C generator speaks
  no TLS), whose round trips per second and p99 it reports, with the
  server's CPU per round trip sampled over its measured window
  (`bench_runs.CpuWindow`); handshakes per second from new connections
  (handshake, one-byte echo, close) driven by scripts/tls_handshakes.py,
  and the server's CPU per handshake; memory per idle TLS connection.
  stunnel's CPU and memory are its own plus the C server's: the whole of
  what serves the echo. Rounds and paired ratios as in cells; p99 is each
  run's own (echo-client prints percentiles, not a histogram), compared
  round by round.
* metrics (on request only): echo-server with its Prometheus metrics off
  and on (and scraped), paired the same way: the server's CPU per round
  trip, on against off (target: within 2%).
* noise (on request only): the C server and the C generator measured
  against themselves, the same way, to show how far two runs of the same
  programs differ on this machine; no target is judged on it.

Prints a table with ratios against the C reference and the targets of the
performance work, or everything as JSON.

This file is the command line; the work is in bench_runs.py (running the
servers and the load), bench_stats.py (the statistics) and bench_report.py
(the targets, the table and the README's block).
"""

import argparse
import json
import os
import signal
import sys
import tempfile

from bench_report import (
    check_targets,
    tls_targets,
    udp_and_churn_targets,
    not_measurably_slower,
    readme_block,
    render_text,
    update_readme,
)
from bench_runs import (
    UDP_BENCH_RATE_LIMIT,
    BenchError,
    bench_cells,
    bench_churn,
    proxy_protocol_cost,
    bench_idle,
    bench_metrics,
    bench_noise,
    bench_scaling,
    bench_tls,
    bench_udp,
    describe_machine,
    server_kinds,
)

# The parts of a whole report (what --readme writes), and every part.
WHOLE_REPORT = {"cells", "idle", "client", "scaling", "udp", "churn", "tls"}
PARTS = WHOLE_REPORT | {"metrics", "noise"}


def positive_list(text):
    values = [int(v) for v in text.split(",")]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive whole numbers separated by commas")
    return values


def datagram_sizes(text):
    """UDP sizes: each datagram carries the generator's 8-byte sequence
    number and fits in one IPv4 datagram."""
    values = positive_list(text)
    if min(values) < 8 or max(values) > 65507:
        raise argparse.ArgumentTypeError("give datagram sizes from 8 to 65507 bytes")
    return values


class ArgumentParser(argparse.ArgumentParser):
    """Bad usage exits 64, as scripts/bench.sh documents."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"bench.sh: {message}", file=sys.stderr)
        sys.exit(64)


def parse_args():
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    for program in ("generator", "c-server", "c-udp-server", "tokio-server", "echo-server",
                    "echo-client", "config"):
        parser.add_argument(f"--{program}", required=True)
    parser.add_argument("--stunnel", help="stunnel, for the tls part")
    parser.add_argument("--parts", default=",".join(sorted(WHOLE_REPORT)),
                        type=lambda text: set(text.split(",")))
    parser.add_argument("--connections", type=positive_list, default=[1, 50, 500])
    parser.add_argument("--sizes", type=positive_list, default=[64, 4096])
    parser.add_argument("--udp-sizes", type=datagram_sizes, default=[64, 1400])
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--idle-connections", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--readme", help="also write the report into this README")
    args = parser.parse_args()
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1 or args.idle_connections < 1:
        parser.error("--duration, --rounds and --idle-connections must be positive")
    if args.readme and args.parts != WHOLE_REPORT:
        parser.error("--readme writes the whole report: run it without a part")
    if not args.parts <= PARTS:
        parser.error(f"--parts takes {', '.join(sorted(PARTS))}")
    if "tls" in args.parts and not args.stunnel:
        parser.error("the tls part needs --stunnel")
    return args


def stop_on_sigterm(signum, _frame):
    """Unwinds through the `finally` blocks, which stop the servers."""
    sys.exit(128 + signum)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.readme:
        readme_block(args.readme)  # before the run, not after it
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        raise BenchError("CPUs 0 and 1 are needed: one for the servers, one for the load")
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as workdir:
        kinds = server_kinds(args)
        rows, client = [], []
        if "cells" in args.parts or "client" in args.parts:
            rows, client = bench_cells(args, kinds, workdir)
        idle = bench_idle(args, kinds, workdir) if "idle" in args.parts else []
        scaling = bench_scaling(args, workdir) if "scaling" in args.parts else []
        noise = bench_noise(args, workdir) if "noise" in args.parts else None
        metrics = bench_metrics(args, workdir) if "metrics" in args.parts else None
        udp = bench_udp(args, workdir) if "udp" in args.parts else []
        churn = bench_churn(args, kinds, workdir) if "churn" in args.parts else []
        tls = bench_tls(args, workdir) if "tls" in args.parts else None
    report = {
        "machine": describe_machine(),
        "settings": {
            "config": args.config,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "udp_rate_limit": UDP_BENCH_RATE_LIMIT,
        },
        "cells": rows,
        "idle": idle,
        "client": client,
        "client_overall": not_measurably_slower(client) if client else None,
        "scaling": scaling,
        "noise": noise,
        "metrics": metrics,
        "udp": udp,
        "churn": churn,
        "proxy_protocol_cost": proxy_protocol_cost(churn),
        "tls": tls,
    }
    report["targets"] = (check_targets(report["cells"], idle, report["client_overall"], metrics)
                         + udp_and_churn_targets(udp, churn) + tls_targets(tls))
    text = render_text(report)
    if args.readme:
        update_readme(args.readme, text)
    print(json.dumps(report, indent=2) if args.json else text)


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"bench.sh: {error}")
