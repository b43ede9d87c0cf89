#!/usr/bin/env bash
# Real systemd test hosts for the end-to-end tests: a minimal Debian
# bookworm root filesystem (built once with debootstrap, cached under
# target/e2e/), booted with systemd-nspawn, reachable only over SSH on a
# loopback port of its own. Runs as root, without a terminal.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/e2e-host.sh rootfs
       tests/e2e-host.sh boot --dir DIR --ssh-port PORT [--persistent]
       tests/e2e-host.sh stop --dir DIR

  rootfs   install debootstrap, systemd-container, openssh-client and
           putty-tools when missing; build the cached root filesystem if
           there is none; print its path
  boot     boot a host from the cached root filesystem: a throwaway copy
           (--ephemeral), or with --persistent a copy of its own in DIR/root
           that survives a stop and boots again; its sshd listens on
           127.0.0.1:PORT with a host key from DIR (made if missing) and
           accepts DIR/client_key (made if missing, with a .ppk for PuTTY).
           Waits until SSH answers and systemd reports running. Writes into
           DIR: known_hosts, hostkey.sha256 (for plink -hostkey), nspawn.pid,
           console.log
  stop     power the host in DIR off (SIGTERM to systemd-nspawn) and wait
USAGE
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly CACHE=$PWD/target/e2e
readonly ROOTFS=$CACHE/rootfs-bookworm
readonly PACKAGES=systemd,systemd-sysv,openssh-server,dbus,iproute2,python3,procps,adduser,man-db,bash-completion,ssl-cert

log() {
    printf 'e2e-host: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

install_tools() {
    local missing=() command
    local -A package_of=([debootstrap]=debootstrap [systemd-nspawn]=systemd-container
        [ssh]=openssh-client [ssh-keygen]=openssh-client [puttygen]=putty-tools)
    for command in "${!package_of[@]}"; do
        command -v "$command" >/dev/null || missing+=("${package_of[$command]}")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2046 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u)
}

# The Debian mirror apt on this machine uses, from its sources.
apt_mirror() {
    local mirror
    mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)
    [[ -n $mirror ]] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list | sed 's/\[[^]]*\]//' | awk '{print $2}' | grep -v security | head -n 1)
    [[ -n $mirror ]] || die "no Debian mirror in /etc/apt/sources.list(.d)"
    printf '%s\n' "$mirror"
}

cmd_rootfs() {
    [[ $EUID -eq 0 ]] || die "run as root (debootstrap and systemd-nspawn need it)"
    install_tools
    mkdir -p "$CACHE"
    # Tests boot hosts in parallel: one of them builds, the others wait.
    exec {lock}>"$CACHE/rootfs.lock"
    flock "$lock"
    # A cached root filesystem made with other packages is rebuilt.
    if [[ $(cat "$ROOTFS/.e2e-packages" 2>/dev/null) != "$PACKAGES" ]]; then
        local mirror building=$CACHE/rootfs-building
        mirror=$(apt_mirror)
        log "building the root filesystem from $mirror (once; cached in $ROOTFS)"
        # An interrupted debootstrap may leave proc and sys mounted there.
        local mounted
        mounted=$(findmnt -rn -o TARGET | grep "^$building/" || true)
        [[ -z $mounted ]] || sort -r <<<"$mounted" | xargs umount -l
        rm -rf --one-file-system "$building"
        debootstrap --variant=minbase --include="$PACKAGES" bookworm "$building" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
            die "debootstrap failed; see $CACHE/debootstrap.log"
        # The hosts get their SSH settings from the boot; nothing else may listen.
        rm -f "$building"/etc/ssh/ssh_host_*
        printf '%s\n' "$PACKAGES" >"$building/.e2e-packages"
        rm -rf "$ROOTFS"
        mv "$building" "$ROOTFS"
    fi
    exec {lock}>&-
    printf '%s\n' "$ROOTFS"
}

