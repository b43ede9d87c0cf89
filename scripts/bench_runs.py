"""Running the servers and the load for scripts/compare_servers.py: each
server pinned to its CPU, the load generators on the other, and the parts of
the benchmark as rounds of runs."""

import collections
import datetime
import json
import os
import platform
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from bench_stats import histogram_quantile, median_of, paired_ratio, pooled_ratio

SERVER_CPU = "0"
LOAD_CPU = "1"
REFERENCE = "C epoll"
PRODUCT = "echo-server"
ONE_WORKER = f"{PRODUCT}, 1 worker"
METRICS_OFF = f"{PRODUCT}, metrics off"
METRICS_ON = f"{PRODUCT}, metrics on"
# echo-server in the churn part with a listener that takes the PROXY
# protocol, every connection opening with a v2 header (the generator's -P).
PROXIED = f"{PRODUCT}, PROXY v2"
# How often the metrics part scrapes the server with metrics on: more often
# than any Prometheus would, so that the scrapes' own cost shows.
SCRAPE_INTERVAL_S = 0.5
# The UDP references (bench/reference/udp_echo_server.c): the plain loop is
# the one echo-server's UDP is judged against.
C_UDP_PLAIN = "C recvfrom"
C_UDP_BATCH = "C recvmmsg"
# echo-server's UDP per-source rate limit in the udp part: far above what one
# flow sends (each flow is a source address of its own), so the limiter does
# its bookkeeping for every datagram, as in production, and drops none.
UDP_BENCH_RATE_LIMIT = 1_000_000
# The message of the churn part: one small echo per connection.
CHURN_SIZE = 64
# The TLS part: echo-server's [tls] listener against stunnel in front of
# the C epoll server, what a user would pick instead.
STUNNEL = f"stunnel + {REFERENCE}"
# What the TLS part's ping-pong adds to the warm-up per connection, so that
# the connections' handshakes are done before the measured window: about
# twice what a handshake cost the slower server here (some 1.5 ms of CPU).
HANDSHAKE_ALLOWANCE_S = 0.003
# Concurrent clients of the TLS part's handshake load (scripts/tls_handshakes.py).
HANDSHAKE_CLIENTS = 8
# Idle TLS connections held open at once: completing each handshake from
# Python takes a millisecond or two, and stunnel gives each a thread.
TLS_IDLE_CONNECTIONS = 1000
# The name the bench's certificate is for, which its clients ask for.
TLS_SERVER_NAME = "localhost"
GENERATOR = "C generator"
ECHO_CLIENT = "echo-client"
STARTUP_PATIENCE_S = 10


class BenchError(Exception):
    """Something kept the benchmark from running; the message says what."""


class Server:
    """An echo server under test, pinned to `cpus` (SERVER_CPU unless told).

    It is ready when its log shows `address_pattern`, whose group is its
    address; or, for a server that says nothing when ready (`address`
    given, and no pattern), when a connection to that address succeeds.
    """

    def __init__(self, name, argv, address_pattern, workdir, cpus=SERVER_CPU,
                 generator_flags=(), address=None):
        self.name = name
        # What the load generator must add to speak to it.
        self.generator_flags = list(generator_flags)
        self.cpus = cpus
        self.argv = argv
        self.address_pattern = address_pattern and re.compile(address_pattern)
        self.log_path = os.path.join(workdir, re.sub(r"\W+", "-", name) + ".log")
        self.process = None
        self.address = address

    def start(self):
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                ["taskset", "--cpu-list", self.cpus, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_PATIENCE_S
        while time.monotonic() < deadline:
            if self.ready():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.name} did not start:\n{self.log()}")

    def ready(self):
        if not self.address_pattern:
            try:
                socket.create_connection(self.address, timeout=1).close()
                return True
            except OSError:
                return False
        match = self.address_pattern.search(self.log())
        if match:
            host, port = match.group(1).rsplit(":", 1)
            self.address = (host, int(port))
        return bool(match)

    @property
    def pid(self):
        # taskset execs the server, so its pid is the server's.
        return self.process.pid

    @property
    def pids(self):
        """The processes that serve the echo."""
        return [self.pid]

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.name} (pid {self.pid})")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port():
    """A loopback port free now, for a server that cannot be told port 0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Terminated:
    """A plain echo server with a TLS terminator in front: stunnel, as a
    user puts it in front of an echo without TLS, both pinned to the server
    CPU. What serves the echo is the two together, so its CPU time and its
    memory are the sum of both processes'."""

    def __init__(self, name, backend, stunnel, tls_files, workdir):
        self.name = name
        self.backend = backend
        self.stunnel, self.tls_files, self.workdir = stunnel, tls_files, workdir
        self.front = None
        self.address = None

    def start(self):
        self.backend.start()
        host, port = self.backend.address
        self.address = ("127.0.0.1", free_port())
        config = os.path.join(self.workdir, "stunnel.conf")
        with open(config, "w", encoding="utf-8") as out:
            # stunnel's leanest: no log line per connection (the service's
            # debug level; the default, notice, writes three), and
            # TCP_NODELAY on both sides, as the two echo servers set it.
            out.write(
                "foreground = yes\npid =\n"
                "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n"
                f"[echo]\ndebug = warning\naccept = {self.address[0]}:{self.address[1]}\n"
                f"connect = {host}:{port}\ncert = {self.tls_files['certificate']}\n"
                f"key = {self.tls_files['key']}\n")
        self.front = Server(f"stunnel in front of {self.backend.name}", [self.stunnel, config],
                            None, self.workdir, address=self.address)
        try:
            self.front.start()
        except BenchError:
            self.backend.stop()
            raise
        return self

    @property
    def pids(self):
        return self.backend.pids + self.front.pids

    def rss_kib(self):
        return self.backend.rss_kib() + self.front.rss_kib()

    def stop(self):
        if self.front:
            self.front.stop()
        self.backend.stop()


