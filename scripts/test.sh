#!/usr/bin/env bash
# Runs every check the project has: formatting, lints, shellcheck and all
# tests. Installs what they need first (Debian packages, Rust components), so
# it works on a fresh machine. This is the command CI runs (.ci/run).
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./scripts/test.sh [--help]

Installs missing test prerequisites (shellcheck, python3, util-linux,
iproute2, iptables, gcc, libnetfilter-queue-dev, socat, systemd's tools,
OpenSSH client and server, PuTTY's tools, sudo, xmllint, zsh, fish,
HAProxy, Prometheus, node_exporter, Nagios 4, mingw-w64, Wine, rustfmt,
clippy, the Rust standard library for Windows),
then runs, in order:
  cargo fmt --check
  cargo clippy --all-targets --features host-tests -- -D warnings
  cargo clippy --all-targets for Windows (x86_64-pc-windows-gnu)
  shellcheck on every shell script in the repository
  systemd-analyze verify on every unit in systemd/ (with the TLS
    drop-ins), and systemd-analyze security with the exposure limits the
    units promise (echo-server.service also with each TLS drop-in)
  ansible-lint on the Ansible role (ansible-core and ansible-lint are
    installed into target/ansible-venv/, with cryptography for the
    mRemoteNG test)
  tests/e2e-host.sh rootfs (builds the systemd test host's root
    filesystem with debootstrap on the first run; cached in target/e2e/)
  scripts/build.sh --deb, twice (the .deb, revisions 1 and 2, for the
    end-to-end package tests; installs cargo-deb if missing)
  cargo build --target x86_64-pc-windows-gnu --bin echo-client, and a
    stand-in DLL for Wine with mingw-w64 (for tests/windows_client.rs;
    into target/wine/)
  cargo test --features host-tests (what plain `cargo test` runs: unit and
    integration tests on real loopback sockets; and the host tests: root,
    namespaces, a real sshd, real systemd hosts booted with systemd-nspawn,
    Ansible, the .deb packages and the Windows client under Wine)
Run it as root (or with passwordless sudo): the host tests use network and
user namespaces, switch users and bind privileged ports.
USAGE
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() {
    printf '\n==> %s\n' "$*" >&2
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    else
        sudo -n "$@"
    fi
}

# Debian packages the tests run, by the command that shows each is present.
install_packages() {
    local -A package_of=(
        [shellcheck]=shellcheck
        [python3]=python3
        [prlimit]=util-linux
        [setpriv]=util-linux
        [unshare]=util-linux
        [ip]=iproute2
        # tests/path_quality.rs: random loss in an emulated router.
        [iptables]=iptables
        [ip6tables]=iptables
        # tests/path_quality.rs: the NFQUEUE holder (tests/support/), built
        # with gcc at test time against this header (looked for as a file).
        [gcc]=gcc
        [/usr/include/libnetfilter_queue/libnetfilter_queue.h]=libnetfilter-queue-dev
        [socat]=socat
        # tests/tls.rs and tests/tls_client.rs: the test CA and certificates,
        # foreign TLS clients (s_client, ncat) and TLS echoes to check
        # against (stunnel in front of a plain echo); scripts/bench.sh tls
        # (tests/bench_script.rs): certificates, and stunnel to compare with.
        [openssl]=openssl
        [ncat]=ncat
        [stunnel4]=stunnel4
        [haproxy]=haproxy
        [systemd-analyze]=systemd
        [systemd-socket-activate]=systemd
        [script]=bsdutils
        [ssh]=openssh-client
        [scp]=openssh-client
        [ssh-keygen]=openssh-client
        [sshd]=openssh-server
        [sudo]=sudo
        # tests/common/deploy.rs: the builds the deployment tests ship
        # lose their debug information (five times smaller to upload).
        [objcopy]=binutils
        [plink]=putty-tools
        [pscp]=putty-tools
        [puttygen]=putty-tools
        [xmllint]=libxml2-utils
        [x86_64-w64-mingw32-gcc]=gcc-mingw-w64-x86-64
        # Wine's 64-bit loader, which tests/windows_client.rs runs, is not
        # on PATH.
        [/usr/lib/wine/wine64]=wine
        [promtool]=prometheus
        [prometheus]=prometheus
        [prometheus-node-exporter]=prometheus-node-exporter
        [nagios4]=nagios4-core
        [zsh]=zsh
        [fish]=fish
    )
    local command missing=()
    for command in "${!package_of[@]}"; do
        command -v "$command" >/dev/null || [[ -e $command ]] ||
            missing+=("${package_of[$command]}")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2046 # one word per package, deduplicated
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${missing[@]}" | sort -u)
}

# echo-client must build on Windows: the code is checked for this target, as
# Windows users build it with MSVC or MinGW, and the client is built for it
# with mingw-w64 and run under Wine (build_windows_client).
readonly WINDOWS_TARGET=x86_64-pc-windows-gnu

install_rust_components() {
    local component
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            log "installing the Rust component $component"
            rustup component add "$component"
        fi
    done
    local sysroot
    sysroot=$(rustc --print sysroot)
    if [[ ! -d $sysroot/lib/rustlib/$WINDOWS_TARGET ]]; then
        if ! command -v rustup >/dev/null; then
            echo "test.sh: the Rust standard library for $WINDOWS_TARGET is missing, and" \
                "there is no rustup to install it: install it with your toolchain" >&2
            return 1
        fi
        log "installing the Rust standard library for $WINDOWS_TARGET"
        rustup target add "$WINDOWS_TARGET"
    fi
}

