"""Offline sync in-process: a real local store (made by the node scripts and MLflow), real
snapshots, the real central store; the job folder as the wrapper leaves it. The syncer is
built from its parts (database, runs, sites, scratch folder), without the compute service."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import update

from mantik.compute.states import JobState
from mantik.server.compute.offline.node import offline_snapshot
from mantik.server.compute.offline.syncer import OfflineSyncer
from mantik.server.compute.runs import RunStore
from mantik.server.compute.sites import Sites
from mantik.server.db import Database
from mantik.server.models import ComputeJob, OfflineSync, utcnow
from mantik.server.platform import build, prepare
from mantik.server.settings import ServerSettings
from tests.support.offline_job import count_pushed_points

NODE = Path(offline_snapshot.__file__).parent
TRAIN = r"""
import math, os, sys
import mlflow, numpy as np
from mlflow.entities import Metric

phase, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with mlflow.start_run() as run:
    client = mlflow.MlflowClient()
    steps = range(start, start + count)
    points = [Metric("loss", 1 / (i + 1), 1_700_000_000_000 + i, i) for i in steps]
    for first in range(0, len(points), 1000):
        client.log_batch(run.info.run_id, metrics=points[first:first + 1000])
    if phase == "1":
        mlflow.log_params({"alpha": "0.7", "lr": "0.01"})  # alpha differs from the submission
        mlflow.set_tag("team", "vision")
        mlflow.log_metric("odd", math.nan, step=3)
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_input(mlflow.data.from_numpy(np.arange(6), name="digits"), context="training")

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                return model_input

        model = mlflow.pyfunc.log_model(
            name="echo", python_model=Echo(), pip_requirements=["mlflow"]
        )
        mlflow.log_metric("accuracy", 0.9, step=1, model_id=model.model_id)
        with mlflow.start_run(nested=True, run_name="fold-1"):
            mlflow.log_metric("fold_loss", 0.5, step=0)
            mlflow.log_param("fold", "1")
"""

# Logs a model into the job's run after its points went central: MLflow links the run's
# points of the model's step (0) to it, in the local store only.
LATE_MODEL = r"""
import mlflow
with mlflow.start_run():
    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.pyfunc.log_model(name="late", python_model=Echo(), pip_requirements=["mlflow"])
"""

# The job changes its mind: tags and a child run come and go between two snapshots.
DELETIONS = r"""
import sys
import mlflow
with mlflow.start_run() as run:
    client = mlflow.MlflowClient()
    if sys.argv[1] == "make":
        mlflow.set_tags({"stage": "draft", "keep": "yes"})
        with mlflow.start_run(nested=True, run_name="discarded"):
            mlflow.log_metric("x", 1.0)
    else:
        client.delete_tag(run.info.run_id, "stage")
        (child,) = client.search_runs([run.info.experiment_id], "attributes.run_name = 'discarded'")
        client.delete_run(child.info.run_id)
"""


@dataclass
class SyncParts:
    """What the syncer depends on."""

    db: Database
    runs: RunStore
    sites: Sites
    scratch: Path


@dataclass
class Job:
    parts: SyncParts
    run_id: str
    experiment_id: str
    workdir: Path

    @property
    def offline(self) -> Path:
        return self.workdir / ".mantik" / "offline"

    def node(self, *args: str, script: str = TRAIN) -> None:
        """Run on the "node": the job's MLflow logs into the local store, then a snapshot."""
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.offline / 'mlruns.db'}",
            "MLFLOW_RUN_ID": self.run_id,
            "MLFLOW_EXPERIMENT_ID": self.experiment_id,
        }
        if args:
            command = [sys.executable, "-c", script, *args]
        else:
            command = [sys.executable, str(NODE / "offline_init.py")]
        subprocess.run(command, env=env, check=True, timeout=300, capture_output=True)
        offline_snapshot.snapshot(
            str(self.offline / "mlruns.db"), str(self.offline / "snapshot.db")
        )

    def syncer(self) -> OfflineSyncer:
        parts = self.parts
        return OfflineSyncer(parts.db, parts.runs, parts.sites, parts.scratch)

    def record(self) -> ComputeJob:
        with self.parts.db.session() as session:
            job = session.get(ComputeJob, self.run_id)
            assert job is not None
            return job


