"""mantik's own tables (SQLAlchemy 2.0 declarative). MLflow keeps its stores separately."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "mantik_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    # Raised by a password change or reset and by disabling: access and session tokens
    # carry the epoch they were issued in, and older ones are refused.
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignInFailures(Base):
    """Failed sign-ins of one account from one client address, and how long that pair
    must wait: a stranger elsewhere cannot lock the account's owner out."""

    __tablename__ = "mantik_sign_in_failures"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RevokedToken(Base):
    """Signed tokens ended before their expiry (browser sign-out, finished jobs)."""

    __tablename__ = "mantik_revoked_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class RefreshToken(Base):
    __tablename__ = "mantik_refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("mantik_users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    # All tokens descending from one sign-in share a family; reuse of a rotated token
    # revokes the whole family (OAuth 2.0 Security BCP, refresh token rotation).
    family: Mapped[str] = mapped_column(String(32), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ComputeJob(Base):
    """One submitted run: which site runs it, under which scheduler id, in which state."""

    __tablename__ = "mantik_compute_jobs"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Scheduler-neutral state (see mantik.compute.states.JobState).
    state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entry_point: Mapped[str] = mapped_column(String(256))
    workdir: Mapped[str] = mapped_column(String(4096))
    token_id: Mapped[str] = mapped_column(String(32))
    token_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Who the job runs as (mantik.server.compute.accounts): its OS account and ids; no uid
    # means the platform's own user (a site in mode ``platform``, or UNICORE's xlogin).
    run_as_account: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_as_uid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    run_as_gid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # While the job is handed to its site (no job_id yet): the platform process doing it
    # (mantik.server.compute.leftovers.process_mark), for the reconciler after a crash.
    handover_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobUid(Base):
    """A platform user's own unprivileged uid for jobs on ``local`` when the user has no OS
    account (allocated once from MANTIK_JOB_UID_RANGE, never shared)."""

    __tablename__ = "mantik_job_uids"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, unique=True)


# --- offline tracking (mantik.server.compute.offline.syncer) --------------------------------


class OfflineSync(Base):
    """How a submitted run is tracked, and how far the platform synced its job's snapshots."""

    __tablename__ = "mantik_offline_sync"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tracking: Mapped[str] = mapped_column(String(16))  # what the job chose: online | offline
    # The snapshot synced completely last (its mtime): an unchanged snapshot is not re-read.
    snapshot_mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    newest_point_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class OfflineRun(Base):
    """A run of a job's local store and the central run it goes to (the job's own, a child)."""

    __tablename__ = "mantik_offline_runs"

    job_run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    local_run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    central_run_id: Mapped[str] = mapped_column(String(32))
    # High-water mark: the local ``metrics`` rows up to this rowid are in the central run.
    metric_rowid: Mapped[int] = mapped_column(BigInteger, default=0)
    # … and the local ``logged_model_metrics`` rows up to this rowid (links to models).
    link_rowid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    ended: Mapped[bool] = mapped_column(Boolean, default=False)


class OfflineItem(Base):
    """One thing synced once, or again when its fingerprint changes: an artifact file, a
    logged model, a dataset input, a model output."""

    __tablename__ = "mantik_offline_items"

    job_run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    local_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    central_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ChangeStampRow(Base):
    """Shared change counters of replicas on one database (see change_stamp)."""

    __tablename__ = "mantik_change_stamps"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class SigningKeyRow(Base):
    """The platform's JWT signing keys: the newest unretired one signs; every key whose
    tokens may still be alive verifies and is published (JWKS)."""

    __tablename__ = "mantik_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_key_pem: Mapped[str] = mapped_column(String(8192))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it stopped signing (a rotation), and when the last token it signed expires.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SharedSecret(Base):
    """Random secrets every replica must share (e.g. the Flask session key)."""

    __tablename__ = "mantik_shared_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512))


class SubmissionKey(Base):
    """A client's ``Idempotency-Key`` for one submission (mantik.server.compute.submission_keys):
    a retry with the same key and request gets this run instead of a second one."""

    __tablename__ = "mantik_submission_keys"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of what was submitted
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None: going on
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