def server_kinds(args):
    """The servers compared, reference first, as (name, argv, address pattern)."""
    return [
        (REFERENCE, [args.c_server, "127.0.0.1", "0"], r"listening on (\S+)"),
        ("tokio minimal", [args.tokio_server, "127.0.0.1:0"], r"listening on (\S+)"),
        (
            PRODUCT,
            [args.echo_server, "--config", args.config, "--port", "0"],
            r"tcp://([0-9.]+:[0-9]+)",
        ),
    ]


def run_json(command, what, timeout):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except subprocess.TimeoutExpired as expired:
        raise BenchError(f"{what} did not finish within {timeout:.0f} s") from expired
    if result.returncode != 0:
        raise BenchError(f"{what} failed (exit {result.returncode}):\n{result.stderr}{result.stdout}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise BenchError(f"{what} printed no JSON report ({error}):\n{result.stdout}") from error


def generator_run(args, server, mode, connections, size):
    """One run of the C load generator in `mode` (tcp, udp or churn); the
    server's CPU time per echo (per connection in churn) included."""
    host, port = server.address
    command = [
        "taskset", "--cpu-list", LOAD_CPU, args.generator, "-m", mode,
        "-w", str(args.warmup), "-p", str(server.pid), *server.generator_flags,
        host, str(port), str(connections), str(args.duration), str(size),
    ]
    run = run_json(command, f"the load generator against {server.name}",
                   args.duration + args.warmup + 60)
    if run["requests"] == 0:
        raise BenchError(f"{server.name} echoed nothing ({mode}) at {connections} × {size} B")
    return {
        "requests_per_s": run["requests_per_s"],
        "p50_us": run["p50_us"],
        "p99_us": run["p99_us"],
        "p999_us": run["p999_us"],
        "cpu_ns_per_echo": run["server_cpu_ns"] / run["requests"],
        "echoes": run["requests"],
        "lost": run["lost"],
        "late": run["late"],
        "latency_histogram_ns": run["latency_histogram_ns"],
    }


def pingpong(args, server, connections, size):
    """One run of the C ping-pong generator over TCP."""
    run = generator_run(args, server, "tcp", connections, size)
    return {
        "requests_per_s": run["requests_per_s"],
        "p50_us": run["p50_us"],
        "p99_us": run["p99_us"],
        "p999_us": run["p999_us"],
        "cpu_ns_per_round_trip": run["cpu_ns_per_echo"],
        "latency_histogram_ns": run["latency_histogram_ns"],
    }


def echo_client_bench(args, server, connections, size, cpus=LOAD_CPU, flags=(), warmup=None):
    """One run of `echo-client bench` in the generator's place, with a load
    thread per CPU of `cpus`, `flags` added (--tls and its options) and the
    warm-up of `args` unless told: its JSON report."""
    host, port = server.address
    warmup = args.warmup if warmup is None else warmup
    command = [
        "taskset", "--cpu-list", cpus, args.echo_client, "bench", f"{host}:{port}",
        "--json", "-c", str(connections), "-s", str(size),
        "-d", f"{args.duration}s", "--warmup", f"{warmup}s", *flags,
    ]
    report = run_json(command, "echo-client bench", args.duration + warmup + 60)
    errors = report["errors"]
    if any(errors.values()):
        raise BenchError(f"echo-client bench saw errors: {errors}")
    return report


def process_cpu_ns(pids):
    """Nanoseconds the processes have been on a CPU, with the threads that
    have ended (/proc/PID/stat: user and system time, in clock ticks).
    Coarser than the generator's scheduler accounting, which sums live
    threads only: stunnel ends a thread with each connection."""
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Past the command's parentheses: state is field 3, utime 14, stime 15.
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) * tick_ns
    return total


class CpuWindow:
    """The CPU time of a server's processes over a load tool's measured
    window, for tools that cannot read it themselves: sampled from a thread
    at the window's planned edges, `warmup` and `warmup + duration` seconds
    after entering (just before the tool starts). The tool's own start (a
    process and, for echo-client, a first echo) shifts its window a few
    milliseconds later, the same for every server; at a steady rate that
    changes the CPU per echo by nothing measurable."""

    def __init__(self, server, warmup, duration):
        self.pids, self.warmup, self.duration = server.pids, warmup, duration
        self.samples = []
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        started = time.monotonic()
        for edge in (self.warmup, self.warmup + self.duration):
            time.sleep(max(0.0, started + edge - time.monotonic()))
            self.samples.append(process_cpu_ns(self.pids))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.thread.join()

    @property
    def cpu_ns(self):
        if len(self.samples) != 2:
            raise BenchError("the load ended before its measured window did")
        return self.samples[1] - self.samples[0]


