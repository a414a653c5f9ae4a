"""``mantik admin users …``: accounts are created by administrators only; ``keys``: see
:mod:`.admin_keys`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mantik.cli import _server_options as opts
from mantik.cli import admin_keys
from mantik.cli._output import fail, out

if TYPE_CHECKING:
    from mantik.server.platform import Platform
    from mantik.server.settings import ServerSettings

app = typer.Typer(help="Administer the platform (runs on the platform host).", no_args_is_help=True)
users = typer.Typer(help="Create and manage user accounts.", no_args_is_help=True)
app.add_typer(users, name="users")
app.add_typer(admin_keys.app, name="keys")

Username = Annotated[str, typer.Argument(help="The account name.")]
TempPassword = Annotated[
    str | None,
    typer.Option(
        "--temporary-password",
        help="Temporary password (must follow the password rule); generated when omitted.",
    ),
]


def _platform(
    data_dir: object, database_uri: str | None, auth_database_uri: str | None
) -> tuple[ServerSettings, Platform]:
    from mantik.server.platform import build, prepare

    settings = opts.settings(
        data_dir=data_dir, database_uri=database_uri, auth_database_uri=auth_database_uri
    )
    prepare(settings)
    return settings, build(settings)


def _sync_mlflow_user(settings: ServerSettings, username: str, is_admin: bool) -> None:
    from mantik.server.tracking import mlflow_app

    mlflow_app.sync_user(settings, username, is_admin=is_admin)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Identity errors (unknown user, weak password, …) as one line, exit code 1."""
    from mantik.server.identity.errors import IdentityError

    try:
        yield
    except IdentityError as exc:
        fail(str(exc))


@users.command("create")
def create(
    username: Username,
    admin: Annotated[bool, typer.Option("--admin", help="Give the account admin rights.")] = False,
    temporary_password: TempPassword = None,
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
    auth_database_uri: opts.AuthDatabaseUri = None,
) -> None:
    """Create an account; the user must replace the temporary password at first sign-in."""
    settings, platform = _platform(data_dir, database_uri, auth_database_uri)
    with _one_line_errors():
        password = platform.identity.create_user(
            username, is_admin=admin, temporary_password=temporary_password
        )
    _sync_mlflow_user(settings, username, admin)
    out.print(f"Created user {username!r}{' (admin)' if admin else ''}.")
    if temporary_password is None:
        out.print(f"Temporary password: {password}", soft_wrap=True)


@users.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
    auth_database_uri: opts.AuthDatabaseUri = None,
) -> None:
    """List accounts."""
    _, platform = _platform(data_dir, database_uri, auth_database_uri)
    rows = platform.identity.list_users()
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "username": r.username,
                        "admin": r.is_admin,
                        "active": r.is_active,
                        "must_change_password": r.must_change_password,
                        "throttled": r.throttled,
                        "created_at": r.created_at.isoformat(),
                    }
                    for r in rows
                ]
            )
        )
        return
    from rich.table import Table

    table = Table("username", "admin", "active", "password", "created")
    for r in rows:
        state = "temporary" if r.must_change_password else "set"
        table.add_row(
            r.username,
            "yes" if r.is_admin else "",
            ("throttled" if r.throttled else "yes") if r.is_active else "disabled",
            state,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


def _set_active(
    username: str,
    active: bool,
    data_dir: object,
    database_uri: str | None,
    auth_database_uri: str | None,
) -> None:
    _, platform = _platform(data_dir, database_uri, auth_database_uri)
    with _one_line_errors():
        platform.identity.set_active(username, active)
    out.print(f"{'Enabled' if active else 'Disabled'} user {username!r}.")


@users.command("disable")
def disable(
    username: Username,
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
    auth_database_uri: opts.AuthDatabaseUri = None,
) -> None:
    """Disable an account: its tokens stop working (within the auth cache time)."""
    _set_active(username, False, data_dir, database_uri, auth_database_uri)


@users.command("enable")
def enable(
    username: Username,
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
    auth_database_uri: opts.AuthDatabaseUri = None,
) -> None:
    """Enable a disabled account again."""
    _set_active(username, True, data_dir, database_uri, auth_database_uri)


@users.command("reset-password")
def reset_password(
    username: Username,
    temporary_password: TempPassword = None,
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
    auth_database_uri: opts.AuthDatabaseUri = None,
) -> None:
    """Give an account a new temporary password (and end its sessions)."""
    _, platform = _platform(data_dir, database_uri, auth_database_uri)
    with _one_line_errors():
        password = platform.identity.reset_password(username, temporary_password)
    out.print(f"Reset the password of {username!r}; it must be replaced at the next sign-in.")
    if temporary_password is None:
        out.print(f"Temporary password: {password}", soft_wrap=True)


@app.command("sudoers")
def sudoers(
    platform_user: Annotated[
        str | None,
        typer.Option(help="The OS account the platform runs as [the data dir's owner]."),
    ] = None,
    account: Annotated[
        list[str] | None, typer.Option(help="A job account (repeat); also read from the sites.")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="A group whose members are job accounts (repeat).")
    ] = None,
    data_dir: opts.DataDir = None,
    sites_file: Annotated[
        Path | None, typer.Option(help="The sites file [MANTIK_SITES_FILE].")
    ] = None,
) -> None:
    """Print the sudoers rule a platform that is not root needs to run jobs as their users."""
    import getpass
    import pwd

    from mantik.server.compute.accounts.sudoers import sudoers_rule
    from mantik.server.compute.sites import Sites

    settings = opts.settings(data_dir=data_dir, sites_file=sites_file)
    if platform_user is None:
        try:
            platform_user = pwd.getpwuid(settings.data_dir.stat().st_uid).pw_name
        except (FileNotFoundError, KeyError):
            platform_user = getpass.getuser()
    if platform_user == "root":
        fail(
            "A platform running as root needs no sudo rule; name its account with --platform-user."
        )
    with _one_line_errors():
        sites = Sites.configured(settings)
    accounts = sorted({*(account or []), *(a for s in sites.values() for a in s.accounts.values())})
    if not accounts and not group:
        fail("Name the job accounts (--account NAME) or their group (--group NAME).")
    out.print(
        sudoers_rule(platform_user, accounts, group or []), end="", soft_wrap=True, markup=False
    )
