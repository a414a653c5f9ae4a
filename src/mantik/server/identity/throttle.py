"""Sign-in throttle per (account, client address), with growing delays.

An account-wide lock-out lets anyone lock anyone out with a few wrong passwords. Here each
pair is judged alone, as Cognito does: ``free`` failures cost nothing, then each further
one makes that pair wait twice as long as the last (1 s, 2 s, 4 s, … up to ``longest``).
An attempt counts as a failure *before* its password is checked and is forgiven when it
succeeds, so a burst of parallel guesses cannot slip past the count. A pair forgets its
failures after a quiet day.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mantik.server.identity import errors
from mantik.server.models import SignInFailures, utcnow

QUIET = timedelta(days=1)


class SignInThrottle:
    def __init__(self, free: int, longest: timedelta) -> None:
        self.free = free
        self.longest = longest

    def delay(self, failures: int) -> timedelta:
        """How long a pair waits after its ``failures``-th failure."""
        if failures <= self.free:
            return timedelta(0)
        exponent = min(failures - self.free - 1, 40)  # 2**40 s is beyond any cap
        return min(timedelta(seconds=2**exponent), self.longest)

    def begin_attempt(self, session: Session, username: str, client: str) -> None:
        """Refuse a pair that must wait; else count this attempt as a failure (committed)."""
        now = utcnow()
        # Strangers' guesses at names leave rows behind; a quiet day ends them.
        session.execute(delete(SignInFailures).where(SignInFailures.last_failure_at < now - QUIET))
        failures, blocked_until = _count(session, username, client, now)
        if blocked_until is not None and blocked_until > now:
            session.rollback()  # a refused attempt is not counted
            raise _throttled(blocked_until - now)
        wait = self.delay(failures)
        if wait:
            session.execute(
                update(SignInFailures)
                .where(SignInFailures.username == username, SignInFailures.client == client)
                .values(blocked_until=now + wait)
            )
        session.commit()

    @staticmethod
    def succeeded(session: Session, username: str, client: str) -> None:
        session.execute(
            delete(SignInFailures).where(
                SignInFailures.username == username, SignInFailures.client == client
            )
        )

    @staticmethod
    def forget_account(session: Session, username: str) -> None:
        """An admin reset lifts every wait of the account."""
        session.execute(delete(SignInFailures).where(SignInFailures.username == username))

    @staticmethod
    def throttled(session: Session, username: str) -> bool:
        """Whether some client address must wait before trying this account again."""
        row = session.scalar(
            select(SignInFailures.username)
            .where(SignInFailures.username == username, SignInFailures.blocked_until > utcnow())
            .limit(1)
        )
        return row is not None


def _count(
    session: Session, username: str, client: str, now: datetime
) -> tuple[int, datetime | None]:
    """One more failure for the pair, in one statement: the row stays locked until commit,
    so parallel attempts are counted one after the other and each sees the last wait."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    statement = (
        insert(SignInFailures)
        .values(username=username, client=client, failures=1, last_failure_at=now)
        .on_conflict_do_update(
            index_elements=[SignInFailures.username, SignInFailures.client],
            set_={"failures": SignInFailures.failures + 1, "last_failure_at": now},
        )
        .returning(SignInFailures.failures, SignInFailures.blocked_until)
    )
    failures, blocked_until = session.execute(statement).one()  # UTCDateTime: zone kept
    return int(failures), blocked_until


def _throttled(wait: timedelta) -> errors.SignInThrottled:
    seconds = max(1, math.ceil(wait.total_seconds()))
    return errors.SignInThrottled(
        f"Too many failed sign-ins from this address: try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )
