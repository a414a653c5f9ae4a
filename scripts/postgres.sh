#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests.
#
#   scripts/postgres.sh up       start it (creating it on first use); idempotent
#   scripts/postgres.sh down     stop it (fast shutdown); data is kept for a quick next `up`
#   scripts/postgres.sh status   exit 0 if it accepts connections, 3 otherwise
#
# Contract (tests/support/services.py): `psql postgresql://mantik@127.0.0.1:55432/postgres`
# works, i.e. superuser `mantik`, trust auth, loopback only.
#
# Environment: MANTIK_PG_DIR (default /tmp/mantik-pg: data, socket, log),
#              MANTIK_PG_PORT (default 55432), MANTIK_PG_BINDIR (server binaries, optional).
set -euo pipefail

PG_DIR=${MANTIK_PG_DIR:-/tmp/mantik-pg}
PG_PORT=${MANTIK_PG_PORT:-55432}
PG_SUPERUSER=mantik
ADMIN_URL=postgresql://$PG_SUPERUSER@127.0.0.1:$PG_PORT/postgres
DATA=$PG_DIR/data
LOG=$PG_DIR/postgres.log
STATE=$PG_DIR/state.env # what `up` used (bindir, user), so `down` stops the same cluster
START_TIMEOUT=${MANTIK_PG_START_TIMEOUT:-60}

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- locating things --------------------------------------------------------------------

find_bindir() {
    # Debian keeps the server binaries off PATH (/usr/lib/postgresql/<major>/bin); other
    # installs put them on PATH. pg_config may name a client-only dir, so check every
    # candidate for all three server binaries.
    local dir candidates=()
    [[ -n "${MANTIK_PG_BINDIR:-}" ]] && candidates+=("$MANTIK_PG_BINDIR")
    candidates+=("$(pg_config --bindir 2>/dev/null || true)")
    # Newest major version first.
    mapfile -t -O "${#candidates[@]}" candidates < <(
        printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V -r)
    if command -v pg_ctl >/dev/null; then
        candidates+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
    fi
    for dir in "${candidates[@]}"; do
        if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; run scripts/system-deps.sh"
}

pick_run_user() {
    # initdb and postgres refuse to run as root, so root runs the cluster as an unprivileged
    # system user; anybody else simply runs it as themselves.
    if [[ $EUID -ne 0 ]]; then
        id -un
    elif id -u postgres >/dev/null 2>&1; then
        echo postgres
    else
        id -u mantikpg >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin mantikpg
        echo mantikpg
    fi
}

as_pg() { # run a command as the cluster's owner
    if [[ "$RUN_USER" == "$(id -un)" ]]; then
        "$@"
    else
        runuser -u "$RUN_USER" -- "$@"
    fi
}

load_state() { # the bindir/user recorded by the last `up`, falling back to discovery
    BINDIR="" RUN_USER=""
    # shellcheck disable=SC1090
    [[ -r "$STATE" ]] && source "$STATE"
    if [[ -z "$BINDIR" || ! -x "$BINDIR/pg_ctl" ]]; then BINDIR=$(find_bindir); fi
    if [[ -z "$RUN_USER" ]] || ! id -u "$RUN_USER" >/dev/null 2>&1; then
        RUN_USER=$(pick_run_user)
    fi
}

# --- checks -------------------------------------------------------------------------------

accepting_connections() {
    # Over TCP, exactly like the tests connect.
    if [[ -x "$BINDIR/pg_isready" ]]; then
        "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres
    else
        "$(psql_bin)" -qAtX -c 'select 1' "$ADMIN_URL" >/dev/null 2>&1
    fi
}

psql_bin() { if [[ -x "$BINDIR/psql" ]]; then echo "$BINDIR/psql"; else echo psql; fi; }

pid_alive() {
    # Not `kill -0`: PID 1 on these machines reaps orphans only lazily, and a zombie still
    # passes kill -0 (pg_ctl status and the postmaster's own stale-lock check use it, too).
    local state
    state=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

postmaster_pid() { head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true; }

our_server_running() { # the postmaster of *our* data dir is alive
    local pid
    pid=$(postmaster_pid)
    [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" &&
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres* ]]
}

remove_stale_locks() {
    # After a crash (or kill -9) the lock files name a dead -- or zombie -- postmaster, and
    # a new postmaster would refuse to start ("lock file already exists").
    if [[ -f "$DATA/postmaster.pid" ]] && ! our_server_running; then
        log "removing stale lock files of dead postmaster $(postmaster_pid)"
        rm -f "$DATA/postmaster.pid" "$PG_DIR/.s.PGSQL.$PG_PORT" "$PG_DIR/.s.PGSQL.$PG_PORT.lock"
    fi
}

log_tail() {
    local file
    for file in "$PG_DIR/pg_ctl.out" "$LOG"; do
        [[ -s "$file" ]] || continue
        log "last lines of $file:"
        tail -n 20 "$file" | sed 's/^/    /' >&2
    done
}

# --- creating the cluster -----------------------------------------------------------------

