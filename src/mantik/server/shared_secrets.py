"""Random secrets every worker of every replica must share (Flask's session key), kept in
mantik's database: the first worker to ask makes one, the others read it."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError

from mantik.server.db import Database
from mantik.server.models import SharedSecret


def shared_secret(db: Database, name: str) -> str:
    with db.session() as session:
        row = session.get(SharedSecret, name)
        if row is not None:
            return row.value
    try:
        with db.session() as session:
            session.add(SharedSecret(name=name, value=secrets.token_urlsafe(48)))
    except IntegrityError:
        pass  # another worker made it first: theirs it is
    with db.session() as session:
        row = session.get(SharedSecret, name)
        assert row is not None
        return row.value
