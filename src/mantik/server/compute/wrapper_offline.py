"""The offline-tracking part of the job wrapper (see :mod:`mantik.server.compute.wrapper`).

With ``Tracking: offline`` — or ``auto`` when the node cannot reach the platform — MLflow
logs into a sqlite store in the job folder (``.mantik/offline/mlruns.db``, artifacts next
to it), pre-created under the central run's id and experiment by the job's own MLflow. A
background loop publishes consistent snapshots of it (sqlite's backup API, atomic rename)
every few seconds and once more at the end, also after SIGTERM; the platform syncs only
the snapshots (:mod:`mantik.server.compute.offline_sync`).
"""

from __future__ import annotations

import dataclasses

from mantik.server.compute.node import source
from mantik.server.compute.spec import JobSpec

OFFLINE_DIR = "offline"  # in .mantik/
MODE_FILE = "tracking"  # in .mantik/: what the job chose, "online" or "offline"
SNAPSHOT = "snapshot.db"
# Exit code of a job whose local store could not be prepared.
INIT_FAILED = 96

_PROBE = """\
# auto: offline when this node cannot reach the platform (compute nodes without internet)
if [ "$MANTIK_TRACKING" = auto ]; then
  if curl -sf -o /dev/null --max-time 5 "$MLFLOW_TRACKING_URI/api/mantik/health" 2>/dev/null \\
    || curl -sf -o /dev/null --max-time 5 "$MLFLOW_TRACKING_URI/health" 2>/dev/null; then
    MANTIK_TRACKING=online
  else
    MANTIK_TRACKING=offline
  fi
fi"""

_SETUP = f"""\
echo "$MANTIK_TRACKING" >"$MANTIK_DIR/{MODE_FILE}"
if [ "$MANTIK_TRACKING" = offline ]; then
  MANTIK_OFFLINE="$MANTIK_DIR/{OFFLINE_DIR}"
  mkdir -p "$MANTIK_OFFLINE/artifacts"
  export MLFLOW_TRACKING_URI="sqlite:///$MANTIK_OFFLINE/mlruns.db"
  # Apptainer shows the store to the job under the same path.
  export APPTAINER_BIND="${{APPTAINER_BIND:+$APPTAINER_BIND,}}$MANTIK_OFFLINE"
  echo "mantik: tracking offline into $MANTIK_OFFLINE; the platform syncs it" >>"$MANTIK_LOG"
  cat >"$MANTIK_OFFLINE/init.py" <<'MANTIK_PY'
{source("offline_init").rstrip()}
MANTIK_PY
  cat >"$MANTIK_OFFLINE/snapshot.py" <<'MANTIK_PY'
{source("offline_snapshot").rstrip()}
MANTIK_PY
fi"""

_FUNCTIONS = f"""\
_mantik_snapshotter=
_mantik_snapshot() {{  # a consistent copy of the live store, published atomically
  python3 "$MANTIK_OFFLINE/snapshot.py" "$MANTIK_OFFLINE/mlruns.db" "$MANTIK_OFFLINE/{SNAPSHOT}" \\
    "$@" 2>>"$MANTIK_OFFLINE/snapshot.err" || true
}}
_mantik_snapshots() {{  # every few seconds (less often for a store that takes long to copy)
  trap 'exit 0' TERM
  sleep "$MANTIK_SNAPSHOT_SECONDS" && _mantik_snapshot --every "$MANTIK_SNAPSHOT_SECONDS"
}}
_mantik_offline_end() {{  # the last snapshot: after the program ended, been killed or timed out
  if [ -n "$_mantik_snapshotter" ]; then
    kill -TERM "$_mantik_snapshotter" 2>/dev/null
    pkill -TERM -P "$_mantik_snapshotter" 2>/dev/null
    wait "$_mantik_snapshotter" 2>/dev/null
    _mantik_snapshotter=
  fi
  _mantik_snapshot
}}"""


def mode_lines(spec: JobSpec) -> list[str]:
    """Before the job's environment is handed to a container: choose the mode, and in
    offline mode point MLflow at the local store."""
    lines = [f"export MANTIK_TRACKING={spec.config.tracking}"]
    if spec.config.tracking == "online":
        return lines
    lines.append(f"MANTIK_SNAPSHOT_SECONDS={spec.snapshot_seconds:g}")
    if spec.config.tracking == "auto":
        lines.append(_PROBE)
    return [*lines, _SETUP]


def functions(spec: JobSpec) -> list[str]:
    return [] if spec.config.tracking == "online" else [_FUNCTIONS]


def start_lines(spec: JobSpec) -> list[str]:
    if spec.config.tracking == "online":
        return []
    return [
        'if [ "$MANTIK_TRACKING" = offline ]; then _mantik_snapshots & _mantik_snapshotter=$!; fi'
    ]


def init_lines(spec: JobSpec, run_line: str) -> list[str]:
    """Inside the job's environment (modules, venv or container): create the local store
    with the job's own Python and MLflow. ``run_line`` is how the wrapper runs a command
    there — the same seam as for the entry point."""
    if spec.config.tracking == "online":
        return []
    return [
        'if [ "$MANTIK_TRACKING" = offline ]; then',
        f"  {run_line} || exit {INIT_FAILED}",
        "fi",
    ]


# Runs where only MLflow's variables reach (Apptainer --cleanenv): the script lies next to
# the store, which the container sees under the same path.
INIT_COMMAND = (
    '"$(command -v python || command -v python3)" '
    '"$(dirname "${MLFLOW_TRACKING_URI#sqlite:///}")/init.py"'
)


def with_init_command(spec: JobSpec) -> JobSpec:
    return dataclasses.replace(spec, command=INIT_COMMAND)
