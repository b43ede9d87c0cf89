#!/usr/bin/env bash
# Builds the release binaries and says where they are.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./scripts/build.sh [--target TRIPLE]

Builds echo-server and echo-client in release mode (cargo build --release
--locked) and prints the paths of the two binaries.
  --target TRIPLE   cross-compile for TRIPLE (its toolchain must be installed)
USAGE
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

main() {
    local target_args=() out_dir=target/release
    while (($#)); do
        case "$1" in
            --target)
                target_args=(--target "${2:?--target needs a triple}")
                out_dir=target/$2/release
                shift 2
                ;;
            -h | --help)
                usage
                return
                ;;
            *)
                usage >&2
                return 64
                ;;
        esac
    done
    cargo build --release --locked "${target_args[@]}" --bins
    printf '%s\n' "$out_dir/echo-server" "$out_dir/echo-client"
}

main "$@"
