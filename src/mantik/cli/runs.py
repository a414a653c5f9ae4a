"""``mantik runs``: submit MLflow projects to a compute site, follow, cancel and list them."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from mantik._exceptions import ConfigurationError
from mantik.cli._output import emit, err, fail, out
from mantik.cli._waiting import transfer_bars, watching
from mantik.compute.states import JobState  # stdlib only: no server dependency

if TYPE_CHECKING:
    from rich.table import Table

    from mantik.client._compute import ComputeBackendClient
    from mantik.client._runs import RunInfo, SubmittedRun

EXIT_CODES = """Exit codes: 0 success (when waiting for the run: it FINISHED); 1 usage,
configuration or platform error; 2 the run FAILED; 3 the run was KILLED; 4 --timeout passed."""
_EXIT = {"FINISHED": 0, "FAILED": 2, "KILLED": 3}
_TIMEOUT = 4


class _Group(TyperGroup):
    """Usage errors exit 1 here, not 2 as in click: scripts read 2 as "the run FAILED"."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _usage_errors_exit_1():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_exit_1():
            return super().invoke(ctx)


@contextmanager
def _usage_errors_exit_1() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:  # click's errors, as vendored by typer
        exc.exit_code = 1
        raise


app = typer.Typer(
    cls=_Group,
    help=f"Submit MLflow projects to compute sites and follow their runs.\n\n{EXIT_CODES}",
    no_args_is_help=True,
)


