"""``mantik login`` and ``mantik init``: tokens for the shell."""

from __future__ import annotations

import os
import shlex
from typing import Annotated

import typer

from mantik.cli._output import err, fail, out


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("init")(init)


def _sign_in(new_password: str | None) -> str:
    from mantik._exceptions import PasswordChangeRequired
    from mantik.client import _env, _tokens

    values = _env.require(_env.USERNAME, _env.PASSWORD, _env.TRACKING_URI)
    url = _env.platform_url(values[_env.TRACKING_URI])
    username, password = values[_env.USERNAME], values[_env.PASSWORD]
    try:
        return _tokens.obtain(url, username, password).access_token
    except PasswordChangeRequired:
        if new_password is None:
            if not os.isatty(0):
                fail(
                    "This account still has its temporary password. Run `mantik login` in a "
                    "terminal, or pass --new-password, to set your own."
                )
            new_password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
        client = _tokens.TokenClient(url)
        try:
            client.change_password(username, password, new_password)
        finally:
            client.close()
        err.print("Password changed. Update MANTIK_PASSWORD to the new password.")
        return _tokens.obtain(url, username, new_password).access_token


def login(
    new_password: Annotated[
        str | None,
        typer.Option(help="Set this password when the account has a temporary one."),
    ] = None,
) -> None:
    """Sign in with MANTIK_USERNAME/MANTIK_PASSWORD and cache the token (~/.mantik)."""
    _sign_in(new_password)
    out.print("Signed in; token cached in ~/.mantik/tokens.json.")


def init() -> None:
    """Print the export line for MLflow, for `eval "$(mantik init)"`."""
    from mantik.client import _env

    token = _sign_in(None)
    url = _env.platform_url(os.environ[_env.TRACKING_URI])
    print(
        f"export MLFLOW_TRACKING_URI={shlex.quote(url)} "
        f"MLFLOW_TRACKING_TOKEN={shlex.quote(token)}; "
        "unset MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD"
    )
