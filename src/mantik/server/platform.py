"""Building the platform's parts from settings: used by the server and the admin CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mantik.server.db import Database, upgrade_schema
from mantik.server.identity import keys
from mantik.server.identity.service import IdentityService
from mantik.server.identity.tokens import TokenService
from mantik.server.settings import ServerSettings


@dataclass
class Platform:
    settings: ServerSettings
    db: Database
    signing_key: keys.SigningKey
    tokens: TokenService
    identity: IdentityService


def prepare(settings: ServerSettings) -> None:
    """Create the data folder, keys and schemas (idempotent; before any worker starts)."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    keys.load_or_create(settings.keys_dir, settings.signing_key_file)
    db = Database(settings.resolved_database_uri)
    upgrade_schema(db.engine)
    db.engine.dispose()


def build(settings: ServerSettings) -> Platform:
    db = Database(settings.resolved_database_uri)
    signing_key = keys.load_or_create(settings.keys_dir, settings.signing_key_file)
    tokens = TokenService(signing_key, issuer=settings.base_url)
    return Platform(settings, db, signing_key, tokens, IdentityService(db, settings, tokens))
