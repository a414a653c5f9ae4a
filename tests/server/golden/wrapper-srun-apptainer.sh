#!/bin/bash
# mantik job wrapper: run 0123456789abcdef0123456789abcdef of experiment 7
set -u
umask 027
export MANTIK_DIR=/jobs/r1/.mantik
MANTIK_LOG="$MANTIK_DIR/job.log"
MANTIK_LOG_PART=22369621
[ -w "${HOME:-/}" ] || export HOME="${MANTIK_DIR%/.mantik}"
export MANTIK_LOG_URL=https://mantik.example.org/api/2.0/mlflow-artifacts/artifacts/7/r/artifacts/mantik/job.log
export MLFLOW_TRACKING_URI=https://mantik.example.org
export MLFLOW_RUN_ID=0123456789abcdef0123456789abcdef
export MLFLOW_EXPERIMENT_ID=7
MLFLOW_TRACKING_TOKEN="$(<"$MANTIK_DIR/job-token")"
export MLFLOW_TRACKING_TOKEN
unset MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD MLFLOW_TRACKING_AUTH MANTIK_USERNAME MANTIK_PASSWORD MANTIK_UNICORE_PASSWORD MANTIK_SSH_PASSWORD MANTIK_SSH_KEY_FILE
export MANTIK_JOB_MARK="$MLFLOW_RUN_ID.$$"
export MANTIK_TRACKING=auto
MANTIK_SNAPSHOT_SECONDS=10
# auto: offline when this node cannot reach the platform (compute nodes without internet)
if [ "$MANTIK_TRACKING" = auto ]; then
  if curl -sf -o /dev/null --max-time 5 "$MLFLOW_TRACKING_URI/api/mantik/health" 2>/dev/null \
    || curl -sf -o /dev/null --max-time 5 "$MLFLOW_TRACKING_URI/health" 2>/dev/null; then
    MANTIK_TRACKING=online
  else
    MANTIK_TRACKING=offline
  fi
fi
echo "$MANTIK_TRACKING" >"$MANTIK_DIR/tracking"
if [ "$MANTIK_TRACKING" = offline ]; then
  MANTIK_OFFLINE="$MANTIK_DIR/offline"
  mkdir -p "$MANTIK_OFFLINE/artifacts"
  export MLFLOW_TRACKING_URI="sqlite:///$MANTIK_OFFLINE/mlruns.db"
  # Apptainer shows the store to the job under the same path.
  export APPTAINER_BIND="${APPTAINER_BIND:+$APPTAINER_BIND,}$MANTIK_OFFLINE"
  echo "mantik: tracking offline into $MANTIK_OFFLINE; the platform syncs it" >>"$MANTIK_LOG"
  cat >"$MANTIK_OFFLINE/init.py" <<'MANTIK_PY'
# mantik/server/compute/offline/node/offline_init.py, embedded verbatim
MANTIK_PY
  cat >"$MANTIK_OFFLINE/snapshot.py" <<'MANTIK_PY'