def cells_of(args):
    """Every (connections, size) cell, in the order they run."""
    return [(c, s) for s in args.sizes for c in args.connections]


def rotated(servers, round_index):
    """The servers in the order a round runs them: rotating from round to
    round keeps any drift from favouring one server.

    >>> rotated(["A", "B", "C"], 1)
    ['B', 'C', 'A']
    """
    shift = round_index % len(servers)
    return servers[shift:] + servers[:shift]


def mirrored_turns(pair, round_index, cell_index):
    """The order in which a pair runs, each twice, back to back: A B B A,
    or B A A B, each first by turns over cells and rounds alike. Of two
    runs back to back the second tends to be the faster (by 8% at one
    connection here), and the machine drifts: mirrored, each of the two
    has one early and one late run, so a steady drift over the four
    cancels out of the sum of each one's two, and averaging two runs
    halves what one run's jitter does to the ratio.

    >>> mirrored_turns(["A", "B"], 0, 0), mirrored_turns(["A", "B"], 0, 1)
    (['A', 'B', 'B', 'A'], ['B', 'A', 'A', 'B'])
    """
    first, second = pair if (round_index + cell_index) % 2 == 0 else pair[::-1]
    return [first, second, second, first]


def mirrored_runs(pair, round_index, cell_index, run):
    """Each of the pair's two runs, in `mirrored_turns` order, keyed by the
    pair's members."""
    runs = {name: [] for name in pair}
    for name in mirrored_turns(pair, round_index, cell_index):
        runs[name].append(run(name))
    return runs


def bench_cells(args, kinds, workdir):
    """Every cell for every server, and the load tools' pairs, in rounds.

    Returns the servers' rows of medians (with "cells") and the load tools'
    comparison (with "client").
    """
    compare_servers = "cells" in args.parts
    compare_tools = "client" in args.parts
    if not compare_servers:
        # The load tools are compared on echo-server alone.
        kinds = [kind for kind in kinds if kind[0] == PRODUCT]
    servers = [Server(name, argv, pattern, workdir) for name, argv, pattern in kinds]
    product = next(server for server in servers if server.name == PRODUCT)
    cells = cells_of(args)
    runs = {(server.name, cell): [] for server in servers for cell in cells}
    # Every measured round trip of every round, by server and cell.
    latencies = {key: collections.Counter() for key in runs}
    tool_rates = {cell: {GENERATOR: [], ECHO_CLIENT: []} for cell in cells}
    try:
        for server in servers:
            server.start()
        for round_index in range(args.rounds):
            order = rotated(servers, round_index)
            for cell_index, cell in enumerate(cells):
                if compare_servers:
                    for server in order:
                        run = pingpong(args, server, *cell)
                        latencies[(server.name, cell)].update(
                            dict(run.pop("latency_histogram_ns")))
                        runs[(server.name, cell)].append(run)
                if compare_tools:
                    # The load tools get runs of their own, two each.
                    rates = mirrored_runs(
                        [GENERATOR, ECHO_CLIENT], round_index, cell_index,
                        lambda tool, cell=cell: (
                            pingpong(args, product, *cell)["requests_per_s"]
                            if tool == GENERATOR else echo_client_bench(args, product, *cell)["requests_per_s"]))
                    for tool, runs_of_tool in rates.items():
                        tool_rates[cell][tool].append(runs_of_tool)
                progress(f"round {round_index + 1}/{args.rounds}: {cell[0]} × {cell[1]} B done")
    finally:
        for server in servers:
            server.stop()
    rows = []
    for cell in cells if compare_servers else []:
        reference_runs = runs[(REFERENCE, cell)]
        reference_p99 = histogram_quantile(latencies[(REFERENCE, cell)], 0.99)
        for server in servers:
            cell_runs = runs[(server.name, cell)]
            row = {
                "server": server.name,
                "connections": cell[0],
                "size": cell[1],
                **{key: median_of(cell_runs, key) for key in cell_runs[0]},
            }
            # Latency is the percentile of all rounds' round trips together:
            # one run's p99 can double when a stall of the machine lands in
            # it, and a median of nine such figures still strays by 20%.
            for key, q in (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999)):
                row[key] = histogram_quantile(latencies[(server.name, cell)], q)
            row["p99_all_rounds_vs_c"] = row["p99_us"] / reference_p99
            for key, name in (("cpu_ns_per_round_trip", "cpu_vs_c"), ("p99_us", "p99_vs_c")):
                row[name] = paired_ratio([run[key] for run in cell_runs],
                                         [run[key] for run in reference_runs])
            row["rounds"] = cell_runs
            rows.append(row)
    client = []
    for cell in cells if compare_tools else []:
        # Each round's figure for a tool: the mean of its two runs.
        generator, echo_client = ([statistics.mean(pair) for pair in tool_rates[cell][tool]]
                                  for tool in (GENERATOR, ECHO_CLIENT))
        client.append({
            "connections": cell[0],
            "size": cell[1],
            "generator_requests_per_s": statistics.median(generator),
            "echo_client_requests_per_s": statistics.median(echo_client),
            "echo_client_vs_generator": paired_ratio(echo_client, generator),
            "generator_rounds": generator,
            "echo_client_rounds": echo_client,
            "generator_runs": tool_rates[cell][GENERATOR],
            "echo_client_runs": tool_rates[cell][ECHO_CLIENT],
        })
    return rows, client


