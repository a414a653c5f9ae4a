"""``mantik admin keys …``: the platform's JWT signing keys (kept in its database)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from mantik.cli import _server_options as opts
from mantik.cli._output import fail, out

if TYPE_CHECKING:
    from mantik.server.identity.keyring import KeyInfo
    from mantik.server.platform import Platform

app = typer.Typer(help="Show and rotate the signing keys of tokens.", no_args_is_help=True)

# Tokens are checked with this leeway (tokens.verify): an old key verifies a little longer.
_LEEWAY = timedelta(seconds=30)


def _platform(data_dir: object, database_uri: str | None) -> Platform:
    from mantik.server.platform import build, prepare

    settings = opts.settings(data_dir=data_dir, database_uri=database_uri)
    prepare(settings)
    return build(settings)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _state(key: KeyInfo) -> str:
    return "signs" if key.signing else "verifies only"


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
) -> None:
    """The keys whose tokens may be alive: the one that signs, and those that still verify."""
    keys = _platform(data_dir, database_uri).keyring.describe()
    if as_json:
        rows = [
            {
                "kid": k.kid,
                "state": _state(k),
                "created_at": k.created_at.isoformat(),
                "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                "verifies_until": k.expires_at.isoformat() if k.expires_at else None,
            }
            for k in keys
        ]
        out.print_json(json.dumps(rows))
        return
    from rich.table import Table

    table = Table("state", "created", "retired", "verifies until")
    table.add_column("key id", no_wrap=True)  # copied whole into `jwt` tools and tickets
    for k in keys:
        table.add_row(
            _state(k), _when(k.created_at), _when(k.retired_at), _when(k.expires_at), k.kid
        )
    out.print(table)


@app.command("rotate")
def rotate(
    data_dir: opts.DataDir = None,
    database_uri: opts.DatabaseUri = None,
) -> None:
    """Sign new tokens with a new key. The old key goes on verifying, and stays in the JWKS,
    until the last token it signed expires; no one is signed out."""
    from mantik.server.identity.keyring import RotationRefused

    platform = _platform(data_dir, database_uri)
    until = _tokens_live_until(platform)
    try:
        new, retired = platform.keyring.rotate(until)
    except RotationRefused as exc:
        fail(f"Cannot rotate: {exc}.")
    out.print(f"New signing key {new.kid}.")
    for key in retired:
        out.print(f"Key {key.kid} verifies until {_when(key.expires_at)}, then is dropped.")


def _tokens_live_until(platform: Platform) -> datetime:
    """When the last token signed so far expires: sessions and access tokens by their
    lifetime, job tokens by the unfinished jobs' records."""
    from sqlalchemy import func, select

    from mantik.compute.states import JobState
    from mantik.server.models import ComputeJob, utcnow

    settings = platform.settings
    lifetime = max(
        timedelta(minutes=settings.access_token_minutes), timedelta(hours=settings.session_hours)
    )
    ended = [state.value for state in JobState if state.terminal]
    with platform.db.session() as session:
        jobs = session.scalar(
            select(func.max(ComputeJob.token_expires_at)).where(ComputeJob.state.not_in(ended))
        )
    latest = max(utcnow() + lifetime, jobs) if jobs is not None else utcnow() + lifetime
    return latest + _LEEWAY
