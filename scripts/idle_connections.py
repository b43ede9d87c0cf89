#!/usr/bin/env python3
"""Measure what idle connections cost an echo server.

Opens N connections to TARGET, makes each echo one byte (so every connection
has really been served), leaves them idle, and reports how much the server's
resident memory (VmRSS of PID) grew, per connection. Used by scripts/bench.sh.
"""

import argparse
import json
import resource
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    host, _, port = args.target.rpartition(":")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.connections + 100
    if soft < wanted:
        if hard < wanted:
            sys.exit(f"need {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    before = rss_kib(args.pid)
    sockets = []
    for _ in range(args.connections):
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        conn.sendall(b"x")
        if conn.recv(1) != b"x":
            sys.exit("a connection did not echo")
        sockets.append(conn)
    time.sleep(1)  # let the server settle after the last echo
    after = rss_kib(args.pid)
    per_connection = (after - before) * 1024 / args.connections
    result = {
        "connections": args.connections,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_idle_connection": round(per_connection),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.connections} idle connections: server RSS {before} KiB -> {after} KiB, "
            f"{per_connection:.0f} bytes per connection"
        )
    for conn in sockets:
        conn.close()


if __name__ == "__main__":
    main()
