"""Options shared by ``mantik server start`` and the admin commands (same stores)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from mantik.server.settings import ServerSettings

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Folder for keys, SQLite databases and artifacts [MANTIK_DATA_DIR]."
    ),
]
DatabaseUri = Annotated[
    str | None,
    typer.Option(
        "--database-uri", help="mantik's database, e.g. postgresql://… [MANTIK_DATABASE_URI]."
    ),
]
BackendStoreUri = Annotated[
    str | None,
    typer.Option(
        "--backend-store-uri", help="MLflow's tracking database [MANTIK_BACKEND_STORE_URI]."
    ),
]
AuthDatabaseUri = Annotated[
    str | None,
    typer.Option(
        "--auth-database-uri", help="MLflow's permission database [MANTIK_AUTH_DATABASE_URI]."
    ),
]


def settings(**overrides: Any) -> ServerSettings:
    """Settings from ``MANTIK_*`` variables, overridden by the flags that were given."""
    from mantik.server.settings import ServerSettings

    return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
