"""``mantik experiments share``: give another user access to an experiment you manage."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from mantik.cli._output import out

app = typer.Typer(help="Work with experiments on the platform.", no_args_is_help=True)


class Permission(StrEnum):
    READ = "READ"
    USE = "USE"
    EDIT = "EDIT"
    MANAGE = "MANAGE"


@app.command()
def share(
    experiment: Annotated[str, typer.Argument(help="Experiment id or name.")],
    user: Annotated[str, typer.Argument(help="The user to share with.")],
    permission: Annotated[
        Permission, typer.Option(case_sensitive=False, help="What the user may do.")
    ] = Permission.READ,
) -> None:
    """Share an experiment you manage with another user."""
    from mantik.client._experiments import share_experiment

    experiment_id = share_experiment(experiment, user, permission.value)
    out.print(f"Shared experiment {experiment_id} with {user!r} ({permission.value}).")
