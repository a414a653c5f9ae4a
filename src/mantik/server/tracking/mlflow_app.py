"""MLflow's tracking server with its auth app, configured for mantik.

MLflow is configured through (partly private) environment variables, as ``mlflow server``
itself does; this module is the only place that knows them.
"""

from __future__ import annotations

import configparser
import io
import os
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from mantik import _mlflow_internals as mlflow_internals
from mantik.server.db import Database
from mantik.server.identity.keys import write_secret_file
from mantik.server.settings import ServerSettings
from mantik.server.shared_secrets import shared_secret
from mantik.server.tracking import prompt_grants, trace_writes

AUTH_FUNCTION = "mantik.server.tracking.authorization:authorize"
# Our users cannot sign in as this account: it exists only because MLflow's config needs it.
BOOTSTRAP_ADMIN = "_mantik_bootstrap"


@contextmanager
def _quiet_imports() -> Iterator[None]:
    """MLflow's server modules warn on import about things we cannot change."""
    from starlette.exceptions import StarletteDeprecationWarning  # a UserWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # mlflow.server.fastapi_app imports starlette.middleware.wsgi (and replaces it).
        warnings.filterwarnings(
            "ignore", "starlette.middleware.wsgi is deprecated", StarletteDeprecationWarning
        )
        yield


def auth_config_path(settings: ServerSettings) -> str:
    return str(settings.keys_dir / "mlflow-auth.ini")


def write_auth_config(settings: ServerSettings) -> None:
    config = configparser.ConfigParser()
    config["mlflow"] = {
        # Nobody sees an experiment unless they created it or it was shared with them.
        "default_permission": "NO_PERMISSIONS",
        "database_uri": settings.resolved_auth_database_uri,
        "admin_username": BOOTSTRAP_ADMIN,
        "authorization_function": AUTH_FUNCTION,
        "auth_cache_ttl_seconds": "0",
    }
    buffer = io.StringIO()
    config.write(buffer)
    # 0600: a PostgreSQL URI may carry the database password.
    write_secret_file(settings.keys_dir / "mlflow-auth.ini", buffer.getvalue().encode())


# MLflow's default Host patterns (fnmatch): loopback and private (RFC 1918/4193) addresses,
# restated because importing MLflow's helper would build its server app too early.
_LOOPBACK_AND_PRIVATE = (
    "localhost",
    "127.0.0.1",
    "[::1]",
    "localhost:*",
    "127.0.0.1:*",
    "[[]::1]:*",
    "10.*",
    "192.168.*",
    *(f"172.{n}.*" for n in range(16, 32)),
    "[[]fc*",
    "[[]fd*",
)


def allowed_hosts(settings: ServerSettings) -> str | None:
    """MLflow's Host-header allow-list, extended by the names this platform is reached by."""
    extra = [h.strip() for h in (settings.allowed_hosts or "").split(",") if h.strip()]
    if settings.public_url:
        extra.append(urlsplit(settings.public_url).hostname or "")
    if settings.host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):  # noqa: S104
        extra.append(settings.host)
    extra = [h for h in extra if h]
    if not extra:
        return None  # MLflow's defaults: loopback and private addresses
    return ",".join([*_LOOPBACK_AND_PRIVATE, *extra, *(f"{h}:*" for h in extra)])


def environment(settings: ServerSettings) -> dict[str, str]:
    store = settings.resolved_backend_store_uri
    hosts = allowed_hosts(settings)
    return {
        **({"MLFLOW_SERVER_ALLOWED_HOSTS": hosts} if hosts else {}),
        "_MLFLOW_SERVER_FILE_STORE": store,
        "_MLFLOW_SERVER_REGISTRY_STORE": store,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": settings.resolved_artifacts_destination,
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SGI_NAME": "uvicorn",
        "_MLFLOW_IN_JOB_EXECUTOR": "false",
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED": "true",
        # Job execution spawns a process pool per worker (≈2 GB idle): not needed here.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": auth_config_path(settings),
        # A route MLflow's auth app has no decision for is refused, not open.
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _flask_secret(settings),
        **_sqlite_pool(settings),
    }


def _flask_secret(settings: ServerSettings) -> str:
    db = Database(settings.resolved_database_uri)
    try:
        return shared_secret(db, "flask-secret")
    finally:
        db.engine.dispose()


def _sqlite_pool(settings: ServerSettings) -> dict[str, str]:
    """On SQLite, a connection for every request thread: a request may hold two at once
    (nested sessions), and with MLflow's 5 + 10 a burst of clients waited for each other
    until the pool timed out. (SQLite connections are cheap; its lock orders the writers.)"""
    uris = (settings.resolved_backend_store_uri, settings.resolved_auth_database_uri)
    if not all(uri.startswith("sqlite") for uri in uris):
        return {}
    return {
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": os.environ.get(
            "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "-1"
        )
    }


def prepare_stores(settings: ServerSettings) -> None:
    """Create or migrate MLflow's tracking and auth databases once, before workers start."""
    write_auth_config(settings)
    os.environ.update(environment(settings))
    with _quiet_imports():
        mlflow_internals.initialize_backend_stores(
            settings.resolved_backend_store_uri, "mlflow-artifacts:/"
        )
        store = mlflow_internals.open_permission_store(settings.resolved_auth_database_uri)
    store.engine.dispose()


def auth_store(settings: ServerSettings) -> Any:
    """MLflow's permission store, for the admin CLI."""
    with _quiet_imports():
        return mlflow_internals.open_permission_store(settings.resolved_auth_database_uri)


def create_mlflow_app(settings: ServerSettings) -> Any:
    """MLflow's FastAPI app (REST, UI, artifact proxy) behind its auth app."""
    # MLflow's auth app reads its config once, when first imported: imported before our
    # environment, it would run with its defaults (READ for everyone, ./basic_auth.db).
    premature = mlflow_internals.auth_imported()
    os.environ.update(environment(settings))
    with _quiet_imports():
        wanted = (settings.resolved_auth_database_uri, "NO_PERMISSIONS")
        if premature and mlflow_internals.auth_settings() != wanted:
            raise RuntimeError(
                "MLflow's auth app was imported before mantik configured it; "
                "refusing to serve with MLflow's default permissions"
            )
        app = mlflow_internals.create_auth_app()
    prompt_grants.install()
    trace_writes.install()
    return app


def random_password() -> str:
    """MLflow's auth store wants a password per user; ours are never used there."""
    return secrets.token_urlsafe(32)


def sync_user(settings: ServerSettings, username: str, *, is_admin: bool) -> None:
    """Make ``username`` known to MLflow's permission database (so it can be granted
    access before it first signs in), with the right admin flag; for the admin CLI.

    Written directly, unless MLflow has yet to make the database: opening MLflow's store
    imports its whole server (seconds).
    """
    uri = settings.resolved_auth_database_uri
    if mlflow_internals.write_auth_user(uri, username, random_password(), is_admin=is_admin):
        return
    store = auth_store(settings)
    try:
        ensure_user(store, username, is_admin=is_admin)
    finally:
        store.engine.dispose()


def ensure_user(store: Any, username: str, *, is_admin: bool) -> None:
    """Make ``username`` known to MLflow's permission store, with the right admin flag."""
    if not store.has_user(username):
        try:
            store.create_user(username, random_password(), is_admin=is_admin)
        except Exception:  # another worker created it first
            if not store.has_user(username):
                raise
            store.update_user(username, is_admin=is_admin)
    elif store.get_user(username).is_admin != is_admin:
        store.update_user(username, is_admin=is_admin)
