#!/bin/bash
# mantik job wrapper: run 0123456789abcdef0123456789abcdef of experiment 7
set -u
umask 027
mkdir -p .mantik project && mv -f job-token .mantik/ && chmod 600 .mantik/job-token
(cd project && (python3 -m zipfile -e ../project.zip . 2>/dev/null || unzip -qo ../project.zip)) && rm -f project.zip
export MANTIK_DIR="$PWD/.mantik"
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
export TEST_ENV_VAR='variable value'
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
export APPTAINERENV_TEST_ENV_VAR="$TEST_ENV_VAR"
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
_mantik_log_start
trap _mantik_on_term TERM INT
cd "$MANTIK_DIR/../project" || _mantik_finish 97 FAILED
_mantik_status RUNNING
if [ "$MANTIK_TRACKING" = offline ]; then _mantik_snapshots {_mantik_log_fd}>&- & _mantik_snapshotter=$!; fi
{
  if [ "$MANTIK_TRACKING" = offline ]; then
    apptainer run --cleanenv image.sif bash -c '"$(command -v python || command -v python3)" "$(dirname "${MLFLOW_TRACKING_URI#sqlite:///}")/init.py"' || exit 96
  fi
  apptainer run --cleanenv image.sif bash -c 'python train.py --alpha 0.5'
} >&"$_mantik_log_fd" 2>&1 {_mantik_log_fd}>&- &
_mantik_child=$!
wait "$_mantik_child"
_mantik_rc=$?
_mantik_child=
if [ "$_mantik_rc" -eq 0 ]; then _mantik_finish 0 FINISHED; fi
_mantik_finish "$_mantik_rc" FAILED
