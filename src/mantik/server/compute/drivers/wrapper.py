"""The job wrapper: a self-contained bash script that runs one entry point on a compute node.

Rendered by a pure function (golden-tested). It needs only bash, curl and coreutils on the
node, no mantik. It holds no secret: the job token is read at run time from a 0600 file next
to it, so the script itself can be shown to the user (it is logged as an artifact).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from mantik.server.compute.drivers import log_capture, tasks
from mantik.server.compute.job_folder import EXIT_CODE, LOG, MANTIK, PROJECT, TOKEN
from mantik.server.compute.offline import wrapper as offline
from mantik.server.compute.spec import JobSpec

# Variables the job must not inherit from the submitting environment.
_UNSET = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_AUTH",
    "MANTIK_USERNAME",
    "MANTIK_PASSWORD",
    "MANTIK_UNICORE_PASSWORD",
    "MANTIK_SSH_PASSWORD",
    "MANTIK_SSH_KEY_FILE",
)

_FUNCTIONS = r"""
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
  echo "$1" > "$MANTIK_DIR/@EXIT_CODE@"
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
""".replace("@EXIT_CODE@", EXIT_CODE)

# What escapes the job's process group (setsid) or its parent (a daemon adopted by init)
# still carries the job's mark in its environment: the wrapper stops every such process of
# its account when the job ends or is cancelled.
MARK = "MANTIK_JOB_MARK"
_SWEEP = r"""
_mantik_sweep() {  # SIGNAL: signal every other process carrying this job's mark; 1 if none
  local found=1 entry pid
  for entry in $(grep -lzxF "@MARK@=$@MARK@" /proc/[0-9]*/environ 2>/dev/null); do
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
""".replace("@MARK@", MARK)


def _export(name: str, value: str) -> str:
    return f"export {name}={shlex.quote(value)}"


def run_line(spec: JobSpec) -> str:
    """How the entry point command is started: in Apptainer, in a venv, or plain."""
    config = spec.config
    command = shlex.quote(spec.command)
    if spec.image:
        options = " ".join(shlex.quote(o) for o in config.apptainer_options)
        options = f" {options}" if options else ""
        return f"apptainer run --cleanenv{options} {shlex.quote(spec.image)} bash -c {command}"
    if config.venv:
        activate = shlex.quote(f"{config.venv.rstrip('/')}/bin/activate")
        return f"source {activate} && bash -c {command}"
    return f"bash -c {command}"


def render_wrapper(spec: JobSpec, header: Sequence[str] = (), prologue: Sequence[str] = ()) -> str:
    """The complete job script; ``header`` holds scheduler directives (e.g. ``#SBATCH``),
    ``prologue`` commands that prepare the job folder (e.g. unpacking uploads)."""
    config = spec.config
    lines = ["#!/bin/bash", *header]
    lines += [
        f"# mantik job wrapper: run {spec.run_id} of experiment {spec.experiment_id}",
        "set -u",
        "umask 027",  # what the job writes stays its own (the group: the platform's reader)
        *prologue,
        # Sites that choose the job folder themselves (UNICORE) start the script inside it.
        f'export MANTIK_DIR="$PWD/{MANTIK}"'
        if spec.site_chooses_workdir
        else _export("MANTIK_DIR", str(spec.mantik_dir)),
        f'MANTIK_LOG="$MANTIK_DIR/{LOG}"',
        *log_capture.variables(spec),
        # An account without a home of its own (a per-user uid) keeps its files here.
        f'[ -w "${{HOME:-/}}" ] || export HOME="${{MANTIK_DIR%/{MANTIK}}}"',
        _export("MANTIK_LOG_URL", f"{spec.artifact_url}/mantik/{LOG}" if spec.artifact_url else ""),
        _export("MLFLOW_TRACKING_URI", spec.tracking_uri),
        _export("MLFLOW_RUN_ID", spec.run_id),
        _export("MLFLOW_EXPERIMENT_ID", spec.experiment_id),
        f'MLFLOW_TRACKING_TOKEN="$(<"$MANTIK_DIR/{TOKEN}")"',
        "export MLFLOW_TRACKING_TOKEN",
        "unset " + " ".join(_UNSET),
        f'export {MARK}="$MLFLOW_RUN_ID.$$"',
    ]
    if spec.path_prefix:
        lines.append(f'export PATH={shlex.quote(os.pathsep.join(spec.path_prefix))}:"$PATH"')
    environment = {**config.environment, **spec.extra_env}
    lines += [_export(name, value) for name, value in environment.items()]
    # Offline tracking changes MLFLOW_TRACKING_URI: decided before a container inherits it.
    lines += offline.mode_lines(spec)
    if spec.image:
        # --cleanenv drops the host environment; APPTAINERENV_X reaches the container as X
        # without showing values on the command line.
        names = ["MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"]
        names += ["MLFLOW_TRACKING_TOKEN", MARK, *environment]
        lines += [f'export APPTAINERENV_{name}="${name}"' for name in names]
    lines.append(log_capture.FUNCTIONS.strip("\n"))
    lines.append(_FUNCTIONS.strip("\n"))
    lines.append(_SWEEP.strip("\n"))
    lines += offline.functions(spec)
    if config.launcher == "srun":
        lines.append(tasks.FUNCTIONS)
    lines += [
        "_mantik_log_start",
        "trap _mantik_on_term TERM INT",
        f'cd "$MANTIK_DIR/../{PROJECT}" || _mantik_finish 97 FAILED',
        "_mantik_status RUNNING",
        *offline.start_lines(spec),
        "{",
    ]
    lines += [f"  module load {shlex.quote(module)}" for module in config.modules]
    lines += [f"  {command}" for command in config.pre_run_commands]
    init = offline.init_lines(spec, run_line(offline.with_init_command(spec)))
    lines += [f"  {line}" for line in init]
    launch = [run_line(spec)]
    if config.launcher == "srun":
        launch = tasks.launch_lines(spec, launch[0])
    lines += [f"  {line}" for line in launch]
    lines += [
        # Only into the log: a copy on the scheduler's stdout would not be bounded.
        '} >&"$_mantik_log_fd" 2>&1 {_mantik_log_fd}>&- &',
        "_mantik_child=$!",
        'wait "$_mantik_child"',
        "_mantik_rc=$?",
        "_mantik_child=",
    ]
    if config.post_run_commands:
        lines.append("{")
        lines += [f"  {command}" for command in config.post_run_commands]
        lines.append('} >&"$_mantik_log_fd" 2>&1 {_mantik_log_fd}>&-')
    lines += [
        'if [ "$_mantik_rc" -eq 0 ]; then _mantik_finish 0 FINISHED; fi',
        '_mantik_finish "$_mantik_rc" FAILED',
        "",
    ]
    return "\n".join(lines)
