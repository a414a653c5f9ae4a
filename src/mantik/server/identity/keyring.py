"""The platform's JWT signing keys, kept in mantik's database so every replica signs and
verifies with the same ones, and rotated without ending anybody's tokens.

The newest key that is not retired signs. ``mantik admin keys rotate`` adds a key and retires
the one before, which goes on verifying (and is published in the JWKS) until the last token
it can have signed expires. A replica asks the database which key signs before each token it
issues (issuing is rare), and reloads the ring when a token names a key it does not know.

An admin's key file (``--signing-key-file``) stays as it was: that one key, no rotation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from mantik.server.db import Database
from mantik.server.identity.keys import SigningKey, from_pem
from mantik.server.models import SigningKeyRow, utcnow

# A token naming an unknown key reloads the ring at most this often (garbage tokens must
# not become one database query each).
_RELOAD_AT_MOST_EVERY = 1.0


class RotationRefused(Exception):
    """The signing key is the admin's file: it is replaced there, not rotated here."""


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    created_at: datetime
    retired_at: datetime | None
    expires_at: datetime | None

    @property
    def signing(self) -> bool:
        return self.retired_at is None


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class KeyRing:
    def __init__(self, db: Database | None, fixed: SigningKey | None = None) -> None:
        if db is None and fixed is None:
            raise ValueError("a key ring needs a database or a fixed key")
        self._db = db
        self._fixed = fixed
        self._keys: dict[str, SigningKey] = {fixed.kid: fixed} if fixed else {}
        self._signing = fixed.kid if fixed else ""
        self._loaded_at = -float("inf")
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, key: SigningKey) -> KeyRing:
        return cls(None, key)

    # --- used by the token service ------------------------------------------------------

    def signing_key(self) -> SigningKey:
        if self._db is not None:
            with self._db.session() as session:
                current = session.scalar(
                    select(SigningKeyRow.kid)
                    .where(SigningKeyRow.retired_at.is_(None))
                    .order_by(SigningKeyRow.created_at.desc())
                    .limit(1)
                )
            if current is None:
                raise RuntimeError("no signing key: the platform's stores were not prepared")
            if current not in self._keys or current != self._signing:
                self._load()
        return self._keys[self._signing]

    def verification_key(self, kid: str) -> SigningKey | None:
        key = self._keys.get(kid)
        if key is None and self._db is not None:
            if time.monotonic() - self._loaded_at >= _RELOAD_AT_MOST_EVERY:
                self._load()
            key = self._keys.get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        if self._db is not None:
            self._load()
        return {"keys": [key.jwk() for key in self._keys.values()]}

    def _load(self) -> None:
        assert self._db is not None
        now = utcnow()
        with self._db.session() as session:
            rows = list(session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at)))
        keys = {}
        signing = ""
        for row in rows:
            if row.expires_at is not None and row.expires_at <= now:
                continue  # nothing it signed is alive
            keys[row.kid] = self._keys.get(row.kid) or from_pem(row.private_key_pem.encode())
            if row.retired_at is None:
                signing = row.kid
        with self._lock:
            self._keys, self._signing = keys, signing
            self._loaded_at = time.monotonic()

    # --- administration -----------------------------------------------------------------

    def ensure(self, legacy_file: Path) -> None:
        """A first key, when there is none: the key file of a platform before keys moved
        into the database (its tokens stay valid), else a new one."""
        assert self._db is not None
        with self._db.session() as session:
            if session.scalar(select(SigningKeyRow.kid).limit(1)) is not None:
                return
            if legacy_file.exists():
                key = from_pem(legacy_file.read_bytes())
                pem = legacy_file.read_text()
            else:
                key = SigningKey(new_private_key())
                pem = _pem(key.private_key)
            session.add(SigningKeyRow(kid=key.kid, private_key_pem=pem, created_at=utcnow()))

    def rotate(self, tokens_live_until: datetime) -> tuple[KeyInfo, list[KeyInfo]]:
        """A new signing key; the keys it replaces verify until ``tokens_live_until``."""
        if self._db is None:
            raise RotationRefused(
                "the signing key is the file given by --signing-key-file "
                "(MANTIK_SIGNING_KEY_FILE): replace the key in that file instead"
            )
        key = SigningKey(new_private_key())
        now = utcnow()
        with self._db.session() as session:
            retired = list(
                session.scalars(select(SigningKeyRow).where(SigningKeyRow.retired_at.is_(None)))
            )
            for row in retired:
                row.retired_at, row.expires_at = now, tokens_live_until
            # A microsecond later than any retired one: the newest key signs.
            created = max([now, *(r.created_at + timedelta(microseconds=1) for r in retired)])
            session.add(
                SigningKeyRow(
                    kid=key.kid, private_key_pem=_pem(key.private_key), created_at=created
                )
            )
        return KeyInfo(key.kid, created, None, None), [_info(r) for r in retired]

    def describe(self) -> list[KeyInfo]:
        if self._db is None:
            assert self._fixed is not None
            return [KeyInfo(self._fixed.kid, utcnow(), None, None)]
        with self._db.session() as session:
            rows = session.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at))
            return [_info(row) for row in rows]


def _info(row: SigningKeyRow) -> KeyInfo:
    return KeyInfo(row.kid, row.created_at, row.retired_at, row.expires_at)
