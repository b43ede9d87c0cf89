#!/usr/bin/env bash
# Builds the release binaries and says where they are.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./scripts/build.sh [--target TRIPLE] [--deb [--deb-revision N]]

Builds echo-server and echo-client in release mode (cargo build --release
--locked) and prints the paths of what it built.
  --target TRIPLE     cross-compile for TRIPLE (its toolchain must be installed)
  --deb               also build the Debian/Ubuntu package
                      target/packages/echo-service_<version>-<revision>_<arch>.deb
                      with cargo-deb (installed with cargo if missing), with
                      the man pages and shell completions it installs (made
                      in target/generated/)
  --deb-revision N    the package revision (default 1)
USAGE
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The man pages and completion scripts the package installs, printed by
# the binaries themselves from their clap definitions (the hidden
# --generate), into target/generated/, one directory per kind, with the
# file names each kind's installed place expects. Cargo.toml's
# [package.metadata.deb] assets put them there (cargo-deb gzips the pages).
generate_manuals() {
    local bin_dir=$1 out=target/generated program
    rm -rf "$out"
    mkdir -p "$out/man" "$out/bash" "$out/zsh" "$out/fish"
    "$bin_dir/echo-server" --generate man >"$out/man/echo-server.8"
    "$bin_dir/echo-client" --generate man >"$out/man/echo-client.1"
    for program in echo-server echo-client; do
        "$bin_dir/$program" --generate complete-bash >"$out/bash/$program"
        "$bin_dir/$program" --generate complete-zsh >"$out/zsh/_$program"
        "$bin_dir/$program" --generate complete-fish >"$out/fish/$program.fish"
    done
}

# The package, with cargo-deb (metadata in Cargo.toml).
build_deb() {
    local revision=$1
    shift
    # A cross-compiled binary may not run here; the text it would print is
    # the same for any Unix target, so this machine's own build prints it.
    local generator=target/release
    if (($#)); then
        cargo build --release --locked --bins
    fi
    generate_manuals "$generator"
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "build.sh: installing cargo-deb" >&2
        cargo install cargo-deb --locked
    fi
    local built
    built=$(cargo deb --no-build --locked --deb-revision "$revision" "$@" | tail -n 1)
    # cargo-deb empties target/debian/ each time: keep every revision apart.
    mkdir -p target/packages
    mv "$built" target/packages/
    printf '%s\n' "target/packages/${built##*/}"
}

main() {
    local target_args=() out_dir=target/release deb=false revision=1
    while (($#)); do
        case "$1" in
            --deb)
                deb=true
                shift
                ;;
            --deb-revision)
                revision=${2:?--deb-revision needs a number}
                shift 2
                ;;
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
    if $deb; then
        build_deb "$revision" "${target_args[@]}"
    fi
}

main "$@"
