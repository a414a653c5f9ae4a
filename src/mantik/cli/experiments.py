"""``mantik experiments share``: give another user access to an experiment you manage."""

from __future__ import annotations

from typing import Annotated

import typer

from mantik.cli import _sharing

app = typer.Typer(help="Work with experiments on the platform.", no_args_is_help=True)


@app.command()
def share(
    experiment: Annotated[str, typer.Argument(help="Experiment id or name.")],
    user: _sharing.User,
    permission: _sharing.PermissionOption = _sharing.Permission.READ,
) -> None:
    """Share an experiment you manage with another user."""
    _sharing.share("experiment", experiment, user, permission)