# echo-client.exe for tests/windows_client.rs, which runs it under Wine, and
# the stand-in DLL that Debian 12's Wine needs to run it (see
# tests/support/wine/bcryptprimitives.c): test support, kept apart from the
# product's build output, in target/wine/. A debug build: the tests measure
# nothing, and the release profile's link-time optimisation takes longer.
build_windows_client() {
    cargo build --locked --quiet --target "$WINDOWS_TARGET" --bin echo-client
    mkdir -p target/wine
    x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -Werror \
        -o target/wine/bcryptprimitives.dll tests/support/wine/bcryptprimitives.c -ladvapi32
}

# ansible-core and ansible-lint, for the Ansible role's checks and tests,
# in a virtualenv of the project's own; and cryptography (which ansible-core
# needs anyway), for tests/mremoteng.rs to decrypt as mRemoteNG does.
readonly ANSIBLE_VENV=target/ansible-venv

install_ansible() {
    if [[ -x $ANSIBLE_VENV/bin/ansible-playbook && -x $ANSIBLE_VENV/bin/ansible-lint ]] &&
        "$ANSIBLE_VENV/bin/python3" -c 'import cryptography' 2>/dev/null; then
        return
    fi
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    fi
    log "installing ansible-core, ansible-lint and cryptography into $ANSIBLE_VENV"
    python3 -m venv "$ANSIBLE_VENV"
    "$ANSIBLE_VENV/bin/pip" install --quiet 'ansible-core>=2.17,<2.18' 'ansible-lint>=24,<26' cryptography
}

# Every tracked or new file that starts with a bash or sh shebang.
shell_scripts() {
    local file
    while IFS= read -r file; do
        [[ -f $file ]] || continue
        if head -n 1 "$file" | grep -Eq '^#!.*\b(ba)?sh\b'; then
            printf '%s\n' "$file"
        fi
    done < <(git ls-files --cached --others --exclude-standard)
}

# The most exposure `systemd-analyze security` may report for each unit,
# times ten: the self-binding unit keeps CAP_NET_BIND_SERVICE and the host's
# network; the socket-activated one has neither.
declare -A EXPOSURE_LIMIT=(
    [echo-server.service]=15
    [echo-server-activated.service]=5
)

check_units() {
    cargo build --locked --quiet --bin echo-server
    local scratch unit binary=${CARGO_TARGET_DIR:-target}/debug/echo-server
    [[ $binary == /* ]] || binary=$PWD/$binary
    scratch=$(mktemp -d)
    # verify wants the ExecStart= binary to exist: point it at this build.
    for unit in systemd/*.service systemd/*.socket; do
        sed "s|^ExecStart=echo-server|ExecStart=$binary|" "$unit" >"$scratch/${unit##*/}"
    done
    # The TLS drop-ins, where systemd reads them; verify only warns of a key
    # it does not know, so any word from it fails.
    mkdir "$scratch/echo-server.service.d"
    local drop_in
    for drop_in in systemd/echo-server-tls*.conf; do
        cp "$drop_in" "$scratch/echo-server.service.d/${drop_in#systemd/echo-server-}"
    done
    local said
    said=$(cd "$scratch" && systemd-analyze verify ./*.service ./*.socket 2>&1)
    if [[ -n $said ]]; then
        printf 'systemd-analyze verify:\n%s\n' "$said" >&2
        return 1
    fi
    rm -rf "$scratch"
    for unit in "${!EXPOSURE_LIMIT[@]}"; do
        systemd-analyze security --offline=yes --threshold="${EXPOSURE_LIMIT[$unit]}" "systemd/$unit" |
            tail -n 1
    done
    # With [tls], operators install one TLS drop-in as tls.conf: the unit
    # with each stays within the same limit.
    for drop_in in systemd/echo-server-tls*.conf; do
        scratch=$(mktemp -d)
        mkdir "$scratch/echo-server.service.d"
        cp systemd/echo-server.service "$scratch/"
        cp "$drop_in" "$scratch/echo-server.service.d/tls.conf"
        printf 'with %s: ' "${drop_in#systemd/}"
        systemd-analyze security --offline=yes --threshold="${EXPOSURE_LIMIT[echo-server.service]}" \
            "$scratch/echo-server.service" | tail -n 1
        rm -rf "$scratch"
    done
}

run_checks() {
    log "cargo fmt --check"
    cargo fmt --all -- --check

    log "cargo clippy"
    cargo clippy --locked --all-targets --features host-tests -- -D warnings

    log "cargo clippy for Windows"
    cargo clippy --locked --target "$WINDOWS_TARGET" --all-targets --features host-tests -- -D warnings

    log "shellcheck"
    local scripts
    mapfile -t scripts < <(shell_scripts)
    shellcheck --severity=style "${scripts[@]}"
    printf '%s scripts clean\n' "${#scripts[@]}" >&2

    log "systemd units"
    check_units

    log "ansible-lint"
    (cd deploy/ansible && PATH=$PWD/../../$ANSIBLE_VENV/bin:$PATH ansible-lint --offline --nocolor roles/echo_server site.yml)

    log "real systemd test host (root filesystem, cached in target/e2e/)"
    ./tests/e2e-host.sh rootfs

    log "Debian packages for the end-to-end tests (revisions 1 and 2)"
    ./scripts/build.sh --deb --deb-revision 1 >/dev/null
    ./scripts/build.sh --deb --deb-revision 2 >/dev/null

    log "echo-client.exe for the tests under Wine"
    build_windows_client

    log "cargo test, with the host tests"
    cargo test --locked --all-targets --features host-tests
}

main() {
    case "${1:-}" in
        -h | --help)
            usage
            return
            ;;
        "") ;;
        *)
            usage >&2
            return 64
            ;;
    esac
    install_packages
    install_rust_components
    install_ansible
    run_checks
    log "all checks passed"
}

main "$@"
