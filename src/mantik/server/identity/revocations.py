"""Recording an ended token once, however many sign-outs of it race (a browser tab and the
CLI, two replicas): the second insert of an id is a no-op, not a primary-key violation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mantik.server.models import RevokedToken


def record(session: Session, token_id: str, expires_at: datetime) -> None:
    """Revoke ``token_id`` until ``expires_at``; an earlier revocation of it stands."""
    dialect = session.get_bind().dialect.name
    values = {"jti": token_id, "expires_at": expires_at}
    if dialect == "postgresql":
        session.execute(postgresql.insert(RevokedToken).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(RevokedToken).values(values).on_conflict_do_nothing())
    elif session.get(RevokedToken, token_id) is None:  # no other store is supported
        session.add(RevokedToken(**values))
