"""The offline-tracking part of the job wrapper (see :mod:`mantik.server.compute.drivers.wrapper`).

With ``Tracking: offline`` — or ``auto`` when the node cannot reach the platform — MLflow
logs into a sqlite store in the job folder (``.mantik/offline/mlruns.db``, artifacts next
to it), pre-created under the central run's id and experiment by the job's own MLflow. A
background loop publishes consistent snapshots of it (sqlite's backup API, atomic rename)
every few seconds and once more at the end, also after SIGTERM; the platform syncs only
the snapshots (:mod:`.syncer`).
"""

from __future__ import annotations

import dataclasses

from mantik.server.compute.job_folder import (
    ARTIFACTS,
    INIT_SCRIPT,
    LIVE_STORE,
    OFFLINE,
    SNAPSHOT,
    SNAPSHOT_SCRIPT,
    TRACKING_MODE,
)
from mantik.server.compute.offline.node import source
from mantik.server.compute.spec import JobSpec

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
echo "$MANTIK_TRACKING" >"$MANTIK_DIR/{TRACKING_MODE}"
if [ "$MANTIK_TRACKING" = offline ]; then
  MANTIK_OFFLINE="$MANTIK_DIR/{OFFLINE}"
  mkdir -p "$MANTIK_OFFLINE/{ARTIFACTS}"
  export MLFLOW_TRACKING_URI="sqlite:///$MANTIK_OFFLINE/{LIVE_STORE}"
  # Apptainer shows the store to the job under the same path.
  export APPTAINER_BIND="${{APPTAINER_BIND:+$APPTAINER_BIND,}}$MANTIK_OFFLINE"
  echo "mantik: tracking offline into $MANTIK_OFFLINE; the platform syncs it" >>"$MANTIK_LOG"
  cat >"$MANTIK_OFFLINE/{INIT_SCRIPT}" <<'MANTIK_PY'
{source("offline_init").rstrip()}
MANTIK_PY
  cat >"$MANTIK_OFFLINE/{SNAPSHOT_SCRIPT}" <<'MANTIK_PY'
{source("offline_snapshot").rstrip()}
MANTIK_PY
fi"""

_SNAPSHOT_PATHS = f'"$MANTIK_OFFLINE/{LIVE_STORE}" "$MANTIK_OFFLINE/{SNAPSHOT}"'
_FUNCTIONS = f"""\
_mantik_snapshotter=
_mantik_snapshot() {{  # a consistent copy of the live store, published atomically
  python3 "$MANTIK_OFFLINE/{SNAPSHOT_SCRIPT}" {_SNAPSHOT_PATHS} \\
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
        # Without the log's descriptor: the log ends when the job's output does.
        'if [ "$MANTIK_TRACKING" = offline ]; then'
        " _mantik_snapshots {_mantik_log_fd}>&- & _mantik_snapshotter=$!; fi"
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
    f'"$(dirname "${{MLFLOW_TRACKING_URI#sqlite:///}}")/{INIT_SCRIPT}"'
)


def with_init_command(spec: JobSpec) -> JobSpec:
    return dataclasses.replace(spec, command=INIT_COMMAND)
