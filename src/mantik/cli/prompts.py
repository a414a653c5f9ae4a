"""``mantik prompts share``: give another user access to a prompt you manage."""

from __future__ import annotations

from typing import Annotated

import typer

from mantik.cli import _sharing

app = typer.Typer(help="Work with prompts on the platform.", no_args_is_help=True)


@app.command()
def share(
    prompt: Annotated[str, typer.Argument(help="Prompt name.")],
    user: _sharing.User,
    permission: _sharing.PermissionOption = _sharing.Permission.READ,
) -> None:
    """Share a prompt you manage with another user (all its versions)."""
    _sharing.share("prompt", prompt, user, permission)
