"""Sign-in, password changes, refresh-token rotation and account administration."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mantik.server import change_stamp
from mantik.server.db import Database
from mantik.server.identity import errors, passwords, revocations
from mantik.server.identity.throttle import SignInThrottle
from mantik.server.identity.tokens import TokenService, hash_refresh_token, new_refresh_token
from mantik.server.models import RefreshToken, RevokedToken, User, utcnow
from mantik.server.settings import ServerSettings

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_BAD_CREDENTIALS = "Invalid username or password."


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_at: datetime
    refresh_token: str

    def wire(self) -> dict[str, str]:
        """The mantik 0.1.x wire shape."""
        return {
            "AccessToken": self.access_token,
            "ExpiresAt": self.expires_at.isoformat(),
            "RefreshToken": self.refresh_token,
        }


@dataclass(frozen=True)
class UserInfo:
    username: str
    is_admin: bool
    is_active: bool
    must_change_password: bool
    throttled: bool  # some client address must wait before its next sign-in attempt
    created_at: datetime


@dataclass(frozen=True)
class AccountState:
    """What a token check needs to know of its account."""

    active: bool
    token_epoch: int


def _checked_password(password: str) -> str:
    """``password`` if it follows the rule; else a 400 naming what is missing."""
    try:
        passwords.check_rule(password)
    except passwords.PasswordRuleError as exc:
        raise errors.BadRequest(str(exc)) from exc
    return password


def check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise errors.BadRequest(
            "A username has 1-64 characters: letters, digits and . _ @ -, "
            "starting with a letter or digit."
        )


class IdentityService:
    def __init__(self, db: Database, settings: ServerSettings, tokens: TokenService) -> None:
        self.db = db
        self.settings = settings
        self.tokens = tokens
        self.throttle = SignInThrottle(
            settings.max_failed_logins, timedelta(minutes=settings.lockout_minutes)
        )
        # Every worker's token checks read this before trusting what they cached of accounts
        # and tokens (a sign-out, a disabled account), on every replica.
        self.changes = change_stamp.for_engine(db.engine, "identity", settings.identity_stamp)

    # --- sign-in and tokens -------------------------------------------------------------

    def sign_in(self, username: str, password: str, client: str) -> IssuedTokens:
        with self.db.session() as session:
            user = self._verify_password(session, username, password, client)
            if user.must_change_password:
                raise errors.NewPasswordRequired(
                    "NEW_PASSWORD_REQUIRED: this account still has its temporary password. "
                    "Set a new one (mantik login, the /new-password page, or "
                    "POST /api/mantik/password) and sign in again."
                )
            return self._issue(session, user, family=uuid.uuid4().hex)

    def refresh(self, username: str, refresh_token: str) -> IssuedTokens:
        now = utcnow()
        with self.db.session() as session:
            row, user = self._refresh_row(session, username, refresh_token)
            if row.revoked_at is not None:
                raise errors.InvalidRefreshToken("Refresh token is invalid: it was revoked.")
            if row.rotated_at is not None:
                # A rotated token came back: someone holds a copy. End the whole family.
                self._revoke_family(session, row.family, now)
                session.commit()  # the revocation must stick although we raise
                self.changes.bump()
                raise errors.InvalidRefreshToken(
                    "Refresh token is invalid: it was already used; sign in again."
                )
            if row.expires_at <= now:
                raise errors.InvalidRefreshToken("Refresh token has expired.")
            if not user.is_active:
                raise errors.InvalidRefreshToken("Refresh token is invalid: account disabled.")
            # Only one of several parallel refreshes of a token may rotate it; the others
            # are reuse (as above): the family ends.
            rotated = session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.id == row.id,
                    RefreshToken.rotated_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                )
                .values(rotated_at=now)
            )
            if rotated.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                self._revoke_family(session, row.family, now)
                session.commit()
                self.changes.bump()
                raise errors.InvalidRefreshToken(
                    "Refresh token is invalid: it was already used; sign in again."
                )
            return self._issue(session, user, family=row.family)

    def revoke(self, username: str, refresh_token: str) -> None:
        with self.db.session() as session:
            row, _ = self._refresh_row(session, username, refresh_token)
            self._revoke_family(session, row.family, utcnow())
        self.changes.bump()

    def change_password(self, username: str, password: str, new_password: str, client: str) -> None:
        _checked_password(new_password)
        if new_password == password:
            raise errors.BadRequest("The new password must differ from the current one.")
        with self.db.session() as session:
            user = self._verify_password(session, username, password, client)
            user.password_hash = passwords.hash_password(new_password)
            user.must_change_password = False
            # A new password ends every session that the old one opened.
            self._end_sessions(session, user)
        self.changes.bump()

    def session_token(self, username: str, password: str, client: str) -> tuple[str, float]:
        """A browser session token (cookie) after a password sign-in."""
        with self.db.session() as session:
            user = self._verify_password(session, username, password, client)
            if user.must_change_password:
                raise errors.NewPasswordRequired("NEW_PASSWORD_REQUIRED")
            return self.tokens.issue(
                user.username,
                "session",
                self.settings.session_hours * 3600,
                epoch=user.token_epoch,
            )

    def end_token(self, token_id: str, expires_at: float) -> None:
        """Revoke one signed token (sign-out) until it would have expired anyway."""
        now = utcnow()
        with self.db.session() as session:
            session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
            revocations.record(session, token_id, datetime.fromtimestamp(expires_at, UTC))
        self.changes.bump()

    def is_revoked(self, *token_ids: str | None) -> bool:
        """Whether any of a token's ids (its own, its sign-in's) was ended."""
        ids = [i for i in token_ids if i]
        with self.db.session() as session:
            query = select(RevokedToken.jti).where(RevokedToken.jti.in_(ids)).limit(1)
            return session.scalar(query) is not None

    def account_state(self, username: str) -> AccountState | None:
        """None for an unknown user."""
        with self.db.session() as session:
            row = session.execute(
                select(User.is_active, User.token_epoch).where(User.username == username)
            ).first()
        return AccountState(bool(row[0]), int(row[1])) if row else None

    # --- administration -----------------------------------------------------------------

    def create_user(
        self, username: str, *, is_admin: bool = False, temporary_password: str | None = None
    ) -> str:
        check_username(username)
        password = _checked_password(temporary_password or passwords.generate_temporary())
        with self.db.session() as session:
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise errors.Conflict(f"User {username!r} exists already.")
            session.add(
                User(
                    username=username,
                    password_hash=passwords.hash_password(password),
                    is_admin=is_admin,
                    must_change_password=True,
                )
            )
        return password

    def list_users(self) -> list[UserInfo]:
        with self.db.session() as session:
            users = session.scalars(select(User).order_by(User.username)).all()
            return [
                UserInfo(
                    username=u.username,
                    is_admin=u.is_admin,
                    is_active=u.is_active,
                    must_change_password=u.must_change_password,
                    throttled=self.throttle.throttled(session, u.username),
                    created_at=u.created_at,
                )
                for u in users
            ]

    def set_active(self, username: str, active: bool) -> None:
        with self.db.session() as session:
            user = self._get(session, username)
            if user.is_active == active:
                return
            user.is_active = active
            # Disabling ends every session; enabling again does not bring them back.
            self._end_sessions(session, user)
        self.changes.bump()

    def reset_password(self, username: str, temporary_password: str | None = None) -> str:
        password = _checked_password(temporary_password or passwords.generate_temporary())
        with self.db.session() as session:
            user = self._get(session, username)
            user.password_hash = passwords.hash_password(password)
            user.must_change_password = True
            self.throttle.forget_account(session, username)
            self._end_sessions(session, user)
        self.changes.bump()
        return password

    def is_admin(self, username: str) -> bool:
        with self.db.session() as session:
            return bool(self._get(session, username).is_admin)

    # --- internals ----------------------------------------------------------------------

    @staticmethod
    def _get(session: Session, username: str) -> User:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise errors.NotFound(f"No user {username!r}.")
        return user

    def _verify_password(self, session: Session, username: str, password: str, client: str) -> User:
        # Counted as a failure (and committed) before the password is checked.
        self.throttle.begin_attempt(session, username, client)
        user = session.scalar(select(User).where(User.username == username))
        ok = passwords.verify_password(user.password_hash if user else None, password)
        if user is None or not user.is_active or not ok:
            raise errors.InvalidCredentials(_BAD_CREDENTIALS)
        self.throttle.succeeded(session, username, client)
        if passwords.needs_rehash(user.password_hash):
            user.password_hash = passwords.hash_password(password)
        return user

    def _issue(self, session: Session, user: User, *, family: str) -> IssuedTokens:
        access, expires = self.tokens.issue(
            user.username,
            "access",
            self.settings.access_token_minutes * 60,
            epoch=user.token_epoch,
            sid=family,  # signing out ends this token too
        )
        refresh, refresh_hash = new_refresh_token()
        session.add(
            RefreshToken(
                user_id=user.id,
                token_hash=refresh_hash,
                family=family,
                expires_at=utcnow() + timedelta(days=self.settings.refresh_token_days),
            )
        )
        return IssuedTokens(access, datetime.fromtimestamp(expires, UTC), refresh)

    @staticmethod
    def _refresh_row(
        session: Session, username: str, refresh_token: str
    ) -> tuple[RefreshToken, User]:
        row = session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
        )
        user = session.get(User, row.user_id) if row else None
        if row is None or user is None or user.username != username:
            raise errors.InvalidRefreshToken("Refresh token is invalid.")
        return row, user

    @classmethod
    def _end_sessions(cls, session: Session, user: User) -> None:
        """Every refresh token ends now, and every access or session token issued before.
        (Job tokens are bound to their run and end with it, or when the account is off.)"""
        user.token_epoch += 1
        cls._revoke_all(session, user)

    @staticmethod
    def _revoke_all(session: Session, user: User) -> None:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    def _revoke_family(self, session: Session, family: str, now: datetime) -> None:
        """End a sign-in: its refresh tokens, and the access tokens issued from it (they
        name it as ``sid``). The caller bumps :attr:`changes` once this is committed."""
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        lifetime = timedelta(minutes=self.settings.access_token_minutes)
        revocations.record(session, family, now + lifetime)
