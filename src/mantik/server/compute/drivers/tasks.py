"""Multi-task jobs (``"Launcher": "srun"``): the wrapper, still the batch step, runs the entry
point once on every SLURM task. Rendered by pure functions, golden-tested with the wrapper.

Each task starts with a short prologue: torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE
from SLURM's; MASTER_ADDR and MASTER_PORT, set once by the wrapper), and for every rank but 0
no run: no run id, no token, and an MLflow store of its own in the job folder that nobody
syncs, so that code which logs from every rank still tracks once. Each task records its exit
code in ``.mantik/ranks/``; when srun fails, the wrapper names the ranks that failed.

System metrics per node: the first task on each node (LOCAL_RANK 0) runs MLflow's system
metrics monitor for the run beside the entry point (CPU, memory, disk, network; GPUs where
NVML is there), named ``system/<host>/...``, when the node's ``python3`` has MLflow and
psutil (else one line in the log says so). It samples every ``SystemMetrics`` seconds
(default 10; 0 turns it off). Offline, only rank 0's node samples: the local store is one
file.
"""

from __future__ import annotations

import shlex

from mantik.server.compute.job_folder import RANKS
from mantik.server.compute.spec import JobSpec

# The port rank 0 offers to the others: derived from the job id, the same for every task.
_PORT_BASE, _PORT_SPAN = 10000, 20000
_RANK_DIR = f"$MANTIK_DIR/{RANKS}/rank-$RANK"
_TORCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# What a rank but 0 must not have: it would write into the run.
_RUN_VARIABLES = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_TOKEN")

_MASTER = f"""\
MASTER_ADDR="$(scontrol show hostnames "${{SLURM_JOB_NODELIST:-}}" 2>/dev/null | head -n 1)"
if [ -z "$MASTER_ADDR" ]; then  # no scontrol: the list's first entry, n[01-04],m → n01
  MASTER_ADDR="${{SLURM_JOB_NODELIST:-$(hostname)}}"
  MASTER_ADDR="${{MASTER_ADDR%%,*}}"
  case "$MASTER_ADDR" in
    *"["*) _mantik_first="${{MASTER_ADDR#*\\[}}"
      MASTER_ADDR="${{MASTER_ADDR%%\\[*}}${{_mantik_first%%[],-]*}}" ;;
  esac
fi
export MASTER_ADDR MASTER_PORT="$(({_PORT_BASE} + ${{SLURM_JOB_ID:-0}} % {_PORT_SPAN}))"
mkdir -p "$MANTIK_DIR/{RANKS}" && rm -f "$MANTIK_DIR/{RANKS}/"rank-*.exit"""

FUNCTIONS = f"""\
_mantik_tasks_failed() {{  # SRUN_EXIT_CODE: name the ranks that failed; return the job's code
  [ "$1" -ne 0 ] || return 0
  local rank code failed= first=
  for rank in $(ls "$MANTIK_DIR/{RANKS}" 2>/dev/null \\
      | sed -n 's/^rank-\\([0-9]*\\)\\.exit$/\\1/p' | sort -n); do
    code="$(<"$MANTIK_DIR/{RANKS}/rank-$rank.exit")"
    case "$code" in 0 | '' | *[!0-9]*) continue ;; esac
    failed="${{failed:+$failed, }}rank $rank exited with $code"
    # The code of a rank that failed by itself, not of one srun stopped (128 + signal).
    [ -n "$first" ] || [ "$code" -gt 128 ] || first="$code"
  done
  echo "mantik: task(s) failed: ${{failed:-srun exited with $1, no task recorded a failure}}"
  return "${{first:-$1}}"
}}"""


_SAMPLE_SECONDS = 10  # MLflow's own default
# The monitor: MLflow's own, started for the run and ended (with a last sample) on SIGTERM.
_MONITOR = """\
import os, signal, sys, threading
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
monitor = SystemMetricsMonitor(os.environ["MLFLOW_RUN_ID"], node_id=sys.argv[1])
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
monitor.start()
done.wait()
monitor.finish()
"""