cmd_boot() {
    local dir="" port="" persistent=false
    while (($#)); do
        case $1 in
            --dir) dir=${2:?}; shift 2 ;;
            --ssh-port) port=${2:?}; shift 2 ;;
            --persistent) persistent=true; shift ;;
            *) usage >&2; exit 64 ;;
        esac
    done
    [[ -n $dir && -n $port ]] || { usage >&2; exit 64; }
    cmd_rootfs >/dev/null
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -f $dir/host_key ]] || ssh-keygen -q -t ed25519 -N '' -C e2e-host -f "$dir/host_key"
    if [[ ! -f $dir/client_key ]]; then
        ssh-keygen -q -t ed25519 -N '' -C e2e-client -f "$dir/client_key"
        puttygen "$dir/client_key" -O private -o "$dir/client_key.ppk"
    fi
    cat >"$dir/sshd.conf" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey /etc/ssh/e2e_host_key
PermitRootLogin prohibit-password
PasswordAuthentication no
EOF
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$dir/known_hosts"
    ssh-keygen -l -E sha256 -f "$dir/host_key.pub" | awk '{print $2}' >"$dir/hostkey.sha256"

    local root=$ROOTFS mode=(--ephemeral)
    if $persistent; then
        root=$dir/root
        [[ -d $root ]] || cp -a "$ROOTFS" "$root"
        mode=()
    fi
    local name
    name=e2e-$(basename "$dir" | tr -c 'a-zA-Z0-9\n' '-' | cut -c1-40)
    log "booting $name (ssh on 127.0.0.1:$port)"
    setsid systemd-nspawn -D "$root" "${mode[@]}" --boot --register=no --keep-unit \
        --console=read-only -M "$name" \
        --bind-ro="$dir/sshd.conf:/etc/ssh/sshd_config.d/e2e.conf" \
        --bind-ro="$dir/host_key:/etc/ssh/e2e_host_key" \
        --bind-ro="$dir/client_key.pub:/root/.ssh/authorized_keys" \
        </dev/null >"$dir/console.log" 2>&1 &
    echo $! >"$dir/nspawn.pid"
    # A host that does not come up is not left running.
    trap 'cmd_stop --dir "$dir"' EXIT
    wait_for_host "$dir" "$port"
    trap - EXIT
}

wait_for_host() {
    local dir=$1 port=$2 tries=0
    local ssh=(ssh -o BatchMode=yes -o ConnectTimeout=2 -o "UserKnownHostsFile=$dir/known_hosts"
        -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i "$dir/client_key" -p "$port" root@127.0.0.1)
    until "${ssh[@]}" true 2>/dev/null; do
        kill -0 "$(cat "$dir/nspawn.pid")" 2>/dev/null || die "the host did not boot; see $dir/console.log"
        ((tries++ < 300)) || die "no SSH on port $port after 60 s; see $dir/console.log"
        sleep 0.2
    done
    local state
    state=$("${ssh[@]}" systemctl is-system-running --wait 2>/dev/null || true)
    [[ $state == running ]] || log "warning: systemd reports '$state' (not 'running')"
    log "up: $("${ssh[@]}" 'systemctl --version | head -n 1')"
}

cmd_stop() {
    local dir=""
    [[ ${1:-} == --dir ]] && dir=${2:-}
    [[ -n $dir ]] || { usage >&2; exit 64; }
    [[ -f $dir/nspawn.pid ]] || return 0
    local pid tries=0
    pid=$(cat "$dir/nspawn.pid")
    # A stale pid file may name some other process by now.
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd-nspawn ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do
            if ((tries++ > 150)); then
                log "the host did not power off in 30 s; killing it and its init"
                pkill -KILL -P "$pid" || true
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.2
        done
    fi
    rm -f "$dir/nspawn.pid"
}

main() {
    case ${1:-} in
        rootfs) cmd_rootfs ;;
        boot) shift; cmd_boot "$@" ;;
        stop) shift; cmd_stop "$@" ;;
        -h | --help) usage ;;
        *) usage >&2; exit 64 ;;
    esac
}

main "$@"