@pytest.fixture
def job(tmp_path: Path) -> Job:
    settings = ServerSettings(data_dir=tmp_path / "platform")
    prepare(settings)
    db = build(settings).db
    parts = SyncParts(db, RunStore(settings), Sites.configured(settings), tmp_path / "scratch")
    experiment = parts.runs.client.create_experiment(
        "offline", artifact_location=str(tmp_path / "artifacts")
    )
    run = parts.runs.create(experiment, run_name="job", tags={}, params={"alpha": "0.5"})
    run_id = run.info.run_id
    workdir = tmp_path / "jobs" / run_id
    (workdir / ".mantik" / "offline" / "artifacts").mkdir(parents=True)
    (workdir / ".mantik" / "tracking").write_text("offline\n")
    with parts.db.session() as session:
        session.add(
            ComputeJob(
                run_id=run_id,
                experiment_id=experiment,
                username="ada",
                site="local",
                job_id="1",
                state=JobState.RUNNING,
                entry_point="main",
                workdir=str(workdir),
                token_id="t",
                token_expires_at=utcnow() + timedelta(hours=1),
            )
        )
    result = Job(parts, run_id, experiment, workdir)
    result.node()
    return result


def test_everything_arrives_once_across_restarts_and_full_resyncs(job: Job) -> None:
    client: MlflowClient = job.parts.runs.client
    job.node("1", "0", "2500")
    first = job.syncer()
    pushed = count_pushed_points(first.client)
    first.sync(job.record(), final=False, wait=True)
    assert len(client.get_metric_history(job.run_id, "loss")) == 2500
    assert pushed.count(1000) == 2  # batches of ≤1000: 1000 + 1000 + 500 (+ small ones)

    job.node("2", "2500", "1500")  # the job goes on; the platform restarted meanwhile
    second = job.syncer()
    pushed_after_restart = count_pushed_points(second.client)
    second.sync(job.record(), final=False, wait=True)
    assert sum(pushed_after_restart) == 1500  # only the new points, by the high-water mark

    with job.parts.db.session() as session:  # forget which snapshot was seen: a full re-read
        session.execute(update(OfflineSync).values(snapshot_mtime_ns=None))
    end = second.sync(job.record(), final=True, wait=True, status="FINISHED")
    assert sum(pushed_after_restart) == 1500  # the full final sync pushed no point again

    history = client.get_metric_history(job.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(4000))
    assert {(m.step, m.timestamp, m.value) for m in history} == {
        (i, 1_700_000_000_000 + i, 1 / (i + 1)) for i in range(4000)
    }
    run = client.get_run(job.run_id)
    assert math.isnan(client.get_metric_history(job.run_id, "odd")[0].value)
    assert run.data.params["alpha"] == "0.5"  # the submission's value stays …
    assert run.data.tags["mantik.sync.changed_param.alpha"] == "0.7"  # … the change is reported
    assert run.data.params["lr"] == "0.01"
    assert run.data.tags["team"] == "vision"
    assert run.data.tags["mantik.tracking"] == "offline"
    assert "mantik.sync.synced_until" in run.data.tags
    assert run.data.tags["mlflow.runName"] == "job"  # the local run's name does not win
    assert end is not None and end > 0  # when the job's own run ended

    assert [a.path for a in client.list_artifacts(job.run_id, "notes")] == ["notes/hello.txt"]
    assert run.inputs.dataset_inputs[0].dataset.name == "digits"
    models = client.search_logged_models([job.experiment_id])
    assert len(models) == 1 and models[0].status.value == "READY"
    assert models[0].source_run_id == job.run_id
    assert [o.model_id for o in run.outputs.model_outputs] == [models[0].model_id]
    model_files = {a.path for a in client.list_logged_model_artifacts(models[0].model_id)}
    assert "MLmodel" in model_files
    assert "accuracy" in {m.key for m in models[0].metrics or []}

    children = client.search_runs(
        [job.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{job.run_id}'"
    )
    assert [c.info.run_name for c in children] == ["fold-1"]
    assert children[0].data.metrics == {"fold_loss": 0.5}
    assert children[0].data.params == {"fold": "1"}
    assert children[0].info.status == "FINISHED"

    # And once more from scratch (as after losing the "final" mark): nothing doubles.
    with job.parts.db.session() as session:
        session.execute(update(OfflineSync).values(snapshot_mtime_ns=None, final_at=None))
    third = job.syncer()
    assert third.sync(job.record(), final=True, wait=True, status="FINISHED") is not None
    assert len(client.get_metric_history(job.run_id, "loss")) == 4000
    assert len(client.search_logged_models([job.experiment_id])) == 1
    assert len(client.search_runs([job.experiment_id])) == 2
    assert len(client.get_run(job.run_id).outputs.model_outputs) == 1


def test_a_model_logged_after_its_points_synced_gets_linked_to_them(job: Job) -> None:
    client: MlflowClient = job.parts.runs.client
    job.node("2", "0", "10")
    syncer = job.syncer()
    syncer.sync(job.record(), final=False, wait=True)
    assert len(client.get_metric_history(job.run_id, "loss")) == 10

    job.node("late", script=LATE_MODEL)
    pushed = count_pushed_points(syncer.client)
    syncer.sync(job.record(), final=True, wait=True, status="FINISHED")
    (model,) = client.search_logged_models([job.experiment_id])
    assert [(m.key, m.step, m.value) for m in model.metrics or []] == [("loss", 0, 1.0)]
    assert sum(pushed) == 1  # the one linked point, again: the server adds only the link
    assert len(client.get_metric_history(job.run_id, "loss")) == 10

    with job.parts.db.session() as session:  # a full re-sync links nothing twice
        session.execute(update(OfflineSync).values(snapshot_mtime_ns=None, final_at=None))
    job.syncer().sync(job.record(), final=True, wait=True, status="FINISHED")
    (model,) = client.search_logged_models([job.experiment_id])
    assert len(model.metrics or []) == 1
    assert len(client.get_metric_history(job.run_id, "loss")) == 10


def test_what_the_job_deletes_goes_centrally_too(job: Job) -> None:
    client: MlflowClient = job.parts.runs.client
    job.node("make", script=DELETIONS)
    syncer = job.syncer()
    syncer.sync(job.record(), final=False, wait=True)
    tags = client.get_run(job.run_id).data.tags
    assert (tags["stage"], tags["keep"]) == ("draft", "yes")
    (child,) = client.search_runs([job.experiment_id], "attributes.run_name = 'discarded'")
    client.set_tag(job.run_id, "reviewer", "ada")  # set centrally by a person, not the job

    job.node("undo", script=DELETIONS)
    syncer.sync(job.record(), final=True, wait=True, status="FINISHED")
    tags = client.get_run(job.run_id).data.tags
    assert "stage" not in tags
    assert (tags["keep"], tags["reviewer"]) == ("yes", "ada")
    assert client.get_run(child.info.run_id).info.lifecycle_stage == "deleted"

    with job.parts.db.session() as session:  # a full re-sync changes nothing
        session.execute(update(OfflineSync).values(snapshot_mtime_ns=None, final_at=None))
    job.syncer().sync(job.record(), final=True, wait=True, status="FINISHED")
    assert client.get_run(job.run_id).data.tags == tags


def test_a_snapshot_symlinked_elsewhere_is_refused(job: Job, tmp_path: Path) -> None:
    secret = tmp_path / "platform" / "mlflow.db"
    snapshot = job.offline / "snapshot.db"
    snapshot.unlink()
    snapshot.symlink_to(secret)
    with pytest.raises(OSError):
        job.syncer().sync(job.record(), final=False, wait=True)
    assert job.parts.runs.client.get_run(job.run_id).data.metrics == {}
