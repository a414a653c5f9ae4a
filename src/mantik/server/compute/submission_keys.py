"""Idempotent submission: a client names each submission with an ``Idempotency-Key``; a
retry after a lost answer (same user, key and request) gets the run the first attempt made,
not a second run and a second job.

A key is claimed before anything is made and bound to its run once the site took the job;
a failed submission releases it (the retry submits afresh). Keys are kept for a day, per
user, and a claim whose submission never ended (its platform process died) is given up
after :data:`STALE_CLAIM`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from mantik.server.compute.errors import (
    IdempotencyKeyReused,
    InvalidSubmission,
    SubmissionInProgress,
)
from mantik.server.compute.submission import Submission
from mantik.server.db import Database
from mantik.server.models import SubmissionKey, utcnow

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=24)
STALE_CLAIM = timedelta(minutes=15)
_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def checked_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise InvalidSubmission(
            f"{HEADER} must be 1 to 128 letters, digits or '_.:-' (a UUID is right)."
        )
    return key


def fingerprint(submission: Submission, archive_sha256: str) -> str:
    """What makes two submissions the same one (credentials aside: they are not kept)."""
    facts: dict[str, object] = {
        "experiment_id": submission.experiment_id,
        "entry_point": submission.entry_point,
        "parameters": {str(k): str(v) for k, v in submission.parameters.items()},
        "backend_config": submission.backend_config,
        "backend_config_path": submission.backend_config_path,
        "run_name": submission.run_name,
        "project": submission.project,
        "image_digest": submission.image_digest,
        "archive": archive_sha256,
    }
    if submission.allow_undeclared_params:  # absent otherwise: earlier keys stay valid
        facts["allow_undeclared_params"] = True
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class SubmissionKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, username: str, key: str, digest: str) -> str | None:
        """Claim ``key`` for a new submission (None), or the run id an earlier submission
        with this key and request made."""
        now = utcnow()
        with self.db.session() as session:
            session.execute(delete(SubmissionKey).where(SubmissionKey.created_at < now - KEEP))
            session.execute(
                delete(SubmissionKey).where(
                    SubmissionKey.username == username,
                    SubmissionKey.key == key,
                    SubmissionKey.run_id.is_(None),
                    SubmissionKey.created_at < now - STALE_CLAIM,
                )
            )
        for _ in range(3):  # a claim released between our insert and our read: try again
            try:
                with self.db.session() as session:
                    session.add(
                        SubmissionKey(
                            username=username, key=key, fingerprint=digest, created_at=now
                        )
                    )
                return None
            except IntegrityError:
                pass
            with self.db.session() as session:
                row = session.get(SubmissionKey, (username, key))
            if row is None:
                continue
            if row.fingerprint != digest:
                raise IdempotencyKeyReused(
                    f"{HEADER} {key!r} was used for a different submission; send a new key "
                    "for a new submission."
                )
            if row.run_id is None:
                raise SubmissionInProgress(
                    f"The submission with {HEADER} {key!r} is still going on; retry shortly."
                )
            return row.run_id
        raise SubmissionInProgress(f"The submission with {HEADER} {key!r} is changing; retry.")

    def bind(self, username: str, key: str, run_id: str) -> None:
        with self.db.session() as session:
            row = session.get(SubmissionKey, (username, key))
            if row is not None:
                row.run_id = run_id

    def release(self, username: str, key: str) -> None:
        with self.db.session() as session:
            session.execute(
                delete(SubmissionKey).where(
                    SubmissionKey.username == username,
                    SubmissionKey.key == key,
                    SubmissionKey.run_id.is_(None),
                )
            )
