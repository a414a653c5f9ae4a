#!/usr/bin/env bash
# A real single-node SLURM for the tests (slurmctld and slurmd on this host, munge auth).
#
#   scripts/slurm.sh up       write /etc/slurm/slurm.conf, start munged, slurmctld, slurmd;
#                             wait until the node is idle. Idempotent; recovers stale state.
#   scripts/slurm.sh down     cancel leftover jobs, stop the daemons by their recorded pids
#   scripts/slurm.sh status   exit 0 if the node is usable, 3 otherwise
#
# Everything but the config (which client commands read from /etc/slurm/slurm.conf, so they
# need no SLURM_CONF) lives in one folder: $MANTIK_SLURM_DIR (default /tmp/mantik-slurm).
set -euo pipefail

STATE_DIR=${MANTIK_SLURM_DIR:-/tmp/mantik-slurm}
CONF=/etc/slurm/slurm.conf
NODE=$(hostname -s)
MUNGE_DIR=$STATE_DIR/munge # munged writes its pid file and log as the munge user
MUNGE_SOCKET_DIR=/run/munge # the default socket, so libmunge clients need no config
UP_TIMEOUT=${MANTIK_SLURM_UP_TIMEOUT:-60}

log() { printf 'slurm.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes ----------------------------------------------------------------------------

pid_alive() {
    # Not `kill -0`: PID 1 on these machines reaps orphans only lazily, so a dead daemon can
    # linger as a zombie, which kill -0 still reports as alive.
    local state
    state=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

recorded_pid() { # daemon name -> its pid, if its pid file names a live process of that name
    local name=$1 file pid
    file=$(pid_file "$name")
    pid=$(head -n 1 "$file" 2>/dev/null || true)
    # The name check guards against a recycled pid, it does not find processes by name.
    [[ "$pid" =~ ^[0-9]+$ ]] && pid_alive "$pid" &&
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] && echo "$pid"
}

pid_file() {
    case "$1" in
    munged) echo "$MUNGE_DIR/munged.pid" ;;
    *) echo "$STATE_DIR/$1.pid" ;;
    esac
}

running() { recorded_pid "$1" >/dev/null; }

stop_daemon() { # SIGTERM the recorded pid, wait, SIGKILL as a last resort
    local name=$1 pid i
    if ! pid=$(recorded_pid "$name"); then
        rm -f "$(pid_file "$name")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        log "$name ($pid) ignored SIGTERM for 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$name")"
    log "stopped $name ($pid)"
}

log_tail() { # show why a daemon did not come up
    local file
    for file in "$@"; do
        [[ -s "$file" ]] || continue
        log "last lines of $file:"
        tail -n 15 "$file" | sed 's/^/    /' >&2
    done
}

# --- configuration ------------------------------------------------------------------------

render_conf() {
    cat <<EOF
# Written by scripts/slurm.sh -- a single-node test cluster; edits are overwritten by \`up\`.
ClusterName=mantik
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
# Jobs are submitted by and run as root.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true

# No systemd, no cgroups on these machines.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none

# State, logs, pid files: one throwaway folder.
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# Fast scheduling: a trivial job goes sbatch -> COMPLETED in about a second.
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1
# Jobs share the node by cores and memory; without a default memory per CPU a job without
# --mem would take the whole node and jobs would run one at a time.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
# Impossible requests (too much memory, unknown partition, 2 nodes, over MaxTime) fail at
# submit time instead of pending forever -- the error-path tests rely on it.
EnforcePartLimits=ALL
# Finished jobs stay visible to \`scontrol show job\` for an hour.
MinJobAge=3600
KillWait=5
InactiveLimit=0
# A node that was down (e.g. slurmd killed) comes back by itself once it registers again.
ReturnToService=2

# No slurmdbd: \`sacct -c\` reads finished jobs from the jobcomp file.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/jobcomp.log

# The node advertises what is configured below, not the 2 real cores: 32 one-CPU jobs with
# the default 100 MB each fit at once. --mem beyond RealMemory is rejected.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 Sockets=1 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=32000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=ALL Default=NO MaxTime=60 State=UP
EOF
}