_START_MONITOR = f"""\
_mantik_monitor=
if [ "$LOCAL_RANK" = 0 ] && {{ [ "$RANK" = 0 ] || [ "$MANTIK_TRACKING" != offline ]; }}; then
  if python3 -c 'import mlflow.system_metrics, psutil' 2>/dev/null; then
    MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL=@SECONDS@ python3 -c {shlex.quote(_MONITOR)} \\
      "$(hostname -s)" >>"$MANTIK_DIR/{RANKS}/monitor.log" 2>&1 &
    _mantik_monitor=$!
  else
    echo "mantik: no system metrics from $(hostname -s): its python3 lacks MLflow or psutil"
  fi
fi"""

_STOP_MONITOR = (
    'if [ -n "$_mantik_monitor" ]; then kill -TERM "$_mantik_monitor"; wait "$_mantik_monitor"; fi'
)


def _monitor_lines(spec: JobSpec) -> list[str]:
    seconds = spec.config.system_metrics
    seconds = _SAMPLE_SECONDS if seconds is None else seconds
    if seconds == 0:
        return ["_mantik_monitor="]
    return _START_MONITOR.replace("@SECONDS@", str(seconds)).splitlines()


def srun_options(spec: JobSpec) -> list[str]:
    """srun's options: each output line prefixed with its rank, and the job stopped as soon
    as one task fails (the others would wait for it until the time limit)."""
    options = ["--label", "--kill-on-bad-exit=1"]
    cpus = spec.config.resources.cpus_per_task
    if cpus is not None:  # srun no longer takes it from sbatch (SLURM 22.05)
        options.append(f"--cpus-per-task={cpus}")
    return options


def task_script(spec: JobSpec, run_line: str) -> str:
    """What each task runs: the prologue, ``run_line``, its exit code recorded."""
    lines = [
        'export RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID" WORLD_SIZE="$SLURM_NTASKS"',
        f'mkdir -p "$MANTIK_DIR/{RANKS}"',
        *_monitor_lines(spec),  # before the run's variables leave ranks but 0
        'if [ "$RANK" != 0 ]; then  # rank 0 tracks the run; the others log where nobody looks',
        f'  mkdir -p "{_RANK_DIR}"',
        f'  export MLFLOW_TRACKING_URI="file:{_RANK_DIR}/mlruns"',
        "  export MLFLOW_ALLOW_FILE_STORE=true",
        f"  unset {' '.join(_RUN_VARIABLES)}",
    ]
    if spec.image:  # the container sees only APPTAINERENV_* and what is bound
        lines += [
            '  export APPTAINERENV_MLFLOW_TRACKING_URI="$MLFLOW_TRACKING_URI"',
            "  export APPTAINERENV_MLFLOW_ALLOW_FILE_STORE=true",
            f"  unset {' '.join(f'APPTAINERENV_{name}' for name in _RUN_VARIABLES)}",
            f'  export APPTAINER_BIND="${{APPTAINER_BIND:+$APPTAINER_BIND,}}{_RANK_DIR}"',
        ]
    lines.append("fi")
    if spec.image:
        lines += [f'export APPTAINERENV_{name}="${name}"' for name in _TORCH_VARIABLES]
    lines += [
        run_line,
        "_mantik_rc=$?",
        _STOP_MONITOR,
        f'echo "$_mantik_rc" >"$MANTIK_DIR/{RANKS}/rank-$RANK.exit"',
        'exit "$_mantik_rc"',
    ]
    return "\n".join(lines)


def launch_lines(spec: JobSpec, run_line: str) -> list[str]:
    """The wrapper's lines that run ``run_line`` on every task, in place of ``run_line``."""
    srun = " ".join(["srun", *srun_options(spec), "bash", "-c"])
    return [
        *_MASTER.splitlines(),
        f"{srun} {shlex.quote(task_script(spec, run_line))}",
        '_mantik_tasks_failed "$?"',
    ]