# mantik/server/compute/offline/node/offline_snapshot.py, embedded verbatim
MANTIK_PY
fi
export APPTAINERENV_MLFLOW_TRACKING_URI="$MLFLOW_TRACKING_URI"
export APPTAINERENV_MLFLOW_RUN_ID="$MLFLOW_RUN_ID"
export APPTAINERENV_MLFLOW_EXPERIMENT_ID="$MLFLOW_EXPERIMENT_ID"
export APPTAINERENV_MLFLOW_TRACKING_TOKEN="$MLFLOW_TRACKING_TOKEN"
export APPTAINERENV_MANTIK_JOB_MARK="$MANTIK_JOB_MARK"
_mantik_keep_log() {  # stdin → job.log (the first MANTIK_LOG_PART bytes), then the parts
  SHELL="$BASH" split -b "$MANTIK_LOG_PART" -d -a 9 --filter='n=$((10#${FILE##*.})); [ $n -gt 0 ] || exec cat >>"${FILE%.tail.*}"; [ $n -lt 3 ] || rm -f -- "${FILE%.*}.$(printf %09d $((n - 2)))"; exec cat >"$FILE"' - \
    "$MANTIK_DIR/job.log.tail.$MANTIK_LOG_PART."
}
_mantik_log_fd=
_mantik_logger=
_mantik_log_start() {
  : >>"$MANTIK_LOG"
  exec {_mantik_log_fd}> >(trap '' TERM INT; unset MANTIK_JOB_MARK; _mantik_keep_log)
  _mantik_logger=$!
}
_mantik_say() {  # a line of the wrapper's own, in the log
  if [ -n "$_mantik_logger" ]; then echo "mantik: $*" >&"$_mantik_log_fd"
  else echo "mantik: $*" >>"$MANTIK_LOG"; fi
}
_mantik_log_end() {  # close the log; wait (10 s at most) until its last bytes are written
  [ -n "$_mantik_logger" ] || return 0
  exec {_mantik_log_fd}>&-
  local waited=0
  while kill -0 "$_mantik_logger" 2>/dev/null && [ $waited -lt 100 ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  _mantik_logger=
}
_mantik_kept_log() {  # the file that holds the log as kept: head, marker, tail
  local parts=("$MANTIK_DIR/job.log.tail."*)
  if [ ! -e "${parts[0]}" ]; then echo "$MANTIK_LOG"; return; fi
  local first="${parts[0]##*.}"
  local dropped=$(((10#$first - 1) * MANTIK_LOG_PART))
  {
    cat "$MANTIK_LOG"
    [ "$dropped" -eq 0 ] || printf '\n[mantik: %s bytes of output left out here]\n' "$dropped"
    cat -- "${parts[@]}"
  } >"$MANTIK_DIR/job.log.upload"
  echo "$MANTIK_DIR/job.log.upload"
}
_mantik_api() {  # METHOD PATH JSON: best effort, the platform's poller is the safety net
  [ "$MANTIK_TRACKING" != offline ] || return 0  # unreachable: the platform syncs instead
  curl -sS --max-time 30 --retry 3 --retry-connrefused -o /dev/null -X "$1" \
    -H "Authorization: Bearer $MLFLOW_TRACKING_TOKEN" -H 'Content-Type: application/json' \
    --data "$3" "$MLFLOW_TRACKING_URI$2" 2>>"$MANTIK_DIR/api.err" || true
}
_mantik_status() {  # STATUS [end]
  local body="{\"run_id\": \"$MLFLOW_RUN_ID\", \"status\": \"$1\""
  if [ -n "${2:-}" ]; then body="$body, \"end_time\": $(date +%s%3N)"; fi
  _mantik_api POST /api/2.0/mlflow/runs/update "$body}"
}
_mantik_upload_log() {  # the log as kept; -T streams the file (--data-binary @ reads it whole)
  [ -n "$MANTIK_LOG_URL" ] && [ "$MANTIK_TRACKING" != offline ] || return 0
  local kept
  kept="$(_mantik_kept_log)"
  curl -sS --max-time 300 -o /dev/null -T "$kept" \
    -H "Authorization: Bearer $MLFLOW_TRACKING_TOKEN" \
    -H 'Content-Type: application/octet-stream' "$MANTIK_LOG_URL" 2>>"$MANTIK_DIR/api.err" || true
  [ "$kept" = "$MANTIK_LOG" ] || rm -f -- "$kept"
}
_mantik_finish() {  # EXIT_CODE STATUS
  trap '' TERM INT
  [ "$MANTIK_TRACKING" != offline ] || _mantik_offline_end
  _mantik_sweep_all  # first: what it left behind may hold the log open
  _mantik_log_end
  echo "$1" > "$MANTIK_DIR/exit-code"
  _mantik_api POST /api/2.0/mlflow/runs/set-tag \
    "{\"run_id\": \"$MLFLOW_RUN_ID\", \"key\": \"mantik.exit_code\", \"value\": \"$1\"}"
  _mantik_upload_log
  _mantik_status "$2" end
  exit "$1"
}
_mantik_child=
_mantik_on_term() {  # cancel, scancel, time limit: stop all the job started, record KILLED
  trap '' TERM INT
  _mantik_say "received termination signal, stopping the job"
  local pid waited=0
  if [ "$(ps -o pgid= -p $$ | tr -d ' ')" = "$$" ]; then  # a group of its own (local jobs)
    kill -TERM 0 2>/dev/null  # everything the job started; this shell ignores it now
  elif [ -n "$_mantik_child" ]; then  # under a scheduler, which also stops the job's tree
    pkill -TERM -P "$_mantik_child" 2>/dev/null
    kill -TERM "$_mantik_child" 2>/dev/null
  fi
  _mantik_sweep TERM
  while [ -n "$_mantik_child" ] && kill -0 "$_mantik_child" 2>/dev/null && [ $waited -lt 100 ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  _mantik_log_end  # what the job printed until now, on disk before anything is killed
  if [ "$(ps -o pgid= -p $$ | tr -d ' ')" = "$$" ]; then
    for pid in $(pgrep -g $$ 2>/dev/null); do  # what ignored TERM, but this shell
      [ "$pid" = "$$" ] || kill -KILL "$pid" 2>/dev/null
    done
  fi
  _mantik_sweep KILL
  _mantik_finish 143 KILLED
}
_mantik_sweep() {  # SIGNAL: signal every other process carrying this job's mark; 1 if none
  local found=1 entry pid
  for entry in $(grep -lzxF "MANTIK_JOB_MARK=$MANTIK_JOB_MARK" /proc/[0-9]*/environ 2>/dev/null); do
    pid=${entry#/proc/}; pid=${pid%/environ}
    [ "$pid" = "$$" ] || ! kill -"$1" "$pid" 2>/dev/null || found=0
  done
  return $found
}
_mantik_sweep_all() {  # what the job left behind: TERM, then KILL what is still there
  local round=0
  _mantik_sweep TERM || return 0
  sleep 0.5
  while _mantik_sweep KILL && [ $round -lt 10 ]; do sleep 0.2; round=$((round + 1)); done
}
_mantik_snapshotter=
_mantik_snapshot() {  # a consistent copy of the live store, published atomically
  python3 "$MANTIK_OFFLINE/snapshot.py" "$MANTIK_OFFLINE/mlruns.db" "$MANTIK_OFFLINE/snapshot.db" \
    "$@" 2>>"$MANTIK_OFFLINE/snapshot.err" || true
}
_mantik_snapshots() {  # every few seconds (less often for a store that takes long to copy)
  trap 'exit 0' TERM
  sleep "$MANTIK_SNAPSHOT_SECONDS" && _mantik_snapshot --every "$MANTIK_SNAPSHOT_SECONDS"
}
_mantik_offline_end() {  # the last snapshot: after the program ended, been killed or timed out
  if [ -n "$_mantik_snapshotter" ]; then
    kill -TERM "$_mantik_snapshotter" 2>/dev/null
    pkill -TERM -P "$_mantik_snapshotter" 2>/dev/null
    wait "$_mantik_snapshotter" 2>/dev/null
    _mantik_snapshotter=
  fi
  _mantik_snapshot
}
_mantik_tasks_failed() {  # SRUN_EXIT_CODE: name the ranks that failed; return the job's code
  [ "$1" -ne 0 ] || return 0
  local rank code failed= first=
  for rank in $(ls "$MANTIK_DIR/ranks" 2>/dev/null \
      | sed -n 's/^rank-\([0-9]*\)\.exit$/\1/p' | sort -n); do
    code="$(<"$MANTIK_DIR/ranks/rank-$rank.exit")"
    case "$code" in 0 | '' | *[!0-9]*) continue ;; esac
    failed="${failed:+$failed, }rank $rank exited with $code"
    # The code of a rank that failed by itself, not of one srun stopped (128 + signal).
    [ -n "$first" ] || [ "$code" -gt 128 ] || first="$code"
  done
  echo "mantik: task(s) failed: ${failed:-srun exited with $1, no task recorded a failure}"
  return "${first:-$1}"
}
_mantik_log_start
trap _mantik_on_term TERM INT
cd "$MANTIK_DIR/../project" || _mantik_finish 97 FAILED
_mantik_status RUNNING
if [ "$MANTIK_TRACKING" = offline ]; then _mantik_snapshots {_mantik_log_fd}>&- & _mantik_snapshotter=$!; fi
{
  if [ "$MANTIK_TRACKING" = offline ]; then
    apptainer run --cleanenv /jobs/r1/project/image.sif bash -c '"$(command -v python || command -v python3)" "$(dirname "${MLFLOW_TRACKING_URI#sqlite:///}")/init.py"' || exit 96
  fi
  MASTER_ADDR="$(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null | head -n 1)"
  if [ -z "$MASTER_ADDR" ]; then  # no scontrol: the list's first entry, n[01-04],m → n01
    MASTER_ADDR="${SLURM_JOB_NODELIST:-$(hostname)}"
    MASTER_ADDR="${MASTER_ADDR%%,*}"
    case "$MASTER_ADDR" in
      *"["*) _mantik_first="${MASTER_ADDR#*\[}"
        MASTER_ADDR="${MASTER_ADDR%%\[*}${_mantik_first%%[],-]*}" ;;
    esac
  fi
  export MASTER_ADDR MASTER_PORT="$((10000 + ${SLURM_JOB_ID:-0} % 20000))"
  mkdir -p "$MANTIK_DIR/ranks" && rm -f "$MANTIK_DIR/ranks/"rank-*.exit
  srun --label --kill-on-bad-exit=1 --cpus-per-task=8 bash -c 'export RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID" WORLD_SIZE="$SLURM_NTASKS"
mkdir -p "$MANTIK_DIR/ranks"
_mantik_monitor=
if [ "$LOCAL_RANK" = 0 ] && { [ "$RANK" = 0 ] || [ "$MANTIK_TRACKING" != offline ]; }; then
  if python3 -c '"'"'import mlflow.system_metrics, psutil'"'"' 2>/dev/null; then
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=10 python3 -c '"'"'import os, signal, sys, threading
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
monitor = SystemMetricsMonitor(os.environ["MLFLOW_RUN_ID"], node_id=sys.argv[1])
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
monitor.start()
done.wait()
monitor.finish()
'"'"' \
      "$(hostname -s)" >>"$MANTIK_DIR/ranks/monitor.log" 2>&1 &
    _mantik_monitor=$!
  else
    echo "mantik: no system metrics from $(hostname -s): its python3 lacks MLflow or psutil"
  fi
fi
if [ "$RANK" != 0 ]; then  # rank 0 tracks the run; the others log where nobody looks
  mkdir -p "$MANTIK_DIR/ranks/rank-$RANK"
  export MLFLOW_TRACKING_URI="file:$MANTIK_DIR/ranks/rank-$RANK/mlruns"
  export MLFLOW_ALLOW_FILE_STORE=true
  unset MLFLOW_RUN_ID MLFLOW_EXPERIMENT_ID MLFLOW_TRACKING_TOKEN
  export APPTAINERENV_MLFLOW_TRACKING_URI="$MLFLOW_TRACKING_URI"
  export APPTAINERENV_MLFLOW_ALLOW_FILE_STORE=true
  unset APPTAINERENV_MLFLOW_RUN_ID APPTAINERENV_MLFLOW_EXPERIMENT_ID APPTAINERENV_MLFLOW_TRACKING_TOKEN
  export APPTAINER_BIND="${APPTAINER_BIND:+$APPTAINER_BIND,}$MANTIK_DIR/ranks/rank-$RANK"
fi
export APPTAINERENV_RANK="$RANK"
export APPTAINERENV_LOCAL_RANK="$LOCAL_RANK"
export APPTAINERENV_WORLD_SIZE="$WORLD_SIZE"
export APPTAINERENV_MASTER_ADDR="$MASTER_ADDR"
export APPTAINERENV_MASTER_PORT="$MASTER_PORT"
apptainer run --cleanenv /jobs/r1/project/image.sif bash -c '"'"'python train.py --alpha 0.5'"'"'
_mantik_rc=$?
if [ -n "$_mantik_monitor" ]; then kill -TERM "$_mantik_monitor"; wait "$_mantik_monitor"; fi
echo "$_mantik_rc" >"$MANTIK_DIR/ranks/rank-$RANK.exit"
exit "$_mantik_rc"'
  _mantik_tasks_failed "$?"
} >&"$_mantik_log_fd" 2>&1 {_mantik_log_fd}>&- &
_mantik_child=$!
wait "$_mantik_child"
_mantik_rc=$?
_mantik_child=
if [ "$_mantik_rc" -eq 0 ]; then _mantik_finish 0 FINISHED; fi
_mantik_finish "$_mantik_rc" FAILED
