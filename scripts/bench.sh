#!/usr/bin/env bash
# Benchmarks of echo-server, run against a release build on loopback with the
# shipped configuration.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./scripts/bench.sh idle [--connections N] [--json]

  idle   Open N connections (default 10000), echo one byte on each, leave
         them idle, and report the server's memory per idle connection.
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

# Starts the release server with the shipped config on a free port; sets
# server_pid and server_addr.
start_server() {
    cargo build --release --locked --quiet --bin echo-server
    workdir=$(mktemp -d)
    ulimit -n "$(ulimit -Hn)"
    ./target/release/echo-server --config config/echo-server.toml --port 0 2>"$workdir/server.log" &
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

main() {
    case "${1:-}" in
        idle)
            shift
            bench_idle "$@"
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