write_conf() {
    local new
    new=$(render_conf)
    [[ -f "$CONF" && "$(cat "$CONF")" == "$new" ]] && return 0
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$new" >"$CONF.tmp.$$"
    chmod 0644 "$CONF.tmp.$$"
    mv -f "$CONF.tmp.$$" "$CONF"
    log "wrote $CONF (node $NODE)"
}

# The config the running daemons were started with; a different $CONF means restart them.
STARTED_CONF=$STATE_DIR/slurm.conf.started
conf_is_current() { cmp -s "$CONF" "$STARTED_CONF"; }

# --- munge --------------------------------------------------------------------------------

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

ensure_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating munge key"
        mkdir -p /etc/munge
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    # munged refuses keys and directories that others could read or write.
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 0700 /etc/munge
    chmod 0600 /etc/munge/munge.key

    if running munged; then
        munge_works && return 0
        log "our munged does not answer; restarting it"
        stop_daemon munged
    elif munge_works; then
        # A munged we did not start (e.g. an init script). Use it, never stop it.
        log "using the munged that is already running (not ours; \`down\` leaves it alone)"
        return 0
    fi

    # Without systemd nothing creates the runtime dir. /var/lib/munge holds the PRNG seed.
    install -d -o munge -g munge -m 0755 "$MUNGE_SOCKET_DIR"
    # (0755 so that anybody's `status` can read the pid file.)
    install -d -o munge -g munge -m 0755 "$MUNGE_DIR"
    install -d -o munge -g munge -m 0700 /var/lib/munge
    # --force: take over a socket left behind by a munged that died.
    runuser -u munge -- munged --force \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        </dev/null >>"$MUNGE_DIR/munged.out" 2>&1 9>&- ||
        { log_tail "$MUNGE_DIR/munged.out" "$MUNGE_DIR/munged.log"; die "munged did not start"; }
    local i
    for ((i = 0; i < 100; i++)); do
        munge_works && { log "munged up"; return 0; }
        sleep 0.1
    done
    log_tail "$MUNGE_DIR/munged.out" "$MUNGE_DIR/munged.log"
    die "munged runs but \`munge -n | unmunge\` fails"
}

# --- slurm daemons ----------------------------------------------------------------------

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1 || true; }

node_usable() {
    # idle is what `up` waits for; busy states also mean a working node (jobs of others).
    case "$(node_state)" in
    idle | mixed | allocated | completing) return 0 ;;
    *) return 1 ;;
    esac
}

port_holder() { # port -> "pid (command)" of a process listening on it, if any
    command -v ss >/dev/null || return 0
    ss -Htlnp "sport = :$1" 2>/dev/null |
        sed -nE 's/.*users:\(\("([^"]+)",pid=([0-9]+).*/\2 (\1)/p' | head -n 1
}

start_daemon() { # name, port, args...: start unless our recorded pid is alive
    local name=$1 port=$2 holder
    shift 2
    running "$name" && return 0
    rm -f "$(pid_file "$name")"
    # A daemon we have no pid for (its state folder was deleted, or somebody else's) would
    # make ours fail on the port. Say so instead of guessing and killing by name.
    holder=$(port_holder "$port")
    [[ -z "$holder" ]] ||
        die "port $port is taken by pid $holder, which $STATE_DIR does not record; stop it (kill <pid>) and rerun"
    # Both daemonise and write their pid file. Their output goes to a file and fd 9 (our
    # lock) is closed, so no caller waits on an inherited pipe or lock.
    "$name" "$@" </dev/null >>"$STATE_DIR/$name.out" 2>&1 9>&- ||
        { log_tail "$STATE_DIR/$name.out" "$STATE_DIR/$name.log"; die "$name did not start"; }
    local i
    for ((i = 0; i < 100; i++)); do
        running "$name" && { log "$name up (pid $(recorded_pid "$name"))"; return 0; }
        sleep 0.1
    done
    log_tail "$STATE_DIR/$name.out" "$STATE_DIR/$name.log"
    die "$name exited right after starting"
}

needs_resume() { # node state, seconds waited
    case "$1" in
    drain*) return 0 ;; # drained stays drained
    down*) (($2 >= 3)) ;; # may just mean slurmd has not registered yet
    *) return 1 ;;
    esac
}

