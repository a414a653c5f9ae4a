"""The training script of the offline-tracking tests, and how they count what arrived.

``python train.py POINTS SECONDS KEYS`` logs POINTS metric points (KEYS per step) spread
over SECONDS, plus a NaN point, params, a tag, an artifact, a logged model and a child run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mlflow

TRAIN = r"""
import math, sys, time
import mlflow

points, seconds, keys = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
steps = points // keys
with mlflow.start_run():
    mlflow.log_params({"lr": "0.01", "steps": str(steps)})
    mlflow.set_tag("team", "vision")
    mlflow.log_metric("odd", math.nan, step=0)
    start = time.time()
    for step in range(steps):
        mlflow.log_metrics({f"m{k}": step + k / 10 for k in range(keys)}, step=step)
        if step == 0:
            print("logging", flush=True)
        pause = start + seconds * (step + 1) / steps - time.time()
        if pause > 0:
            time.sleep(pause)
    mlflow.log_text("the end", "notes/summary.txt")

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.pyfunc.log_model(name="echo", python_model=Echo(), pip_requirements=["mlflow"])
    with mlflow.start_run(nested=True, run_name="evaluation"):
        mlflow.log_metric("score", 0.75)
print("trained", flush=True)
"""


def central_points(run_id: str) -> int:
    """Metric points of the central run (all keys but the child run's score)."""
    metrics = mlflow.get_run(run_id).data.metrics
    client = mlflow.MlflowClient()
    return sum(len(client.get_metric_history(run_id, key)) for key in metrics if key != "score")


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``check`` until it gives something true; return that."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


def count_pushed_points(client: mlflow.MlflowClient) -> list[int]:
    """From now on, the metric points each ``log_batch`` of ``client`` carries."""
    pushed: list[int] = []
    log_batch = client.log_batch

    def counted(run_id: str, metrics: Any = (), **kw: Any) -> Any:
        pushed.append(len(metrics))
        return log_batch(run_id, metrics=metrics, **kw)

    client.log_batch = counted  # type: ignore[method-assign]
    return pushed
