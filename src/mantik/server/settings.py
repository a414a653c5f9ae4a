"""Platform settings: one pydantic model, read from ``MANTIK_*`` variables and CLI flags."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".mantik" / "platform"


class ServerSettings(BaseSettings):
    """Everything the platform process needs to know.

    Embedded defaults keep every store under ``data_dir`` (SQLite + a local artifact
    folder); production deployments point the URIs at PostgreSQL and S3.
    """

    model_config = SettingsConfigDict(env_prefix="MANTIK_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    # One worker (≈ 300 MB) suits a laptop or a small group; each extra worker adds ≈ 260 MB.
    workers: int = Field(default=1, ge=1, le=64)
    # The JWT signing key (PEM, RSA), e.g. outside data_dir and readable by the platform
    # only; default: data_dir/keys/jwt-signing-key.pem, created on first start.
    signing_key_file: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_certfile: Path | None = None
    # Public base URL, used as JWT issuer and in links; defaults to http(s)://host:port.
    public_url: str | None = None
    # Host names clients may use besides loopback, private addresses and public_url's host
    # (MLflow refuses other Host headers against DNS rebinding), comma-separated.
    allowed_hosts: str | None = None
    # Browser origins (comma-separated) other than the platform's own that may call the API
    # with credentials; none by default.
    cors_allowed_origins: str | None = None
    # Proxies (addresses or networks, comma-separated; "*" for any) whose X-Forwarded-For /
    # X-Forwarded-Proto are believed. None: nobody's, so a client cannot pick the address
    # the sign-in throttle counts against (uvicorn alone would trust 127.0.0.1).
    forwarded_allow_ips: str | None = None

    # Stores. None means "SQLite file in data_dir".
    database_uri: str | None = None  # mantik's own tables (users, tokens, jobs)
    backend_store_uri: str | None = None  # MLflow tracking store
    auth_database_uri: str | None = None  # MLflow auth app (permissions)
    artifacts_destination: str | None = None  # local folder or s3://bucket/prefix

    # Compute: declared sites (YAML), where compute nodes reach the platform, limits.
    sites_file: Path | None = None
    # Where job folders live (one folder per site inside). Outside data_dir, which jobs
    # must not enter; default: a sibling of data_dir, "<data_dir>-jobs".
    jobs_dir: Path | None = None
    # Folders put first on PATH in every job of sites that do not set their own job_path,
    # e.g. a Python with MLflow that every job account can run (os.pathsep-separated).
    job_path: str | None = None
    # The per-user uids for jobs on ``local`` of users without an OS account (root only).
    job_uid_range: str = Field(default="2100000000-2100999999", pattern=r"^\d+-\d+$")
    job_tracking_uri: str | None = None
    max_upload_bytes: int = Field(default=20 * 1024**3, ge=1024)
    # A project, unzipped: counted while writing, so a zip bomb stops here (deflate packs
    # 10 GiB of zeros into 10 MB); data sets belong on the site, not in the upload.
    max_unpacked_bytes: int = Field(default=4 * 1024**3, ge=1024)
    # Apptainer images (PUT /compute-backend/images/{sha256}): the largest one accepted, and
    # how much each site's image cache may hold before least-recently-used images go.
    max_image_bytes: int = Field(default=50 * 1024**3, ge=1024)
    image_cache_bytes: int = Field(default=200 * 1024**3, ge=1024)
    # A job token lives for the job's Runtime plus this allowance for queueing.
    job_queue_allowance_hours: int = Field(default=7 * 24, ge=1)
    poll_seconds: float = Field(default=2.0, gt=0)
    # Crash leftovers (scratch files, half-made runs) are swept at start-up and this often;
    # folders of jobs that ended more than job_retention_days ago go too (0: kept).
    sweep_seconds: float = Field(default=3600.0, gt=0)
    job_retention_days: float = Field(default=30.0, ge=0)
    # The most of a job's output its log keeps: the first quarter and the last bytes, with a
    # line saying how much was left out between (MANTIK_JOB_LOG_MAX_BYTES).
    job_log_max_bytes: int = Field(default=64 * 1024**2, ge=64 * 1024)
    # Offline tracking: how often a job's node publishes a snapshot of its local store.
    offline_snapshot_seconds: float = Field(default=10.0, ge=0.5)

    access_token_minutes: int = Field(default=60, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    session_hours: int = Field(default=8, ge=1, le=7 * 24)
    # Sign-in throttle per (account, client address): this many failures are free, each
    # further one blocks that pair for twice as long as the last, up to lockout_minutes.
    max_failed_logins: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    auth_cache_seconds: float = Field(default=30.0, ge=0)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses_or_networks(cls, value: str | None) -> str | None:
        # uvicorn would take a mistyped entry as a literal that never matches: refuse it.
        for entry in (p.strip() for p in (value or "").split(",")):
            if entry and entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"MANTIK_FORWARDED_ALLOW_IPS: {entry!r} is not an IP address or "
                        "network; list the proxies' addresses, e.g. 10.0.0.5,10.0.1.0/24"
                    ) from None
        return value

    @model_validator(mode="after")
    def _production_needs_tls_or_proxy_url(self) -> ServerSettings:
        if self.environment == "production" and not (
            self.ssl_certfile or (self.public_url or "").startswith("https://")
        ):
            raise ValueError(
                "production needs TLS: pass --ssl-certfile/--ssl-keyfile, or set "
                "MANTIK_PUBLIC_URL=https://… when a TLS proxy sits in front"
            )
        if bool(self.ssl_keyfile) != bool(self.ssl_certfile):
            raise ValueError("--ssl-keyfile and --ssl-certfile must be given together")
        return self

    @property
    def trusted_proxies(self) -> list[str]:
        return [p.strip() for p in (self.forwarded_allow_ips or "").split(",") if p.strip()]

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    @property
    def cors_allowed_origins_list(self) -> list[str]:
        listed = [o.strip().rstrip("/") for o in (self.cors_allowed_origins or "").split(",")]
        if self.public_url:
            parts = urlsplit(self.public_url)
            listed.append(f"{parts.scheme}://{parts.netloc}")
        return [o for o in listed if o]

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _sqlite(self, name: str) -> str:
        return f"sqlite:///{(self.data_dir / name).resolve()}"

    @property
    def resolved_database_uri(self) -> str:
        return self.database_uri or self._sqlite("mantik.db")

    @property
    def resolved_backend_store_uri(self) -> str:
        return self.backend_store_uri or self._sqlite("mlflow.db")

    @property
    def resolved_auth_database_uri(self) -> str:
        return self.auth_database_uri or self._sqlite("auth.db")

    @property
    def resolved_artifacts_destination(self) -> str:
        return self.artifacts_destination or str((self.data_dir / "artifacts").resolve())

    @property
    def resolved_jobs_dir(self) -> Path:
        return self.jobs_dir or self.data_dir.with_name(f"{self.data_dir.name}-jobs")

    @property
    def job_path_list(self) -> list[Path]:
        return [Path(p) for p in (self.job_path or "").split(os.pathsep) if p]

    @property
    def job_uids(self) -> range:
        first, last = (int(n) for n in self.job_uid_range.split("-"))
        return range(first, last + 1)

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def identity_stamp(self) -> Path:
        """Bumped when accounts change (sign-out everywhere, disable): see change_stamp."""
        return self.data_dir / "identity.stamp"

    @property
    def auth_cache_stamp(self) -> Path:
        """Bumped when MLflow users or permissions change."""
        return self.data_dir / "auth-cache.stamp"
