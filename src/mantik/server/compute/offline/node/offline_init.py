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
