"""``submit_run`` end to end on the real single-node SLURM (scripts/slurm.sh)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.support.services import require_slurm

pytestmark = pytest.mark.slurm

SLURM = {"ComputeSite": "slurm", "Resources": {"Runtime": "10m", "Queue": "debug"}}


@pytest.fixture(autouse=True)
def _slurm() -> None:
    require_slurm()


def test_demo_project_runs_and_tracks(demo: Path, experiment: str) -> None:
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(
        experiment_id=experiment,
        mlflow_parameters={"alpha": 0.3},
        mlproject_path=demo,
        backend_config_path="compute-backend-config-slurm.json",
    )
    assert submitted.site == "slurm" and submitted.job_id.isdigit()
    info = client.wait(submitted.run_id, timeout=180)
    assert (info.state, info.run_status, info.exit_code) == ("COMPLETED", "FINISHED", 0)
    run = mlflow.get_run(submitted.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.3"
    assert run.data.metrics["rmse"] > 0
    assert run.data.tags["mantik.job_id"] == submitted.job_id
    assert run.data.tags["mantik.site"] == "slurm"
    models = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
    assert [m.source_run_id for m in models] == [submitted.run_id]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(submitted.run_id, "mantik")}
    assert {"mantik/job.sh", "mantik/job.log", "mantik/backend-config.json"} <= artifacts
    assert "trained ElasticNet(alpha=0.3" in client.get_logs(submitted.run_id)


def test_failing_project_fails_with_its_log(
    make_project: Callable[..., Path], experiment: str, tmp_path: Path
) -> None:
    project = make_project("echo 'something broke' >&2; exit 3", SLURM)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    info = client.wait(submitted.run_id, timeout=120)
    assert (info.run_status, info.exit_code) == ("FAILED", 3)
    assert mlflow.get_run(submitted.run_id).info.status == "FAILED"
    log = mlflow.artifacts.download_artifacts(
        run_id=submitted.run_id, artifact_path="mantik/job.log", dst_path=str(tmp_path / "dl")
    )
    assert "something broke" in Path(log).read_text()


def test_cancel_kills_within_seconds(make_project: Callable[..., Path], experiment: str) -> None:
    project = make_project("echo started; sleep 300", SLURM)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    deadline = time.monotonic() + 60
    while "started" not in client.get_logs(submitted.run_id):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    cancelled_at = time.monotonic()
    client.cancel(submitted.run_id)
    info = client.wait(submitted.run_id, timeout=60, interval=0.5)
    assert time.monotonic() - cancelled_at < 15
    assert (info.state, info.run_status) == ("CANCELLED", "KILLED")
    assert mlflow.get_run(submitted.run_id).info.status == "KILLED"


def test_runtime_limit_shows_as_timeout(make_project: Callable[..., Path], experiment: str) -> None:
    config = {"ComputeSite": "slurm", "Resources": {"Runtime": "1m", "Queue": "debug"}}
    project = make_project("sleep 600", config)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    info = client.wait(submitted.run_id, timeout=240)
    assert (info.state, info.run_status) == ("TIMEOUT", "FAILED")
    run = mlflow.get_run(submitted.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["mantik.job.state"] == "TIMEOUT"


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"Memory": "900GiB"}, "SLURM refused the job"),
        ({"Queue": "no-such-partition"}, "SLURM refused the job"),
        ({"Nodes": 2}, "SLURM refused the job"),
    ],
    ids=["memory", "partition", "nodes"],
)
def test_impossible_request_is_refused_and_leaves_no_run(
    make_project: Callable[..., Path], experiment: str, resources: dict[str, object], message: str
) -> None:
    project = make_project("true", {"ComputeSite": "slurm", "Resources": resources})
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.PlatformError, match=message) as info:
        client.submit_run(experiment, {}, project, "backend.json")
    assert info.value.status_code == 400
    assert mlflow.search_runs([experiment], run_view_type=3, output_format="list") == []
    assert client.list_runs(experiment_id=experiment) == []


def test_job_token_cannot_touch_other_runs(
    make_project: Callable[..., Path], experiment: str
) -> None:
    with mlflow.start_run(experiment_id=experiment) as other:
        pass
    script = (
        "import mlflow, sys\n"
        "client = mlflow.MlflowClient()\n"
        "client.log_metric(mlflow.active_run().info.run_id if mlflow.active_run() else "
        "__import__('os').environ['MLFLOW_RUN_ID'], 'own', 1)\n"
        "try:\n"
        f"    client.log_metric('{other.info.run_id}', 'stolen', 1)\n"
        "    print('WROTE TO OTHER RUN')\n"
        "except Exception as exc:\n"
        "    print('refused:', type(exc).__name__, str(exc)[:200])\n"
        "try:\n"
        "    client.create_experiment('made-by-a-job')\n"
        "    print('CREATED EXPERIMENT')\n"
        "except Exception as exc:\n"
        "    print('refused:', type(exc).__name__)\n"
    )
    project = make_project("python probe.py", SLURM, {"probe.py": script})
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    assert client.wait(submitted.run_id, timeout=120).run_status == "FINISHED"
    log = client.get_logs(submitted.run_id)
    assert "WROTE TO OTHER RUN" not in log and "CREATED EXPERIMENT" not in log
    assert log.count("refused:") == 2, log
    assert mlflow.get_run(submitted.run_id).data.metrics == {"own": 1.0}
    assert mlflow.get_run(other.info.run_id).data.metrics == {}