def bench_noise(args, workdir):
    """The C reference twice, as twins A and B, in the comparisons' place.

    Each round of each cell drives A and B with the C generator, twice
    each, as the client part runs its two tools (`mirrored_turns`). B's CPU
    per round trip against A's, from each twin's first run, is what the
    server comparison would show for two equal servers (its pairs are a run
    or two apart, as it rotates three servers), and B's round trips per
    second against A's, from both runs of each, is how far two equal
    programs measured that way differ, which is what the load tools'
    comparison has to see through.
    """
    _, argv, pattern = server_kinds(args)[0]
    twins = [Server(f"{REFERENCE} {twin}", argv, pattern, workdir) for twin in ("A", "B")]
    cells = cells_of(args)
    runs = {cell: {twin.name: [] for twin in twins} for cell in cells}
    try:
        for twin in twins:
            twin.start()
        for round_index in range(args.rounds):
            for cell_index, cell in enumerate(cells):
                twin_runs = mirrored_runs(twins, round_index, cell_index,
                                          lambda twin, cell=cell: pingpong(args, twin, *cell))
                for twin, (first, second) in twin_runs.items():
                    runs[cell][twin.name].append({
                        "cpu_ns_per_round_trip": first["cpu_ns_per_round_trip"],
                        "requests_per_s": statistics.mean(
                            [first["requests_per_s"], second["requests_per_s"]]),
                    })
                progress(f"noise round {round_index + 1}/{args.rounds}: "
                         f"{cell[0]} × {cell[1]} B done")
    finally:
        for twin in twins:
            twin.stop()
    results = []
    for cell in cells:
        a, b = (runs[cell][twin.name] for twin in twins)
        results.append({
            "connections": cell[0],
            "size": cell[1],
            **{f"{key}_b_vs_a": paired_ratio([run[key] for run in b], [run[key] for run in a])
               for key in ("cpu_ns_per_round_trip", "requests_per_s")},
        })
    pooled = [ratio for result in results
              for ratio in result["requests_per_s_b_vs_a"]["rounds"]]
    return {"cells": results, "requests_per_s_overall": pooled_ratio(pooled)}


def edited_config(config_path, workdir, name, edits):
    """A copy of the shipped configuration named `name` in workdir, with each
    (pattern, replacement, purpose) of `edits` applied to exactly one line."""
    with open(config_path, encoding="utf-8") as config:
        text = config.read()
    for pattern, replacement, purpose in edits:
        text, found = re.subn(pattern, replacement, text, flags=re.M)
        if found != 1:
            raise BenchError(f"{config_path} has {found} lines matching {pattern!r}, not the one "
                             f"that {purpose}")
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as config:
        config.write(text)
    return path


def workers_config(config_path, workdir, workers):
    """A copy of the shipped configuration with `workers = N`."""
    return edited_config(config_path, workdir, f"workers-{workers}.toml", [
        (r"^workers\s*=.*$", f"workers = {workers}", "the scaling part sets")])


def workers_name(workers):
    return ONE_WORKER if workers == 1 else f"{PRODUCT}, {workers} workers"