wait_until_idle() {
    local deadline=$((SECONDS + UP_TIMEOUT)) resumed=0 state start=$SECONDS
    while true; do
        state=$(node_state)
        [[ "$state" == idle ]] && return 0
        # Busy with somebody's jobs is fine, too.
        node_usable && return 0
        # A node marked down/drained in the saved state of an earlier run: once slurmd has
        # registered, put it back into service.
        if ((!resumed)) && needs_resume "$state" $((SECONDS - start)); then
            log "node $NODE is '$state' (stale state); resuming it"
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
            resumed=1
        fi
        if ((SECONDS >= deadline)); then
            log "node $NODE is '${state:-unknown}' after ${UP_TIMEOUT}s"
            log_tail "$STATE_DIR/slurmctld.log" "$STATE_DIR/slurmd.log"
            die "SLURM did not become idle"
        fi
        running slurmctld || { log_tail "$STATE_DIR/slurmctld.log"; die "slurmctld died"; }
        running slurmd || { log_tail "$STATE_DIR/slurmd.log"; die "slurmd died"; }
        sleep 0.2
    done
}

cancel_all_jobs() {
    # Jobs of every user; then wait until their processes are gone (SIGKILL after KillWait).
    local jobs i
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    [[ -z "$jobs" ]] && return 0
    log "cancelling leftover jobs: $(echo "$jobs" | tr '\n' ' ')"
    # shellcheck disable=SC2086 # one argument per job id
    scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -z "$(squeue -h -t RUNNING,COMPLETING,CONFIGURING -o %A 2>/dev/null || true)" ]] &&
            return 0
        sleep 0.2
    done
    log "some jobs are still finishing; stopping the daemons anyway"
}

# --- commands ---------------------------------------------------------------------------

cmd_up() {
    write_conf
    if running slurmctld && running slurmd && conf_is_current && munge_works && node_usable; then
        log "already up (node $NODE: $(node_state))"
        return 0
    fi
    if ! conf_is_current && { running slurmctld || running slurmd; }; then
        log "configuration changed; restarting the daemons"
        stop_daemon slurmd
        stop_daemon slurmctld
    fi

    mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/spool"
    ensure_munge
    # -i: a state file damaged by an earlier crash is skipped instead of fatal.
    start_daemon slurmctld 6817 -i
    # -N: the node name is explicit, whatever the resolver thinks of the hostname.
    start_daemon slurmd 6818 -N "$NODE"
    cp "$CONF" "$STARTED_CONF"
    wait_until_idle
    log "up: node $NODE $(node_state), partitions: $(sinfo -h -o %P | tr '\n' ' ')"
}

cmd_down() {
    if running slurmctld; then
        cancel_all_jobs
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    log "down"
}

cmd_status() {
    local name pid
    for name in munged slurmctld slurmd; do
        if pid=$(recorded_pid "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
        fi
    done
    if ! running slurmctld; then
        # Not asking sinfo: without a controller it retries for ~9 s.
        echo "node $NODE: unknown (no controller)"
        return 3
    fi
    if running slurmd && node_usable; then
        echo "node $NODE: $(node_state)"
        return 0
    fi
    echo "node $NODE: $(node_state) -- not usable"
    return 3
}

require_root() {
    # slurmd must run as root to start jobs as their users; munged needs runuser.
    [[ $EUID -eq 0 ]] && return 0
    if command -v sudo >/dev/null; then
        exec sudo --preserve-env=MANTIK_SLURM_DIR,MANTIK_SLURM_UP_TIMEOUT bash "$0" "$@"
    fi
    die "must run as root (and sudo is not available)"
}

main() {
    local cmd=${1:-}
    case "$cmd" in
    up | down | status) ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
    esac
    local tool
    for tool in munged slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null && continue
        # Nothing installed means nothing runs: `down` has nothing to do.
        [[ "$cmd" == down ]] && { log "SLURM is not installed; nothing to stop"; return 0; }
        die "$tool not found; run scripts/system-deps.sh"
    done
    # status only reads, so anybody may ask.
    [[ "$cmd" == status ]] && { cd /; cmd_status; return; }
    require_root "$@" # before the cd: it re-runs "$0", which may be a relative path
    cd /
    # Serialise concurrent invocations (parallel `make` targets, several test runs).
    exec 9>>"$STATE_DIR.lock"
    flock -w 180 9 || die "another scripts/slurm.sh holds $STATE_DIR.lock"
    "cmd_$cmd"
}

main "$@"
