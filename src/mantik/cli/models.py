"""``mantik models share``: give another user access to a registered model you manage."""

from __future__ import annotations

from typing import Annotated

import typer

from mantik.cli import _sharing

app = typer.Typer(help="Work with registered models on the platform.", no_args_is_help=True)


@app.command()
def share(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    user: _sharing.User,
    permission: _sharing.PermissionOption = _sharing.Permission.READ,
) -> None:
    """Share a registered model you manage with another user (all its versions)."""
    _sharing.share("registered_model", model, user, permission)
