#!/bin/bash
# mantik job wrapper: run 0123456789abcdef0123456789abcdef of experiment 7
set -u
mkdir -p .mantik project && mv -f job-token .mantik/ && chmod 600 .mantik/job-token
(cd project && (python3 -m zipfile -e ../project.zip . 2>/dev/null || unzip -qo ../project.zip)) && rm -f project.zip
export MANTIK_DIR="$PWD/.mantik"
MANTIK_LOG="$MANTIK_DIR/job.log"
export MANTIK_LOG_URL=https://mantik.example.org/api/2.0/mlflow-artifacts/artifacts/7/r/artifacts/mantik/job.log
export MLFLOW_TRACKING_URI=https://mantik.example.org
export MLFLOW_RUN_ID=0123456789abcdef0123456789abcdef
export MLFLOW_EXPERIMENT_ID=7
MLFLOW_TRACKING_TOKEN="$(<"$MANTIK_DIR/job-token")"
export MLFLOW_TRACKING_TOKEN
unset MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD MLFLOW_TRACKING_AUTH MANTIK_USERNAME MANTIK_PASSWORD MANTIK_UNICORE_PASSWORD
export TEST_ENV_VAR='variable value'
export APPTAINERENV_MLFLOW_TRACKING_URI="$MLFLOW_TRACKING_URI"
export APPTAINERENV_MLFLOW_RUN_ID="$MLFLOW_RUN_ID"
export APPTAINERENV_MLFLOW_EXPERIMENT_ID="$MLFLOW_EXPERIMENT_ID"
export APPTAINERENV_MLFLOW_TRACKING_TOKEN="$MLFLOW_TRACKING_TOKEN"
export APPTAINERENV_TEST_ENV_VAR="$TEST_ENV_VAR"
_mantik_api() {  # METHOD PATH JSON: best effort, the platform's poller is the safety net
  curl -sS --max-time 30 --retry 3 --retry-connrefused -o /dev/null -X "$1" \
    -H "Authorization: Bearer $MLFLOW_TRACKING_TOKEN" -H 'Content-Type: application/json' \
    --data "$3" "$MLFLOW_TRACKING_URI$2" 2>>"$MANTIK_DIR/api.err" || true
}
_mantik_status() {  # STATUS [end]
  local body="{\"run_id\": \"$MLFLOW_RUN_ID\", \"status\": \"$1\""
  if [ -n "${2:-}" ]; then body="$body, \"end_time\": $(date +%s%3N)"; fi
  _mantik_api POST /api/2.0/mlflow/runs/update "$body}"
}
_mantik_upload_log() {
  [ -n "$MANTIK_LOG_URL" ] || return 0
  curl -sS --max-time 300 -o /dev/null -X PUT --data-binary @"$MANTIK_LOG" \
    -H "Authorization: Bearer $MLFLOW_TRACKING_TOKEN" \
    -H 'Content-Type: application/octet-stream' "$MANTIK_LOG_URL" 2>>"$MANTIK_DIR/api.err" || true
}
_mantik_finish() {  # EXIT_CODE STATUS
  trap '' TERM INT
  echo "$1" > "$MANTIK_DIR/exit-code"
  _mantik_api POST /api/2.0/mlflow/runs/set-tag \
    "{\"run_id\": \"$MLFLOW_RUN_ID\", \"key\": \"mantik.exit_code\", \"value\": \"$1\"}"
  _mantik_upload_log
  _mantik_status "$2" end
  exit "$1"
}
_mantik_child=
_mantik_on_term() {  # scancel, time limit, abort: stop the program, record KILLED
  echo "mantik: received termination signal, stopping the job" >>"$MANTIK_LOG"
  if [ -n "$_mantik_child" ]; then
    pkill -TERM -P "$_mantik_child" 2>/dev/null
    kill -TERM "$_mantik_child" 2>/dev/null
    wait "$_mantik_child" 2>/dev/null
  fi
  _mantik_finish 143 KILLED
}
trap _mantik_on_term TERM INT
cd "$MANTIK_DIR/../project" || _mantik_finish 97 FAILED
_mantik_status RUNNING
{
  apptainer run --cleanenv image.sif bash -c 'python train.py --alpha 0.5'
} > >(tee -a "$MANTIK_LOG") 2>&1 &
_mantik_child=$!
wait "$_mantik_child"
_mantik_rc=$?
_mantik_child=
if [ "$_mantik_rc" -eq 0 ]; then _mantik_finish 0 FINISHED; fi
_mantik_finish "$_mantik_rc" FAILED
