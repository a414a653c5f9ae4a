"""Building the platform's parts from settings: used by the server and the admin CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mantik.server import coordination
from mantik.server.db import Database, upgrade_schema
from mantik.server.identity import keys
from mantik.server.identity.keyring import KeyRing
from mantik.server.identity.service import IdentityService
from mantik.server.identity.tokens import TokenService
from mantik.server.settings import ServerSettings


@dataclass
class Platform:
    settings: ServerSettings
    db: Database
    keyring: KeyRing
    tokens: TokenService
    identity: IdentityService


# Where the signing key lived before keys moved into the database.
LEGACY_KEY_FILE = "jwt-signing-key.pem"


def prepare(settings: ServerSettings) -> None:
    """Create the data folder, schemas and the first signing key (idempotent; before any
    worker starts, by every replica: they take turns)."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    if settings.signing_key_file is not None:
        keys.load_key_file(settings.signing_key_file)
    db = Database(settings.resolved_database_uri)
    with coordination.for_engine(db.engine, settings.data_dir).hold("prepare"):
        upgrade_schema(db.engine)
        if settings.signing_key_file is None:
            KeyRing(db).ensure(settings.keys_dir / LEGACY_KEY_FILE)
    db.engine.dispose()


def keyring(settings: ServerSettings, db: Database) -> KeyRing:
    if settings.signing_key_file is not None:
        return KeyRing.from_file(keys.load_key_file(settings.signing_key_file))
    return KeyRing(db)


def build(settings: ServerSettings) -> Platform:
    db = Database(settings.resolved_database_uri)
    ring = keyring(settings, db)
    tokens = TokenService(ring, issuer=settings.base_url)
    return Platform(settings, db, ring, tokens, IdentityService(db, settings, tokens))