def scaling_cpu_sets(cpus):
    """The CPUs the scaling part gives the servers and the load, as CPU
    lists, and the worker counts it runs echo-server with. With 4 CPUs or
    more, the servers get the first half and the load the second, so that
    neither takes the other's cores; with fewer the two share them all (the
    load needs about a core of its own, so on 2 a second worker cannot be
    measured apart from it). Worker counts: 1, the powers of two below the
    servers' CPUs, and their number.

    >>> scaling_cpu_sets({0, 1})
    ('0,1', '0,1', [1, 2])
    >>> scaling_cpu_sets(range(16))
    ('0,1,2,3,4,5,6,7', '8,9,10,11,12,13,14,15', [1, 2, 4, 8])
    >>> scaling_cpu_sets(range(6))
    ('0,1,2', '3,4,5', [1, 2, 3])
    """
    cpus = sorted(cpus)
    servers, load = (cpus, cpus) if len(cpus) < 4 else (cpus[:len(cpus) // 2],
                                                        cpus[len(cpus) // 2:])
    counts = [1]
    while counts[-1] * 2 < len(servers):
        counts.append(counts[-1] * 2)
    if counts[-1] < len(servers):
        counts.append(len(servers))
    return ",".join(map(str, servers)), ",".join(map(str, load)), counts


def bench_scaling(args, workdir):
    """echo-server with 1 worker and more, and the C loop, on the servers'
    CPUs, driven by `echo-client bench` with a load thread per CPU of the
    load's (`scaling_cpu_sets`): on a machine of 4 CPUs or more the two
    sets are apart, so the part runs unchanged on a bigger machine. On 2
    CPUs server and load share both, so this shows what a second worker
    gains where the two share the machine, not what a server with two cores
    to itself could do. Only the busiest connection count runs; the
    servers' order rotates from round to round, and each server's rate is
    paired with the one worker's of the same round.
    """
    server_cpus, load_cpus, worker_counts = scaling_cpu_sets(os.sched_getaffinity(0))
    kinds_by_name = {kind[0]: kind for kind in server_kinds(args)}
    _, reference_argv, reference_pattern = kinds_by_name[REFERENCE]
    product_pattern = kinds_by_name[PRODUCT][2]
    # (name, argv, address pattern, the workers it must start; None for C)
    kinds = [
        (workers_name(workers),
         [args.echo_server, "--config", workers_config(args.config, workdir, workers),
          "--port", "0"],
         product_pattern, workers)
        for workers in worker_counts
    ] + [(REFERENCE, reference_argv, reference_pattern, None)]
    servers = [Server(name, argv, pattern, workdir, cpus=server_cpus)
               for name, argv, pattern, _ in kinds]
    cells = [(max(args.connections), size) for size in args.sizes]
    rates = {(server.name, cell): [] for server in servers for cell in cells}
    try:
        for server in servers:
            server.start()
        for server, (*_, wanted) in zip(servers, kinds):
            started = re.search(r"workers=(\d+)", server.log())
            if wanted is not None and (not started or int(started.group(1)) != wanted):
                raise BenchError(f"{server.name} did not start {wanted} worker(s):\n{server.log()}")
        for round_index in range(args.rounds):
            order = rotated(servers, round_index)
            for cell in cells:
                for server in order:
                    rates[(server.name, cell)].append(
                        echo_client_bench(args, server, *cell, cpus=load_cpus)["requests_per_s"])
                progress(f"scaling round {round_index + 1}/{args.rounds}: "
                         f"{cell[0]} × {cell[1]} B done")
    finally:
        for server in servers:
            server.stop()
    return [
        {
            "server": server.name,
            "connections": cell[0],
            "size": cell[1],
            "server_cpus": server_cpus,
            "load_cpus": load_cpus,
            "requests_per_s": statistics.median(rates[(server.name, cell)]),
            "vs_one_worker": paired_ratio(rates[(server.name, cell)],
                                          rates[(ONE_WORKER, cell)]),
            "rounds": rates[(server.name, cell)],
        }
        for cell in cells for server in servers
    ]


def metrics_config(config_path, workdir):
    """A copy of the shipped configuration with `[metrics] listen` set to a
    free loopback port (the shipped file has it commented out)."""
    return edited_config(config_path, workdir, "metrics.toml", [
        (r'^# listen = "127\.0\.0\.1:9862"$', 'listen = "127.0.0.1:0"',
         "the metrics part turns on")])


def udp_config(config_path, workdir):
    """A copy of the shipped configuration with UDP on and its per-source
    rate limit at UDP_BENCH_RATE_LIMIT."""
    return edited_config(config_path, workdir, "udp.toml", [
        (r"^udp = false$", "udp = true", "the udp part turns on"),
        (r"^udp_rate_limit = \d+$", f"udp_rate_limit = {UDP_BENCH_RATE_LIMIT}",
         "the udp part raises"),
    ])


class Scraper:
    """Scrapes a server's /metrics every SCRAPE_INTERVAL_S, as Prometheus
    would, until stopped; a failed scrape stops the benchmark."""

    def __init__(self, url):
        self.url = url
        self.scrapes = 0
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopping.wait(SCRAPE_INTERVAL_S):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    if b"echo_server_tcp_connections_accepted" not in response.read():
                        raise BenchError(f"{self.url} answered without the metrics")
                self.scrapes += 1
            except (OSError, BenchError) as error:
                self.error = error
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        self.thread.join()
        if self.error:
            raise BenchError(f"scraping {self.url} failed: {self.error}")


def bench_metrics(args, workdir):
    """echo-server with metrics off (as shipped) and on (`[metrics] listen`,
    scraped every SCRAPE_INTERVAL_S), the same binary, both pinned to the
    server CPU: the server's CPU per round trip, on against off. Each round
    of each cell runs the two twice each in mirrored order
    (`mirrored_turns`); a round's figure is the mean of each one's two runs.
    The counting itself happens in both (it is always on); what differs is
    the endpoint and the scrapes, which run on a thread of the server's own
    and are charged to its CPU time.
    """
    _, product_argv, product_pattern = next(
        kind for kind in server_kinds(args) if kind[0] == PRODUCT)
    on_argv = [args.echo_server, "--config", metrics_config(args.config, workdir), "--port", "0"]
    servers = {
        METRICS_OFF: Server(METRICS_OFF, product_argv, product_pattern, workdir),
        METRICS_ON: Server(METRICS_ON, on_argv, product_pattern, workdir),
    }
    cells = cells_of(args)
    cpu = {cell: {name: [] for name in servers} for cell in cells}
    try:
        for server in servers.values():
            server.start()
        endpoint = re.search(r'metrics="(http://[^"]+)"', servers[METRICS_ON].log())
        if not endpoint:
            raise BenchError(f"{METRICS_ON} serves no metrics:\n{servers[METRICS_ON].log()}")
        with Scraper(endpoint.group(1)) as scraper:
            for round_index in range(args.rounds):
                for cell_index, cell in enumerate(cells):
                    runs = mirrored_runs(
                        list(servers), round_index, cell_index,
                        lambda name, cell=cell: pingpong(args, servers[name], *cell))
                    for name, (first, second) in runs.items():
                        cpu[cell][name].append(statistics.mean(
                            [first["cpu_ns_per_round_trip"], second["cpu_ns_per_round_trip"]]))
                    progress(f"metrics round {round_index + 1}/{args.rounds}: "
                             f"{cell[0]} × {cell[1]} B done")
        scrapes = scraper.scrapes
    finally:
        for server in servers.values():
            server.stop()
    results = [
        {
            "connections": cell[0],
            "size": cell[1],
            "off_cpu_ns_per_round_trip": statistics.median(cpu[cell][METRICS_OFF]),
            "on_cpu_ns_per_round_trip": statistics.median(cpu[cell][METRICS_ON]),
            "on_vs_off": paired_ratio(cpu[cell][METRICS_ON], cpu[cell][METRICS_OFF]),
        }
        for cell in cells
    ]
    pooled = pooled_ratio([ratio for result in results for ratio in result["on_vs_off"]["rounds"]])
    return {"cells": results, "on_vs_off_overall": pooled, "scrapes": scrapes}


def in_rounds(args, servers, cells, run, part):
    """Every cell for every server in rounds, the servers' order rotating
    from round to round, as the cells part runs them: each server's runs
    (`run(server, cell)`) by (server name, cell)."""
    runs = {(server.name, cell): [] for server in servers for cell in cells}
    try:
        for server in servers:
            server.start()
        for round_index in range(args.rounds):
            for cell in cells:
                for server in rotated(servers, round_index):
                    runs[(server.name, cell)].append(run(server, cell))
                progress(f"{part} round {round_index + 1}/{args.rounds}: "
                         f"{cell[0]} × {cell[1]} B done")
    finally:
        for server in servers:
            server.stop()
    return runs


def compare_in_rounds(args, servers, cells, run, reference, part):
    """Every cell for every server in rounds (`in_rounds`); `run(server,
    cell)` gives one run of `generator_run`.

    Returns a row per cell and server: medians of the runs, latency
    percentiles of all rounds' echoes together, loss summed over the rounds,
    and the paired ratios of rate and CPU per echo against `reference`'s
    run of the same round.
    """
    runs = in_rounds(args, servers, cells, run, part)
    latencies = {key: collections.Counter() for key in runs}
    for key, cell_runs in runs.items():
        for result in cell_runs:
            latencies[key].update(dict(result.pop("latency_histogram_ns")))
    rows = []
    for cell in cells:
        reference_runs = runs[(reference, cell)]
        for server in servers:
            cell_runs = runs[(server.name, cell)]
            lost = sum(r["lost"] for r in cell_runs)
            row = {
                "server": server.name,
                "connections": cell[0],
                "size": cell[1],
                **{key: median_of(cell_runs, key)
                   for key in ("requests_per_s", "cpu_ns_per_echo")},
                **{key: histogram_quantile(latencies[(server.name, cell)], q)
                   for key, q in (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999))},
                # Lost: unanswered within the generator's timeout, of all
                # sent in the measured windows; late: answered after it.
                "lost": lost,
                "late": sum(r["late"] for r in cell_runs),
                "loss": lost / (lost + sum(r["echoes"] for r in cell_runs)),
                **{name: paired_ratio([r[key] for r in cell_runs],
                                      [r[key] for r in reference_runs])
                   for key, name in (("requests_per_s", "rate_vs_reference"),
                                     ("cpu_ns_per_echo", "cpu_vs_reference"))},
                "rounds": cell_runs,
            }
            rows.append(row)
    return rows


def bench_udp(args, workdir):
    """UDP ping-pong: each flow (a socket from its own loopback address)
    keeps one datagram in flight, at each flow count × datagram size,
    against the plain C loop (the reference), the recvmmsg C loop and
    echo-server with UDP on. Datagrams unanswered in time are counted lost."""
    host = ["127.0.0.1", "0"]
    kinds = [
        (C_UDP_PLAIN, [args.c_udp_server, "plain", *host], r"listening on udp://(\S+)"),
        (C_UDP_BATCH, [args.c_udp_server, "batch", *host], r"listening on udp://(\S+)"),
        (PRODUCT, [args.echo_server, "--config", udp_config(args.config, workdir),
                   "--port", "0"], r"udp://([0-9.]+:[0-9]+)"),
    ]
    servers = [Server(name, argv, pattern, workdir) for name, argv, pattern in kinds]
    cells = [(flows, size) for size in args.udp_sizes for flows in args.connections]
    return compare_in_rounds(
        args, servers, cells,
        lambda server, cell: generator_run(args, server, "udp", *cell), C_UDP_PLAIN, "udp")


def proxied_config(config_path, workdir):
    """A copy of the shipped configuration listening on one loopback port
    with `proxy_protocol = true`, in place of host and port."""
    return edited_config(config_path, workdir, "proxied.toml", [
        (r'^host = "127\.0\.0\.1"$',
         'listen = [{ address = "127.0.0.1:0", proxy_protocol = true }]',
         "the churn part replaces with a PROXY protocol listener"),
        (r"^port = \d+$", "", "the churn part drops for the listener"),
    ])


def bench_churn(args, kinds, workdir):
    """Connection churn: each client opens a connection, echoes CHURN_SIZE
    bytes, closes and opens the next, at each client count, against the C
    epoll server, echo-server (as shipped) and echo-server on a PROXY
    protocol listener (each connection opening with a v2 header):
    connections per second and the server's CPU per connection. Churn is
    where the PROXY protocol costs most: one header per connection."""
    servers = [Server(name, argv, pattern, workdir) for name, argv, pattern in kinds
               if name in (REFERENCE, PRODUCT)]
    _, _, product_pattern = next(kind for kind in kinds if kind[0] == PRODUCT)
    servers.append(Server(
        PROXIED, [args.echo_server, "--config", proxied_config(args.config, workdir)],
        product_pattern, workdir, generator_flags=["-P"]))
    cells = [(clients, CHURN_SIZE) for clients in args.connections]
    return compare_in_rounds(
        args, servers, cells,
        lambda server, cell: generator_run(args, server, "churn", *cell), REFERENCE, "churn")


def proxy_protocol_cost(churn):
    """echo-server's CPU per connection on the PROXY protocol listener
    against its plain one's, round by round in each churn cell, pooled."""
    rows = {(row["server"], row["connections"]): row for row in churn}
    ratios = []
    for (server, clients), row in rows.items():
        if server == PROXIED:
            plain = rows[(PRODUCT, clients)]
            ratios += paired_ratio([run["cpu_ns_per_echo"] for run in row["rounds"]],
                                   [run["cpu_ns_per_echo"] for run in plain["rounds"]])["rounds"]
    return pooled_ratio(ratios) if ratios else None


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard < wanted:
            raise BenchError(f"{wanted} file descriptors are needed, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def idle_memory(server, connections, connect=socket.create_connection):
    """How much the server's RSS grows per idle connection, each opened by
    `connect(address, timeout)` (over TLS: with its handshake done)."""
    raise_fd_limit(connections + 100)
    time.sleep(0.5)
    before = server.rss_kib()
    sockets = []
    try:
        for _ in range(connections):
            conn = connect(server.address, timeout=10)
            sockets.append(conn)
            conn.sendall(b"x")
            if conn.recv(1) != b"x":
                raise BenchError(f"{server.name}: a connection did not echo")
        time.sleep(1)  # let the server settle after the last echo
        after = server.rss_kib()
    except OSError as error:
        raise BenchError(f"{server.name}: connection {len(sockets)} failed: {error}") from error
    finally:
        for conn in sockets:
            conn.close()
    return {
        "server": server.name,
        "connections": connections,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_idle_connection": round((after - before) * 1024 / connections),
    }


def bench_idle(args, kinds, workdir):
    results = []
    for name, argv, pattern in kinds:
        server = Server(name, argv, pattern, workdir).start()
        try:
            results.append(idle_memory(server, args.idle_connections))
        finally:
            server.stop()
        progress(f"idle memory of {name} done")
    return results


def make_certificates(workdir):
    """A CA and a certificate for TLS_SERVER_NAME (and 127.0.0.1) issued by
    it, P-256 keys, made with the openssl command line into the workdir:
    the certificate and key both servers present, and the CA their clients
    trust."""
    tls = os.path.join(workdir, "tls")
    os.makedirs(tls)
    files = {name: os.path.join(tls, file) for name, file in (
        ("ca", "ca.pem"), ("ca_key", "ca.key"), ("certificate", "server.pem"),
        ("key", "server.key"), ("request", "server.csr"), ("extensions", "server.ext"))}
    with open(files["extensions"], "w", encoding="ascii") as extensions:
        extensions.write(f"basicConstraints=CA:FALSE\n"
                         f"subjectAltName=DNS:{TLS_SERVER_NAME},IP:127.0.0.1\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for command in (
        ["req", "-x509", *new_key, "-keyout", files["ca_key"], "-out", files["ca"],
         "-days", "2", "-subj", "/CN=echo bench CA"],
        ["req", *new_key, "-keyout", files["key"], "-out", files["request"],
         "-subj", f"/CN={TLS_SERVER_NAME}"],
        ["x509", "-req", "-in", files["request"], "-CA", files["ca"], "-CAkey", files["ca_key"],
         "-CAcreateserial", "-out", files["certificate"], "-days", "2",
         "-extfile", files["extensions"]],
    ):
        result = subprocess.run(["openssl", *command], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise BenchError(f"openssl {command[0]} failed:\n{result.stderr}")
    return files


def tls_config(config_path, workdir, tls_files):
    """A copy of the shipped configuration with its [tls] section on, on a
    free loopback port, with the bench's certificate and key."""
    return edited_config(config_path, workdir, "tls.toml", [
        (r"^# \[tls\]$", "[tls]", "the tls part turns on"),
        (r'^# listen = \["0\.0\.0\.0:65443"\]$', 'listen = ["127.0.0.1:0"]',
         "the tls part sets"),
        (r"^# certificate = .*$", f'certificate = "{tls_files["certificate"]}"',
         "the tls part sets"),
        (r"^# key = .*$", f'key = "{tls_files["key"]}"', "the tls part sets"),
    ])


def handshake_run(args, server, tls_files):
    """One run of scripts/tls_handshakes.py: new connections, each a full
    handshake and a one-byte echo, from HANDSHAKE_CLIENTS clients; the
    server's CPU time per handshake over the measured window."""
    host, port = server.address
    command = [
        "taskset", "--cpu-list", LOAD_CPU, sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_handshakes.py"),
        "--ca", tls_files["ca"], "--server-name", TLS_SERVER_NAME,
        "-c", str(HANDSHAKE_CLIENTS), "-w", str(args.warmup), "-d", str(args.duration),
        host, str(port),
    ]
    with CpuWindow(server, args.warmup, args.duration) as window:
        run = run_json(command, f"the handshake load against {server.name}",
                       args.duration + args.warmup + 60)
    if run["handshakes"] == 0:
        raise BenchError(f"{server.name} completed no TLS handshake")
    return {
        "handshakes_per_s": run["handshakes_per_s"],
        "cpu_ns_per_handshake": window.cpu_ns / run["handshakes"],
        "version": run["version"],
        "cipher": run["cipher"],
    }


def tls_pingpong(args, server, tls_files, connections, size):
    """One run of `echo-client bench --tls`, and the server's CPU time per
    round trip over its measured window."""
    flags = ["--tls", "--ca", tls_files["ca"], "--server-name", TLS_SERVER_NAME]
    # Every connection's handshake before the measured window, not in it.
    warmup = args.warmup + connections * HANDSHAKE_ALLOWANCE_S
    with CpuWindow(server, warmup, args.duration) as window:
        report = echo_client_bench(args, server, connections, size, flags=flags,
                                   warmup=warmup)
    if report["requests"] == 0:
        raise BenchError(f"{server.name} echoed nothing over TLS at {connections} × {size} B")
    return {
        "requests_per_s": report["requests_per_s"],
        "p50_us": report["latency_ms"]["p50"] * 1000,
        "p99_us": report["latency_ms"]["p99"] * 1000,
        "cpu_ns_per_round_trip": window.cpu_ns / report["requests"],
    }


def tls_connect(tls_files):
    """`socket.create_connection` over TLS, the handshake done."""
    context = ssl.create_default_context(cafile=tls_files["ca"])

    def connect(address, timeout):
        plain = socket.create_connection(address, timeout=timeout)
        try:
            return context.wrap_socket(plain, server_hostname=TLS_SERVER_NAME)
        except OSError:
            plain.close()
            raise
    return connect


def paired_rows(runs, names, cells, reference, ratios):
    """A row per cell and server (of `names`): the medians of its runs' figures, the runs,
    and the paired ratios against `reference`'s run of the same round, as
    {ratio name: figure}."""
    rows = []
    for cell in cells:
        reference_runs = runs[(reference, cell)]
        for name in names:
            cell_runs = runs[(name, cell)]
            numbers = [key for key, value in cell_runs[0].items()
                       if isinstance(value, (int, float))]
            rows.append({
                "server": name,
                "connections": cell[0],
                "size": cell[1],
                **{key: median_of(cell_runs, key) for key in numbers},
                **{ratio: paired_ratio([r[key] for r in cell_runs],
                                       [r[key] for r in reference_runs])
                   for ratio, key in ratios.items()},
                "rounds": cell_runs,
            })
    return rows


def bench_tls(args, workdir):
    """echo-server's [tls] listener against stunnel in front of the C epoll
    server, both with the same certificate and key (P-256, made here), both
    pinned to the server CPU, in rounds: ping-pong at every cell, driven by
    `echo-client bench --tls`; new connections (handshake and a one-byte
    echo) driven by scripts/tls_handshakes.py; and memory per idle TLS
    connection. stunnel's CPU time and memory include the C server's."""
    tls_files = make_certificates(workdir)
    _, reference_argv, reference_pattern = server_kinds(args)[0]

    def servers():
        return [
            Terminated(STUNNEL, Server(REFERENCE, reference_argv, reference_pattern, workdir),
                       args.stunnel, tls_files, workdir),
            Server(PRODUCT, [args.echo_server, "--config",
                             tls_config(args.config, workdir, tls_files), "--port", "0"],
                   r"tls://([0-9.]+:[0-9]+)", workdir),
        ]
    names = [STUNNEL, PRODUCT]
    cells = cells_of(args)
    pingpong_runs = in_rounds(
        args, servers(), cells,
        lambda server, cell: tls_pingpong(args, server, tls_files, *cell), "tls")
    handshake_cells = [(HANDSHAKE_CLIENTS, 1)]
    handshake_runs = in_rounds(
        args, servers(), handshake_cells,
        lambda server, _: handshake_run(args, server, tls_files), "tls handshakes")
    idle = []
    for server in servers():
        server.start()
        try:
            idle.append(idle_memory(server, min(TLS_IDLE_CONNECTIONS, args.idle_connections),
                                    tls_connect(tls_files)))
        finally:
            server.stop()
        progress(f"idle memory over TLS of {server.name} done")
    return {
        "cells": paired_rows(pingpong_runs, names, cells, STUNNEL, {
            "rate_vs_reference": "requests_per_s",
            "cpu_vs_reference": "cpu_ns_per_round_trip",
            "p99_vs_reference": "p99_us",
        }),
        "handshakes": paired_rows(handshake_runs, names, handshake_cells, STUNNEL, {
            "rate_vs_reference": "handshakes_per_s",
            "cpu_vs_reference": "cpu_ns_per_handshake",
        }),
        "idle": idle,
    }


def progress(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def command_output(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def describe_machine():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    return {
        "kernel": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "rustc": command_output(["rustc", "--version"]),
        "gcc": command_output(["gcc", "--version"]).splitlines()[0],
        "commit": command_output(["git", "describe", "--always", "--dirty"]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
