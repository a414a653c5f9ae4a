"""Caches around MLflow's auth app for the hot path (per-call logging).

MLflow checks every write by loading the whole run (params, metrics, tags) just to learn its
experiment, and loads the caller's user row for the admin check: two queries per request
that dominate the cost of ``log_metric`` behind auth. A run never changes experiment, so
that mapping is cached for good; user rows (the admin flag) for ``ttl`` seconds, role
grants for at most 10 s — and neither beyond a change of users or permissions in any
worker or replica (a change stamp, bumped by every such change: see change_stamp).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from mantik import _mlflow_internals as mlflow_internals
from mantik.server.change_stamp import ChangeStamp

_MAX_ENTRIES = 100_000
_GRANTS_TTL = 10.0
# The auth store's reads; every other public method may change users or grants, so it ends
# what is cached (a new MLflow method is a change until someone says otherwise).
READS = ("get_", "list_", "has_", "is_", "user_has_", "authenticate_")


def install(ttl: float, stamp: ChangeStamp) -> None:
    mlflow_internals.wrap_run_requirement(_remembering_experiments)
    mlflow_internals.replace_validator("validate_can_log_batch", _log_batch_check)
    if ttl <= 0:
        return
    store: Any = mlflow_internals.permission_store()
    lock = threading.Lock()
    users: dict[Any, tuple[Any, float, int]] = {}
    store.get_user = _expiring(store.get_user, lambda username: username, ttl, users, lock, stamp)
    # Role grants, read once per request for every permission decision. A change made
    # through any worker (a new experiment's owner grant, a share) ends what is cached.
    grants: dict[Any, tuple[Any, float, int]] = {}
    store.list_grants = _expiring(
        store.list_grants,
        lambda user_id, workspace, resource_types: (
            user_id,
            workspace,
            frozenset(resource_types),
        ),
        min(ttl, _GRANTS_TTL),
        grants,
        lock,
        stamp,
    )
    for name in changing_methods(store):
        setattr(store, name, _clearing(getattr(store, name), stamp, grants, users))


def _remembering_experiments(
    original: Callable[[str, str], Any],
) -> Callable[[str, str], Any]:
    experiment_of_run: dict[str, str] = {}

    def run_requirement(run_id: str, action: str) -> Any:
        experiment_id = experiment_of_run.get(run_id) if isinstance(run_id, str) else None
        if experiment_id is None:
            resolved = original(run_id, action)
            if resolved is not None:
                if len(experiment_of_run) >= _MAX_ENTRIES:
                    experiment_of_run.clear()
                experiment_of_run[run_id] = resolved[0][1]
            return resolved
        # The same requirements MLflow builds from the run it would have loaded.
        return mlflow_internals.run_requirements(experiment_id, action)

    return run_requirement


def _log_batch_check(original: Callable[[], bool]) -> Callable[[], bool]:
    # log_batch: MLflow parses the whole batch into a protobuf only to collect the metrics'
    # model ids, then the handler parses it again. The ids are read from the JSON here
    # (both spellings protobuf's JSON accepts) and checked exactly as MLflow checks them.
    def validate_can_log_batch() -> bool:
        from flask import request

        body = request.get_json(silent=True)
        metrics = body.get("metrics") if isinstance(body, dict) else None
        model_ids: set[str] = set()
        for metric in metrics if isinstance(metrics, list) else []:
            if isinstance(metric, dict):
                for key in ("model_id", "modelId"):
                    if metric.get(key):
                        model_ids.add(str(metric[key]))
        return mlflow_internals.can_update_run_and_models(model_ids)

    return validate_can_log_batch


def changing_methods(store: Any) -> list[str]:
    """The public methods of MLflow's auth store that are not known reads (methods of its
    class only: the instance's session factory is callable too, and is used by reads)."""
    cls = store if isinstance(store, type) else type(store)
    return [
        name
        for name in dir(cls)
        if not name.startswith(("_", *READS)) and inspect.isfunction(getattr(cls, name))
    ]


def _expiring(
    method: Any,
    key_of: Callable[..., Any],
    ttl: float,
    cache: dict[Any, tuple[Any, float, int]],
    lock: threading.Lock,
    stamp: ChangeStamp,
) -> Any:
    """``method`` with its answers kept for ``ttl`` seconds, by ``key_of(arguments)``, and
    only while no worker changed users or permissions."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = key_of(*args, **kwargs)
        now = time.monotonic()
        changed = stamp.read()  # before the query: a change during it ends the answer
        cached = cache.get(key)
        if cached is not None and cached[1] > now and cached[2] == changed:
            return cached[0]
        value = method(*args, **kwargs)
        with lock:
            if len(cache) >= _MAX_ENTRIES:
                cache.clear()
            cache[key] = (value, now + ttl, changed)
        return value

    return wrapper


def _clearing(method: Any, stamp: ChangeStamp, *caches: dict[Any, Any]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            for cache in caches:
                cache.clear()
            stamp.bump()  # for the other workers

    wrapper.ends_cached_grants = True  # type: ignore[attr-defined]
    return wrapper