prepare_dir() {
    mkdir -p "$PG_DIR"
    if [[ $EUID -ne 0 ]]; then
        local owner
        owner=$(stat -c %U "$PG_DIR")
        [[ "$owner" == "$RUN_USER" ]] ||
            die "$PG_DIR belongs to $owner; run this script as root (or as $owner)"
    else
        chown "$RUN_USER:" "$PG_DIR"
    fi
    chmod 0700 "$PG_DIR"
    # The server's working directory must be readable by its user (not e.g. /root).
    cd "$PG_DIR"
}

server_major() { "$BINDIR/postgres" -V | sed -E 's/^[^0-9]*([0-9]+).*/\1/'; }

ensure_initialised() {
    # A data dir from an interrupted initdb (no PG_VERSION) or from another major version is
    # useless to a throwaway cluster: start over rather than ask a human.
    if [[ -d "$DATA" ]]; then
        if [[ -f "$DATA/PG_VERSION" && "$(cat "$DATA/PG_VERSION")" == "$(server_major)" ]]; then
            return 0
        fi
        log "discarding unusable data dir $DATA"
        rm -rf "$DATA"
    fi
    log "initdb $DATA (PostgreSQL $(server_major), superuser $PG_SUPERUSER)"
    # C locale + UTF8: deterministic sorting and no dependence on generated locales.
    as_pg "$BINDIR/initdb" -D "$DATA" -U "$PG_SUPERUSER" --auth=trust \
        --encoding=UTF8 --no-locale --no-sync >"$PG_DIR/initdb.log" 2>&1 ||
        { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed (log: $PG_DIR/initdb.log)"; }
    # Our settings live in their own file, rewritten on every `up` (see write_config).
    echo "include_if_exists = 'mantik.conf'" >>"$DATA/postgresql.conf"
}

write_config() {
    # Rewritten on every `up` so changes to this script apply without a re-init.
    as_pg tee "$DATA/mantik.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh -- a throwaway test cluster, durability is not wanted.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # Trust, but only for the unix socket and loopback.
    as_pg tee "$DATA/pg_hba.conf" >/dev/null <<'EOF'
# Written by scripts/postgres.sh
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
EOF
}

# --- commands ---------------------------------------------------------------------------

cmd_up() {
    load_state
    if our_server_running && accepting_connections; then
        log "already running on 127.0.0.1:$PG_PORT"
        return 0
    fi
    if accepting_connections; then
        die "something else already accepts connections on 127.0.0.1:$PG_PORT (set MANTIK_PG_PORT)"
    fi
    prepare_dir
    ensure_initialised
    write_config
    printf 'BINDIR=%q\nRUN_USER=%q\n' "$BINDIR" "$RUN_USER" >"$STATE"

    # Running, but on another port (MANTIK_PG_PORT changed): restart with the new config.
    # (Line 4 of postmaster.pid is the port.)
    if our_server_running && [[ "$(sed -n 4p "$DATA/postmaster.pid")" != "$PG_PORT" ]]; then
        log "running on another port; restarting"
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    fi
    if ! our_server_running; then
        remove_stale_locks
        # A fresh log per start, so an error shows this start's lines only.
        [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.prev"
        # pg_ctl detaches the postmaster into its own session and ignores stale pid files.
        # Its own wait (-w) is bounded; the loop below is the real readiness check.
        # 9>&-: the postmaster must not inherit our lock, or it would hold it forever.
        as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$START_TIMEOUT" start \
            >"$PG_DIR/pg_ctl.out" 2>&1 9>&- || true
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until accepting_connections; do
        if ((SECONDS >= deadline)) || ! our_server_running; then
            log "PostgreSQL did not come up on 127.0.0.1:$PG_PORT"
            log_tail
            die "start failed"
        fi
        sleep 0.2
    done
    # The contract itself: a superuser session over TCP with trust auth.
    "$(psql_bin)" -qAtX -c 'select 1' "$ADMIN_URL" >/dev/null ||
        die "server is up but '$ADMIN_URL' does not work"
    log "up: $ADMIN_URL"
}

cmd_down() {
    if [[ ! -d "$DATA" ]]; then
        log "not running (no cluster in $DATA)"
        return 0
    fi
    load_state
    if ! our_server_running; then
        log "not running"
        remove_stale_locks
        return 0
    fi
    cd "$PG_DIR"
    # Fast mode: roll back open transactions and disconnect clients instead of waiting.
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null ||
        { log_tail; die "pg_ctl stop failed"; }
    log "stopped"
}

cmd_status() {
    load_state
    if accepting_connections; then
        # Other users cannot look into the (0700) data dir, so say what we can tell.
        if our_server_running; then
            echo "running: $ADMIN_URL (data $DATA, pid $(postmaster_pid))"
        else
            echo "running: $ADMIN_URL (not verifiably the cluster in $DATA)"
        fi
        return 0
    fi
    echo "not running"
    return 3
}

main() {
    local cmd=${1:-}
    case "$cmd" in
    up | down | status) ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
    esac
    # Commands run as the cluster's user must not start in a directory it cannot read.
    cd /
    # status only reads, so anybody may ask without the lock.
    [[ "$cmd" == status ]] && { cmd_status; return; }
    # Serialise concurrent invocations (parallel `make` targets, several test runs).
    mkdir -p "$(dirname "$PG_DIR")"
    exec 9>>"$PG_DIR.lock"
    flock -w 120 9 || die "another scripts/postgres.sh holds $PG_DIR.lock"
    "cmd_$cmd"
}

main "$@"
