"""``mantik experiments list|share``: the experiments you may see; give another user access
to an experiment you manage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mantik.cli import _sharing
from mantik.cli._output import emit

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Work with experiments on the platform.", no_args_is_help=True)


@app.command()
def share(
    experiment: Annotated[str, typer.Argument(help="Experiment id or name.")],
    user: _sharing.User,
    permission: _sharing.PermissionOption = _sharing.Permission.READ,
) -> None:
    """Share an experiment you manage with another user."""
    _sharing.share("experiment", experiment, user, permission)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the experiments you may see (yours and those shared with you)."""
    import mantik

    mantik.init_tracking()
    from mlflow import MlflowClient

    rows = [
        {"experiment_id": e.experiment_id, "name": e.name, "lifecycle_stage": e.lifecycle_stage}
        for e in MlflowClient().search_experiments()
    ]
    emit(rows, as_json, lambda: _table(rows))


def _table(rows: list[dict[str, str]]) -> str | Table:
    if not rows:
        return "No experiments."
    from rich.table import Table

    table = Table("id", "name", box=None, header_style="bold")
    for row in rows:
        table.add_row(row["experiment_id"], row["name"])
    return table
