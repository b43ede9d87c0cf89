#!/usr/bin/env bash
# Benchmarks of echo-server, run against a release build on loopback with the
# shipped configuration.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./scripts/bench.sh idle [--connections N] [--json]
       ./scripts/bench.sh client [--duration SECONDS] [--size BYTES]

  idle    Open N connections (default 10000), echo one byte on each, leave
          them idle, and report the server's memory per idle connection.
  client  Compare `echo-client bench` with a minimal C epoll ping-pong load
          generator (benches/pingpong_client.c): the server pinned to CPU 0,
          each load generator in turn pinned to CPU 1, at 1, 50 and 500
          connections (default 5 seconds each, 64-byte messages).
USAGE
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

server_pid=""
workdir=""

cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n $workdir ]]; then
        rm -rf "$workdir"
    fi
}
trap cleanup EXIT

# Starts the release server with the shipped config on a free port, under
# the command given as arguments (e.g. taskset -c 0); sets server_pid and
# server_addr.
start_server() {
    cargo build --release --locked --quiet --bins
    workdir=$(mktemp -d)
    ulimit -n "$(ulimit -Hn)"
    "$@" ./target/release/echo-server --config config/echo-server.toml --port 0 2>"$workdir/server.log" &
    server_pid=$!
    local waited=0
    until grep -q 'echo-server started' "$workdir/server.log"; do
        if ! kill -0 "$server_pid" 2>/dev/null || ((waited++ > 100)); then
            cat "$workdir/server.log" >&2
            echo "bench.sh: echo-server did not start" >&2
            return 1
        fi
        sleep 0.1
    done
    server_addr=$(grep -o 'tcp://[^ "]*' "$workdir/server.log" | head -n 1)
    server_addr=${server_addr#tcp://}
}

describe_machine() {
    local cpu
    cpu=$(grep -m 1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    printf 'machine: %s, %s cores (%s), %s; %s\n' "$(uname -sr)" "$(nproc)" "${cpu:-unknown CPU}" \
        "$(git describe --always --dirty 2>/dev/null || echo unknown)" "$(date -u +%Y-%m-%d)"
}

bench_idle() {
    local connections=10000 json=()
    while (($#)); do
        case "$1" in
            --connections)
                connections=${2:?--connections needs a number}
                shift 2
                ;;
            --json)
                json=(--json)
                shift
                ;;
            *)
                usage >&2
                return 64
                ;;
        esac
    done
    start_server
    if ((${#json[@]} == 0)); then
        describe_machine
    fi
    python3 scripts/idle_connections.py --target "$server_addr" --pid "$server_pid" \
        --connections "$connections" "${json[@]}"
}

bench_client() {
    local seconds=5 size=64
    while (($#)); do
        case "$1" in
            --duration)
                seconds=${2:?--duration needs seconds}
                shift 2
                ;;
            --size)
                size=${2:?--size needs bytes}
                shift 2
                ;;
            *)
                usage >&2
                return 64
                ;;
        esac
    done
    if ((size < 1)) || [[ $seconds == 0 ]]; then
        echo "bench.sh: --duration and --size must be positive" >&2
        return 64
    fi
    start_server taskset -c 0
    local generator="$workdir/pingpong_client"
    gcc -O2 -Wall -Wextra -o "$generator" benches/pingpong_client.c
    local host=${server_addr%:*} port=${server_addr##*:}
    describe_machine
    printf 'server pinned to CPU 0, load generator to CPU 1, %s-byte messages, %ss per run\n\n' "$size" "$seconds"
    printf '%-12s %18s %18s %8s\n' connections "C epoll req/s" "echo-client req/s" ratio
    local connections c_rate client_rate
    for connections in 1 50 500; do
        c_rate=$(taskset -c 1 "$generator" "$host" "$port" "$connections" "$seconds" "$size" |
            sed -n 's/.*requests_per_s=\([0-9]*\).*/\1/p')
        client_rate=$(taskset -c 1 ./target/release/echo-client bench "$server_addr" --json \
            -c "$connections" -d "${seconds}s" -s "$size" | sed -n 's/.*"requests_per_s": \([0-9]*\).*/\1/p')
        printf '%-12s %18s %18s %8s\n' "$connections" "$c_rate" "$client_rate" \
            "$(awk -v a="$client_rate" -v b="$c_rate" 'BEGIN { printf "%.2f", a / b }')"
    done
}

main() {
    case "${1:-}" in
        idle)
            shift
            bench_idle "$@"
            ;;
        client)
            shift
            bench_client "$@"
            ;;
        -h | --help)
            usage
            ;;
        *)
            usage >&2
            return 64
            ;;
    esac
}

main "$@"
