#!/usr/bin/env bash
# Install the Debian packages the test suite needs (as root, or through sudo): python3-venv,
# a real SLURM (+ munge), Chromium for the
# Playwright browser tests, PostgreSQL server binaries (scripts/postgres.sh), sudo (jobs as
# their users' accounts), OpenSSH's server (SLURM over SSH) and HAProxy (replicas behind a load
# balancer).
#
# Idempotent and cheap: everything is checked locally first (dpkg / the binaries), so a
# second run touches neither apt nor the network and takes well under a second.
set -euo pipefail

# SLURM without the slurm-wlm metapackage: 10 packages instead of 45, and no recommends.
SLURM_PKGS=(slurmctld slurmd slurm-client munge)
# Playwright drives Debian's browser (executable_path=/usr/bin/chromium). Its recommends pull
# ~100 desktop packages (upower, printing, ...) that a headless browser does not use; we only
# keep the fonts so rendered pages have readable glyphs.
BROWSER_PKGS=(chromium fonts-liberation)
# Debian's server package; also brings the psql / pg_isready wrappers in /usr/bin.
PG_PKGS=(postgresql)
# Jobs run as their users' OS accounts: a platform that is not root switches with sudo; SLURM
# over SSH is tested against Debian's OpenSSH server (started on a private port by the tests).
ACCOUNT_PKGS=(sudo openssh-server openssh-client)
# Several platform replicas behind a real load balancer (tests/support/balancer.py, bench part 6).
BALANCER_PKGS=(haproxy)
# `python3 -m venv` (make install, scripts/job-python.sh): Debian ships it apart from python3.
VENV_PKGS=(python3-venv)

log() { printf 'system-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_installed() { # package name -> installed according to dpkg?
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

pg_server_present() {
    # The server binaries may come from the Debian package or be installed elsewhere (some of
    # our machines have them symlinked into /usr/local/bin), so look for the binaries, not
    # for the package. scripts/postgres.sh searches the same places.
    local dir
    for dir in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
        [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]] && return 0
    done
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null
}

venv_missing() { # prints python3-venv when Debian's python3 cannot make a venv
    /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || printf '%s\n' "${VENV_PKGS[@]}"
}

missing_packages() { # prints the packages to install, one per line
    local pkg
    venv_missing
    for pkg in "${SLURM_PKGS[@]}"; do
        is_installed "$pkg" || echo "$pkg"
    done
    for pkg in "${ACCOUNT_PKGS[@]}" "${BALANCER_PKGS[@]}"; do
        is_installed "$pkg" || echo "$pkg"
    done
    for pkg in "${BROWSER_PKGS[@]}"; do
        if [[ "$pkg" == chromium ]]; then
            [[ -x /usr/bin/chromium ]] || echo chromium # the path the tests use
        else
            is_installed "$pkg" || echo "$pkg"
        fi
    done
    # The tests call `psql` from PATH, so the client counts as part of "PostgreSQL present".
    if ! pg_server_present || ! command -v psql >/dev/null; then
        printf '%s\n' "${PG_PKGS[@]}"
    fi
}

as_root() { # run a command as root: directly, via sudo, or fail clearly
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "installing packages needs root, and sudo is not available; rerun as root: sudo bash $0"
    fi
}

apt_get() {
    # A concurrent apt/dpkg (other users of the machine) makes us wait instead of failing.
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"
}

main() {
    local missing lister=missing_packages
    # --venv: only what `make install` needs before it can make .venv
    [[ "${1:-}" == --venv ]] && lister=venv_missing
    mapfile -t missing < <($lister)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "all system packages present"
        return 0
    fi
    log "installing: ${missing[*]}"
    local start=$SECONDS
    apt_get update
    apt_get install --no-install-recommends "${missing[@]}"

    # Verify, so a half-finished install fails here and not somewhere inside the tests.
    mapfile -t missing < <($lister)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after install: ${missing[*]}"
    log "done in $((SECONDS - start)) s"
}

main "$@"
