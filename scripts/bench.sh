#!/usr/bin/env bash
# Benchmarks echo-server side by side with reference echo servers, on
# loopback, with the shipped configuration and a release build.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./scripts/bench.sh [all|cells|udp|churn|idle|client|scaling|tls|metrics|noise] [OPTIONS]

Builds echo-server, echo-client and the reference servers, then runs each
server pinned to CPU 0 and the load on CPU 1:

  all      cells, udp, churn, idle, client, scaling and tls (the default)
  cells    ping-pong at 1, 50 and 500 connections x 64 B and 4 KiB messages
           against echo-server, a minimal C epoll server (the reference) and
           a minimal tokio server: round trips/s, p50/p99/p99.9 latency and
           the server's CPU time per round trip, with ratios against C
  udp      UDP ping-pong at 1, 50 and 500 flows (each from its own loopback
           address) x 64 B and 1,400 B datagrams against echo-server (UDP
           on), a plain recvfrom/sendto C loop (the reference) and a
           recvmmsg/sendmmsg C loop: echoes/s, latency, lost datagrams and
           the server's CPU per datagram, with ratios against the plain loop
  churn    at 1, 50 and 500 concurrent clients, each connecting, echoing
           64 bytes and closing, again and again, against echo-server, the
           C epoll server and echo-server on a PROXY protocol listener (each
           connection opening with a v2 header): connections/s and the
           server's CPU per connection, with ratios against C, and the
           PROXY protocol's cost against the plain listener
  idle     each server's memory per idle connection, at 10,000 connections
  client   echo-client bench against the C load generator, both driving
           echo-server
  scaling  echo-server with 1 worker and more (powers of two up to the
           servers' CPUs), and the C server, at the busiest connection
           count, driven by echo-client bench with a load thread per CPU of
           its own: with 4 CPUs or more the servers get the first half of
           the CPUs and the load the second; with 2 they share both
  tls      echo-server's [tls] listener against stunnel in front of the C
           epoll server, the same certificate (made with openssl in a
           temporary directory): ping-pong at the cells' connections and
           sizes driven by echo-client bench --tls (round trips/s, p99, the
           server's CPU per round trip), new connections each doing a full
           handshake and a one-byte echo (handshakes/s, CPU per handshake),
           and memory per idle TLS connection (1,000 of them, or
           --idle-connections if fewer); stunnel's CPU and memory include
           the C server's; ratios against stunnel
  metrics  echo-server with its Prometheus metrics off and on (scraped twice
           a second), the same cells: the server's CPU per round trip, on
           against off (target: within 2%; not part of all)
  noise    the C server and the C generator against themselves, paired
           the same way: how far two runs of the same programs differ on
           this machine (not part of all)

Options:
  --rounds N            rounds per cell, medians reported (default 9)
  --duration SECONDS    length of one run (default 1.5), after a 0.5 s warm-up
  --connections LIST    connection counts (UDP flows, churn clients),
                        comma-separated (default 1,50,500)
  --sizes LIST          TCP message sizes in bytes (default 64,4096)
  --udp-sizes LIST      UDP datagram sizes, 8 to 65507 bytes (default 64,1400)
  --idle-connections N  connections for the idle measurement (default 10000)
  --json                print the report as JSON
  --readme              also write the report into docs/PERFORMANCE.md (The
                        latest run)

Exit codes: 0 the benchmark ran (whether or not the targets were met),
64 bad usage, 1 it could not run (a build failed, a server did not start,
an echo came back wrong).
USAGE
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Builds every program the comparison runs; prints nothing on success.
# Chained with && because set -e does not apply inside `if ! build`.
build() {
    local out=$1
    cargo build --release --locked --quiet --bins --example tokio-echo &&
        gcc -O2 -Wall -Wextra -Werror -o "$out/pingpong_client" bench/reference/pingpong_client.c &&
        gcc -O2 -Wall -Wextra -Werror -o "$out/epoll_echo_server" bench/reference/epoll_echo_server.c &&
        gcc -O2 -Wall -Wextra -Werror -o "$out/udp_echo_server" bench/reference/udp_echo_server.c
}

main() {
    local parts=cells,udp,churn,idle,client,scaling,tls
    case "${1:-all}" in
        all) ;;
        cells | udp | churn | idle | client | scaling | tls | metrics | noise) parts=$1 ;;
        -h | --help)
            usage
            return 0
            ;;
        -*) set -- all "$@" ;;
        *)
            usage >&2
            return 64
            ;;
    esac
    shift
    local options=()
    while (($#)); do
        case "$1" in
            --rounds | --duration | --connections | --sizes | --udp-sizes | --idle-connections)
                if (($# < 2)); then
                    echo "bench.sh: $1 needs a value" >&2
                    usage >&2
                    return 64
                fi
                options+=("$1" "$2")
                shift 2
                ;;
            --json)
                options+=(--json)
                shift
                ;;
            --readme)
                options+=(--readme docs/PERFORMANCE.md)
                shift
                ;;
            *)
                echo "bench.sh: unknown option $1" >&2
                usage >&2
                return 64
                ;;
        esac
    done
    if [[ ,$parts, == *,tls,* ]]; then
        local stunnel
        if ! stunnel=$(command -v stunnel4 || command -v stunnel); then
            echo "bench.sh: the tls part needs stunnel: apt-get install stunnel4 (or run another part)" >&2
            return 1
        fi
        options+=(--stunnel "$stunnel")
    fi
    local out
    out=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: out is local
    trap "rm -rf '$out'" EXIT
    if ! build "$out"; then
        echo "bench.sh: the build failed" >&2
        return 1
    fi
    # 10,000 idle connections need more descriptors than the usual 1024;
    # if the hard limit cannot be had, the measurement says how many it needs.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    python3 scripts/compare_servers.py --parts "$parts" \
        --generator "$out/pingpong_client" --c-server "$out/epoll_echo_server" \
        --c-udp-server "$out/udp_echo_server" \
        --tokio-server target/release/examples/tokio-echo \
        --echo-server target/release/echo-server --echo-client target/release/echo-client \
        --config config/echo-server.toml "${options[@]}"
}

main "$@"
