"""A trace write reaches only the experiment MLflow checked it against.

MLflow 3.17.2 checks a trace write (``StartTraceV3``, an OTLP export to ``/v1/traces``)
against the experiment the request names, while its store writes by trace id alone: given
the id of another experiment's trace, ``StartTraceV3`` moves that trace, its spans and its
assessments into the caller's experiment, and an OTLP export adds or replaces its spans.
Whoever had once seen a trace id could take the trace. :func:`install` refuses such writes
in the store, and checks the run an OTLP export links its traces to (``X-Mlflow-Run-Id``)
as MLflow checks its own link-to-run route: UPDATE on the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mantik import _mlflow_internals as mlflow_internals

_EXPERIMENT_HEADER = "x-mlflow-experiment-id"
_RUN_HEADER = "x-mlflow-run-id"

Validator = Callable[[str, Any], Awaitable[bool]]


def install() -> None:
    _guard_store(mlflow_internals.tracking_store())
    mlflow_internals.wrap_otel_validator(_checking_linked_run)


def _checking_linked_run(original: Callable[[str], Validator]) -> Callable[[str], Validator]:
    def otel_validator(path: str) -> Validator:
        experiment_check = original(path)

        async def validator(username: str, request: Any) -> bool:
            # One value each: the check and the handler must not read different ones.
            if any(len(request.headers.getlist(h)) > 1 for h in (_EXPERIMENT_HEADER, _RUN_HEADER)):
                return False
            if not await experiment_check(username, request):
                return False
            run_id = request.headers.get(_RUN_HEADER)
            if not run_id:
                return True
            resolved = mlflow_internals.run_requirement(run_id, "update")
            if resolved is None:
                return False
            anchor, requirements = resolved
            return mlflow_internals.authorize(username, anchor, requirements)

        return validator

    return otel_validator


def _guard_store(store: Any) -> None:
    original_start_trace = store.start_trace
    original_log_spans = store.log_spans

    def start_trace(trace_info: Any) -> Any:
        _refuse_foreign(store, str(trace_info.experiment_id), [trace_info.trace_id])
        return original_start_trace(trace_info)

    # ``log_spans_async`` (the OTLP route) runs ``self.log_spans`` in a thread: this one.
    def log_spans(location: str, spans: list[Any], *args: Any, **kwargs: Any) -> Any:
        _refuse_foreign(store, str(location), (span.trace_id for span in spans))
        return original_log_spans(location, spans, *args, **kwargs)

    store.start_trace = start_trace
    store.log_spans = log_spans


def _refuse_foreign(store: Any, experiment_id: str, trace_ids: Iterable[str]) -> None:
    """Raise unless every named trace is new or already in ``experiment_id``."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    wanted = sorted({str(t) for t in trace_ids if t})
    if not wanted:
        return
    foreign = [
        info.trace_id
        for info in store.batch_get_trace_infos(wanted)
        if str(info.experiment_id) != experiment_id
    ]
    if foreign:
        raise MlflowException(
            f"Trace '{foreign[0]}' belongs to another experiment than {experiment_id}: "
            "log it to its own experiment, or give the new trace a new id.",
            error_code=PERMISSION_DENIED,
        )
