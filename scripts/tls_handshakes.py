#!/usr/bin/env python3
"""The handshake load of `bench.sh tls`: CLIENTS threads, each opening a
connection, completing a full TLS handshake (no session resumption: a fresh
session every time), echoing one byte, closing, and again, until the run
ends. Counts the connections whose echo came back within the measured
window (after the warm-up) and prints one JSON object.

Why a script of its own: neither the C generator (no TLS) nor `echo-client
bench` (which keeps its connections) opens new TLS connections in a loop.
OpenSSL through Python's ssl module, which releases the interpreter's lock
for the handshake, and the same for every server measured: each client's
own cost per handshake is far above the server's, so the rate tells less
than the server's CPU per handshake, which scripts/bench_runs.py samples.
The one-byte echo makes sure the server finished its side of the handshake
(with TLS 1.3 the client is done first) and, behind a TLS terminator, that
the connection reached the echo server.

Usage: tls_handshakes.py --ca CA --server-name NAME -c CLIENTS -w WARMUP
                         -d SECONDS HOST PORT
Exits 1 if an echo came back wrong or a connection failed.
"""

import argparse
import json
import socket
import ssl
import sys
import threading
import time


def client(address, context, server_name, window, counts, failures, session):
    """One client's loop; `session` records the last connection's version
    and cipher."""
    measured_from, deadline = window
    handshakes = 0
    try:
        while (now := time.monotonic()) < deadline:
            with socket.create_connection(address, timeout=10) as plain:
                with context.wrap_socket(plain, server_hostname=server_name) as tls:
                    tls.sendall(b"x")
                    if tls.recv(1) != b"x":
                        raise ssl.SSLError("the echo came back wrong")
                    session["version"], session["cipher"] = tls.version(), tls.cipher()[0]
            if now >= measured_from and time.monotonic() < deadline:
                handshakes += 1
    except OSError as error:  # ssl.SSLError is one
        failures.append(str(error))
    counts.append(handshakes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ca", required=True)
    parser.add_argument("--server-name", required=True)
    parser.add_argument("-c", "--clients", type=int, required=True)
    parser.add_argument("-w", "--warmup", type=float, required=True)
    parser.add_argument("-d", "--duration", type=float, required=True)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    measured_from = time.monotonic() + args.warmup
    window = (measured_from, measured_from + args.duration)
    counts, failures, session = [], [], {}
    threads = [
        threading.Thread(target=client, args=((args.host, args.port), context,
                                              args.server_name, window, counts, failures,
                                              session))
        for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(f"tls_handshakes.py: {len(failures)} client(s) failed, first: {failures[0]}")
    print(json.dumps({
        "handshakes": sum(counts),
        "handshakes_per_s": sum(counts) / args.duration,
        "version": session.get("version"),
        "cipher": session.get("cipher"),
    }))


if __name__ == "__main__":
    main()
