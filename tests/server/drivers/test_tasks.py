"""``"Launcher": "srun"``: the sbatch options and the wrapper (golden files), and the wrapper
running its tasks under a fake srun that starts two ranks on this host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.drivers.slurm.render import sbatch_arguments
from mantik.server.compute.drivers.tasks import srun_options
from mantik.server.compute.drivers.wrapper import render_wrapper
from tests.server.drivers import test_wrapper
from tests.server.drivers.test_wrapper import _NoDriver, _Recorder, spec
from tests.server.golden_files import without_node_scripts

recorder = test_wrapper.recorder  # the fixture: an HTTP server that records the wrapper's calls

TASKS = {
    "ComputeSite": "slurm",
    "Launcher": "srun",
    "Resources": {"Nodes": 2, "TasksPerNode": 4, "CPUsPerTask": 8, "GPUsPerNode": 4},
}

# Starts `bash -c SCRIPT` as ranks 0 and 1 of one node, labelled and failing as srun does.
FAKE_SRUN = r"""#!/bin/bash
while [ "${1#--}" != "$1" ]; do shift; done
rc=0
for rank in 0 1; do
  SLURM_PROCID=$rank SLURM_LOCALID=$rank SLURM_NTASKS=2 "$@" 2>&1 | sed "s/^/$rank: /"
  code=${PIPESTATUS[0]}
  [ "$code" -le "$rc" ] || rc=$code
done
exit "$rc"
"""


def test_sbatch_options_shape_the_tasks(golden: Any) -> None:
    args = sbatch_arguments(spec(TASKS), SiteConfig(name="s", driver="slurm"))
    golden("sbatch-srun.txt", "\n".join(args) + "\n")
    assert {"--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=8", "--gpus-per-node=4"} <= set(
        args
    )


def test_cpus_still_map_to_ntasks_with_the_launcher() -> None:
    config = {"Launcher": "srun", "Resources": {"CPUs": 6, "CPUsPerNode": 3}}
    args = sbatch_arguments(spec(config), SiteConfig(name="s", driver="slurm"))
    assert "--ntasks=6" in args and "--ntasks-per-node=3" in args


def test_wrapper_runs_every_task_in_apptainer(golden: Any) -> None:
    job = spec(TASKS, image="/jobs/r1/project/image.sif")
    script = render_wrapper(job)
    golden("wrapper-srun-apptainer.sh", without_node_scripts(script))
    assert "srun --label --kill-on-bad-exit=1 --cpus-per-task=8 bash -c " in script


def test_without_the_launcher_nothing_changes() -> None:
    script = render_wrapper(spec({"ComputeSite": "slurm"}))
    assert "srun" not in script and "RANK" not in script
    assert srun_options(spec(TASKS)) == ["--label", "--kill-on-bad-exit=1", "--cpus-per-task=8"]


def _run_with_fake_srun(
    tmp_path: Path, url: str, command: str, system_metrics: bool = False
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    job = spec(
        {"Launcher": "srun", "SystemMetrics": 10 if system_metrics else 0},
        workdir=tmp_path / "job",
        command=command,
        tracking_uri=url,
        artifact_url=None,
    )
    Driver.write_job(_NoDriver(), job, "the-job-token")
    (tmp_path / "job" / "project").mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    return subprocess.run(
        ["bash", str(job.script_path)], env=env, capture_output=True, text=True, timeout=60
    )


def test_each_rank_gets_its_variables_and_only_rank_0_the_run(
    tmp_path: Path, recorder: Any
) -> None:
    show = (
        'echo "rank=$RANK local=$LOCAL_RANK world=$WORLD_SIZE port=$MASTER_PORT '
        "addr=${MASTER_ADDR:+set} run=${MLFLOW_RUN_ID:-none} token=${MLFLOW_TRACKING_TOKEN:-none} "
        'uri=$MLFLOW_TRACKING_URI"'
    )
    url = f"http://127.0.0.1:{recorder.server_port}"
    result = _run_with_fake_srun(tmp_path, url, show)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "job" / ".mantik" / "job.log").read_text().splitlines()
    rank_dir = tmp_path / "job" / ".mantik" / "ranks" / "rank-1"
    assert lines == [
        "0: rank=0 local=0 world=2 port=14242 addr=set run=0123456789abcdef0123456789abcdef "
        f"token=the-job-token uri={url}",
        f"1: rank=1 local=1 world=2 port=14242 addr=set run=none token=none uri=file:{rank_dir}"
        "/mlruns",
    ]
    updates = [json.loads(b) for _, p, _, b in _Recorder.calls if p.endswith("runs/update")]
    assert [u["status"] for u in updates] == ["RUNNING", "FINISHED"]


def test_a_failing_rank_fails_the_run_and_is_named(tmp_path: Path, recorder: Any) -> None:
    url = f"http://127.0.0.1:{recorder.server_port}"
    result = _run_with_fake_srun(tmp_path, url, 'echo "rank $RANK"; [ "$RANK" != 1 ] || exit 3')
    assert result.returncode == 3
    log = (tmp_path / "job" / ".mantik" / "job.log").read_text()
    assert log.splitlines()[-1] == "mantik: task(s) failed: rank 1 exited with 3"
    assert (tmp_path / "job" / ".mantik" / "exit-code").read_text().strip() == "3"
    updates = [json.loads(b) for _, p, _, b in _Recorder.calls if p.endswith("runs/update")]
    assert updates[-1]["status"] == "FAILED"


def test_the_first_task_of_a_node_starts_the_system_metrics_monitor(
    tmp_path: Path, recorder: Any
) -> None:
    # A python3 without MLflow's monitor: it is skipped with one line, by the node's first
    # task only (LOCAL_RANK 0), and the job goes on.
    url = f"http://127.0.0.1:{recorder.server_port}"
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    real = shutil.which("python3")
    shim.write_text(
        '#!/bin/bash\ncase "$*" in *"import mlflow.system_metrics, psutil"*) exit 1 ;; esac\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    result = _run_with_fake_srun(tmp_path, url, "true", system_metrics=True)
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "job" / ".mantik" / "job.log").read_text().splitlines()
    skipped = [line for line in log if "no system metrics" in line]
    assert [line.split(":")[0] for line in skipped] == ["0"], log