RunId = Annotated[str, typer.Argument(help="The MLflow run id.", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Interval = Annotated[float, typer.Option(min=0.1, help="Seconds between status checks.")]
Timeout = Annotated[
    float | None, typer.Option(min=0, help="Give up waiting after this many seconds (exit 4).")
]


# --- commands ------------------------------------------------------------------------------


@app.command(epilog=EXIT_CODES)
def submit(
    path: Annotated[
        Path,
        typer.Argument(help="The MLproject directory.", exists=True, file_okay=False),
    ],
    backend_config: Annotated[
        Path,
        typer.Option(
            "--backend-config",
            help="Backend config file inside the project (relative to it or to here).",
        ),
    ],
    experiment_id: Annotated[str | None, typer.Option(help="Experiment to track in.")] = None,
    experiment_name: Annotated[
        str | None, typer.Option(help="Experiment to track in, by name (created if missing).")
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option("--param", "-P", help="Entry point parameter name=value (repeatable)."),
    ] = None,
    allow_undeclared_params: Annotated[
        bool,
        typer.Option(
            "--allow-undeclared-params",
            help="Pass parameters the entry point does not declare on as --name value "
            "(MLflow's behaviour); without it they are refused.",
        ),
    ] = False,
    entry_point: Annotated[str, typer.Option(help="MLproject entry point.")] = "main",
    run_name: Annotated[str | None, typer.Option(help="Name of the MLflow run.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run ends.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Stream the run's output until it ends.")
    ] = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    as_json: Json = False,
) -> None:
    """Upload an MLflow project and start it as a tracked run."""
    if follow and timeout is not None:
        raise ConfigurationError("--timeout works with --wait, not with --follow.")
    parameters = _parameters(parameter or [])
    experiment = _experiment(experiment_id, experiment_name)
    client = _client()
    with transfer_bars(err, show=not as_json and err.is_terminal) as bars:
        submitted = client.submit_run(
            experiment,
            parameters,
            path,
            _relative_config(path, backend_config),
            entry_point=entry_point,
            run_name=run_name,
            progress=bars.upload if bars else None,
            hash_progress=bars.hashing if bars else None,
            allow_undeclared_params=allow_undeclared_params,
        )
    if not (wait or follow):
        emit(asdict(submitted), as_json, lambda: _submitted_line(submitted))
        return
    if not as_json:
        _say(_submitted_line(submitted), stderr=True)
    if follow:
        _stream(client, submitted.run_id, interval, to_stderr=as_json)
    _finish(_await(client, submitted.run_id, timeout, interval, show=not follow), as_json)


@app.command()
def status(run_id: RunId, as_json: Json = False) -> None:
    """Show the state of a run."""
    info = _client().get_status(run_id)
    emit(asdict(info), as_json, lambda: _run_table(info))


@app.command()
def logs(
    run_id: RunId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the run ends.")
    ] = False,
    interval: Interval = 2.0,
) -> None:
    """Print the output of a run's job."""
    client = _client()
    if follow:
        _stream(client, run_id, interval, to_stderr=False)
    else:
        _write(sys.stdout, client.get_logs(run_id))
        lag = _sync_lag(client.get_status(run_id))
        if lag:
            _say(f"({lag})", stderr=True)


@app.command()
def cancel(run_id: RunId, as_json: Json = False) -> None:
    """Cancel a run's job (the run ends KILLED)."""
    info = _client().cancel(run_id)
    ended = f"Run {run_id} has already ended ({info.run_status})."
    emit(asdict(info), as_json, lambda: ended if info.done else f"Cancelling run {run_id}.")


@app.command("list")
def list_runs(
    experiment_id: Annotated[str | None, typer.Option(help="Only runs of this experiment.")] = None,
    state: Annotated[
        JobState | None, typer.Option(case_sensitive=False, help="Only jobs in this job state.")
    ] = None,
    as_json: Json = False,
) -> None:
    """List your submitted runs, newest first."""
    runs = _client().list_runs(experiment_id, state.value if state else None)
    emit([asdict(r) for r in runs], as_json, lambda: _runs_table(runs))


@app.command(epilog=EXIT_CODES)
def wait(
    run_id: RunId, timeout: Timeout = None, interval: Interval = 2.0, as_json: Json = False
) -> None:
    """Wait until a run ends; the exit code tells how it ended."""
    client = _client()
    _finish(_await(client, run_id, timeout, interval), as_json)


# --- helpers -------------------------------------------------------------------------------


def _client() -> ComputeBackendClient:
    from mantik.client._compute import ComputeBackendClient

    return ComputeBackendClient.from_env()


def _parameters(pairs: list[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise ConfigurationError(f"Parameter {pair!r} is not name=value; write -P name=value.")
        parameters[name.strip()] = value
    return parameters


def _experiment(experiment_id: str | None, name: str | None) -> str:
    if experiment_id is not None and name is None:
        return experiment_id
    if name is None or experiment_id is not None:
        raise ConfigurationError("Give exactly one of --experiment-id and --experiment-name.")
    import mantik

    mantik.init_tracking()
    from mlflow import MlflowClient

    tracking = MlflowClient()
    found = tracking.get_experiment_by_name(name)
    return str(found.experiment_id if found else tracking.create_experiment(name))


def _relative_config(project: Path, config: Path) -> Path:
    """The config path relative to the project, whether given so or relative to here."""
    if config.is_absolute() or (not (project / config).exists() and config.exists()):
        try:
            return config.resolve().relative_to(project.resolve())
        except ValueError:
            raise ConfigurationError(
                f"Backend config {str(config)!r} is outside the project {str(project)!r}; "
                "move it into the project directory (it is uploaded with it)."
            ) from None
    return config  # relative to the project; the client names it if it does not exist


def _await(
    client: ComputeBackendClient,
    run_id: str,
    timeout: float | None,
    interval: float,
    *,
    show: bool = True,
) -> RunInfo:
    """Poll until the run ends, showing its state as it changes (on stderr)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with watching(err, show=show) as watch:
        while True:
            info = client.get_status(run_id)
            if watch is not None:
                watch(info)
            if info.done:
                return info
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if watch is not None:
                    watch.close()
                fail(f"Run {run_id} is still {info.state} after {timeout:g} s.", code=_TIMEOUT)
            time.sleep(interval if left is None else min(interval, left))


def _stream(client: ComputeBackendClient, run_id: str, interval: float, *, to_stderr: bool) -> None:
    sink = sys.stderr if to_stderr else sys.stdout
    for chunk in client.follow_logs(run_id, interval=interval):
        _write(sink, chunk)


def _finish(info: RunInfo, as_json: bool) -> None:
    emit(asdict(info), as_json, lambda: _run_table(info))
    code = _EXIT.get(info.run_status, 1)
    if code and not as_json:
        hint = f"Run {info.run_id} {info.run_status}; see `mantik runs logs {info.run_id}`."
        _say(hint, stderr=True)
    raise typer.Exit(code)


# --- printing ------------------------------------------------------------------------------


def _write(sink: Any, text: str) -> None:
    sink.write(text)
    sink.flush()


def _say(text: str, *, stderr: bool = False) -> None:
    (err if stderr else out).print(text, soft_wrap=True, markup=False)


def _submitted_line(submitted: SubmittedRun) -> str:
    return (
        f"Submitted run {submitted.run_id} to experiment {submitted.experiment_id} "
        f"(job {submitted.job_id} on site {submitted.site})."
    )


def _run_table(info: RunInfo) -> Table:
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in asdict(info).items():
        shown = _sync_lag(info) if key == "sync_lag_seconds" else value
        table.add_row(key, "" if shown is None else str(shown))
    return table


def _sync_lag(info: RunInfo) -> str | None:
    """How far an offline run's central copy is behind its job, in words."""
    if info.tracking != "offline":
        return None
    if info.sync_lag_seconds is None:
        return "all synced" if info.done and info.synced_at else "nothing synced yet"
    return f"tracking offline: the run shows the job's points up to {info.sync_lag_seconds:g} s ago"


def _runs_table(runs: list[RunInfo]) -> str | Table:
    """Site and job are left to ``status``: the rest fits 80 columns."""
    from rich.table import Table

    if not runs:
        return "No runs."
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    for header in ("Run", "Exp.", "Status", "State", "Entry", "Submitted"):
        table.add_column(header, no_wrap=header != "Entry")
    for r in runs:
        submitted = datetime.fromisoformat(r.submitted_at).astimezone()
        row = (r.experiment_id, r.run_status, r.state, r.entry_point)
        table.add_row(r.run_id, *row, f"{submitted:%m-%d %H:%M}")
    return table
