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
"""Create the job's local MLflow store with the central run in it, under the same ids.

Runs with the job's own Python and MLflow (inside its container or venv), before the
training code, so that ``mlflow.start_run()`` continues run ``MLFLOW_RUN_ID`` in
``MLFLOW_EXPERIMENT_ID``. The job's MLflow creates the schema: a store made by another
release could break the job, or be migrated in place.
"""

from __future__ import annotations

import os
import sqlite3
import uuid

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def _exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def main() -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]  # sqlite:////…/offline/mlruns.db
    run_id = os.environ["MLFLOW_RUN_ID"]
    experiment_id = int(os.environ["MLFLOW_EXPERIMENT_ID"])
    path = uri[len("sqlite:///") :]
    client = MlflowClient(uri)
    if _exists(client, run_id):
        return  # a requeued or restarted job keeps its store
    artifacts = os.path.join(os.path.dirname(path), "artifacts")
    created = int(client.create_experiment(f"mantik-{run_id}", artifact_location=artifacts))
    if created != experiment_id:
        database = sqlite3.connect(path)
        with database:
            # The local experiment takes the central id (the Default experiment 0 gives way).
            database.execute("DELETE FROM experiments WHERE experiment_id = ?", (experiment_id,))
            database.execute(
                "UPDATE experiments SET experiment_id = ? WHERE experiment_id = ?",
                (experiment_id, created),
            )
        database.close()
    # MLflow draws run ids from uuid4: this one process draws the central run's id.
    draw = uuid.uuid4
    uuid.uuid4 = lambda: uuid.UUID(hex=run_id)
    try:
        client.create_run(str(experiment_id))
    finally:
        uuid.uuid4 = draw


if __name__ == "__main__":
    main()
MANTIK_PY
  cat >"$MANTIK_OFFLINE/snapshot.py" <<'MANTIK_PY'
"""Copy the job's live MLflow store consistently; publish the copy atomically.

Usage: python3 snapshot.py LIVE_DB SNAPSHOT_DB [--every SECONDS] (stdlib only; on the node,
next to the job). The platform reads only the snapshot, never the live database.

With ``--every``, a snapshot every SECONDS until terminated — but never more than a tenth of
the time copying: the copy holds the job's writes back, and a large store takes a while.

Next to the snapshot goes ``SNAPSHOT_DB.blocks``: a JSON header line, then a 16-byte
BLAKE2b digest of each 16 KiB block. A platform that fetches snapshots over a network
(UNICORE) compares it with the digests of the copy it holds and fetches only the blocks
that changed: SQLite's backup keeps page numbers, so a snapshot differs from the one before
in the pages the job wrote — new points, a few index pages — not in its size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time

BLOCK = 16 * 1024
DIGEST_SIZE = 16
DUTY = 0.1  # the largest share of the time spent copying, with --every


def block_digests(path: str) -> bytes:
    digests = bytearray()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digests += hashlib.blake2b(block, digest_size=DIGEST_SIZE).digest()
    return bytes(digests)


def _publish(temporary: str, target: str) -> None:
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, target)


def snapshot(live: str, target: str) -> None:
    if not os.path.exists(live):
        return
    temporary = f"{target}.tmp"
    # Read-write on purpose: after a killed writer, opening rolls its hot journal back.
    source = sqlite3.connect(live, timeout=60)
    copy = sqlite3.connect(temporary)
    try:
        source.backup(copy)  # one step: a consistent copy under a shared lock
    finally:
        copy.close()
        source.close()
    digests = block_digests(temporary)
    header = {"size": os.path.getsize(temporary), "block": BLOCK, "digest": "blake2b-16"}
    manifest = f"{target}.blocks"
    with open(f"{manifest}.tmp", "wb") as handle:
        handle.write(json.dumps(header).encode() + b"\n" + digests)
    # The digests first: a reader that meets them with the snapshot before sees blocks that
    # do not match, and fetches the whole snapshot; digests never lag behind the snapshot.
    _publish(f"{manifest}.tmp", manifest)
    _publish(temporary, target)
    directory = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames themselves survive a node crash
    finally:
        os.close(directory)


def every(live: str, target: str, seconds: float) -> None:
    while True:
        started = time.monotonic()
        try:
            snapshot(live, target)
        except (OSError, sqlite3.Error) as exc:  # e.g. locked for a minute: try again later
            print(f"snapshot failed: {exc}", file=sys.stderr, flush=True)
        took = time.monotonic() - started
        time.sleep(max(seconds, took / DUTY - took))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[3] == "--every":
        every(sys.argv[1], sys.argv[2], float(sys.argv[4]))
    else:
        snapshot(sys.argv[1], sys.argv[2])
MANTIK_PY
fi
export APPTAINERENV_MLFLOW_TRACKING_URI="$MLFLOW_TRACKING_URI"
export APPTAINERENV_MLFLOW_RUN_ID="$MLFLOW_RUN_ID"
export APPTAINERENV_MLFLOW_EXPERIMENT_ID="$MLFLOW_EXPERIMENT_ID"
export APPTAINERENV_MLFLOW_TRACKING_TOKEN="$MLFLOW_TRACKING_TOKEN"
export APPTAINERENV_TEST_ENV_VAR="$TEST_ENV_VAR"
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
_mantik_upload_log() {
  [ -n "$MANTIK_LOG_URL" ] && [ "$MANTIK_TRACKING" != offline ] || return 0
  curl -sS --max-time 300 -o /dev/null -X PUT --data-binary @"$MANTIK_LOG" \
    -H "Authorization: Bearer $MLFLOW_TRACKING_TOKEN" \
    -H 'Content-Type: application/octet-stream' "$MANTIK_LOG_URL" 2>>"$MANTIK_DIR/api.err" || true
}
_mantik_finish() {  # EXIT_CODE STATUS
  trap '' TERM INT
  [ "$MANTIK_TRACKING" != offline ] || _mantik_offline_end
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
trap _mantik_on_term TERM INT
cd "$MANTIK_DIR/../project" || _mantik_finish 97 FAILED
_mantik_status RUNNING
if [ "$MANTIK_TRACKING" = offline ]; then _mantik_snapshots & _mantik_snapshotter=$!; fi
{
  if [ "$MANTIK_TRACKING" = offline ]; then
    apptainer run --cleanenv image.sif bash -c '"$(command -v python || command -v python3)" "$(dirname "${MLFLOW_TRACKING_URI#sqlite:///}")/init.py"' || exit 96
  fi
  apptainer run --cleanenv image.sif bash -c 'python train.py --alpha 0.5'
} > >(tee -a "$MANTIK_LOG") 2>&1 &
_mantik_child=$!
wait "$_mantik_child"
_mantik_rc=$?
_mantik_child=
if [ "$_mantik_rc" -eq 0 ]; then _mantik_finish 0 FINISHED; fi
_mantik_finish "$_mantik_rc" FAILED
