"""The platform as one ASGI app: mantik's routes, and MLflow (UI, REST, artifacts) for the rest.

MLflow's app must see the original paths (it breaks when mounted under a prefix), so a tiny
dispatcher routes by path instead of mounting.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from mantik import _mlflow_internals as mlflow_internals
from mantik._version import __version__
from mantik.server import change_stamp, logs, ui_sign_out
from mantik.server.api import compute, errors, identity, images, jobs_page, pages
from mantik.server.compute.poller import start_background as start_poller
from mantik.server.compute.service import ComputeService
from mantik.server.platform import Platform, build
from mantik.server.settings import ServerSettings
from mantik.server.supervision import end_with_supervisor
from mantik.server.tracking import auth_cache, authorization, mlflow_app, route_rules

# Identity API bodies are small; uploads (compute) have their own limits.
IDENTITY_BODY_LIMIT = 64 * 1024
SUBMIT_PREFIX = "/compute-backend/submit/"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def create_mantik_api(platform: Platform, platform_compute: ComputeService) -> FastAPI:
    api = FastAPI(
        title="mantik",
        version=__version__,
        docs_url="/compute-backend/docs",
        openapi_url="/compute-backend/openapi.json",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    api.state.settings = platform.settings
    api.state.identity = platform.identity
    api.state.keyring = platform.keyring
    api.state.tokens = platform.tokens
    api.state.compute = platform_compute
    errors.install_handlers(api)
    api.include_router(identity.router)
    api.include_router(pages.router)
    api.include_router(jobs_page.router)
    api.include_router(compute.router)
    api.include_router(images.router)
    return api


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error_code": "PERMISSION_DENIED", "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _cross_site(scope: Scope, allowed: frozenset[str]) -> bool:
    """A request a page of another site made: its Origin is neither ours nor listed, or,
    without Origin, the browser says so (``Sec-Fetch-Site``)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return _header(scope, b"sec-fetch-site") == "cross-site"
    return origin not in allowed and urlsplit(origin).netloc != _header(scope, b"host")


class PlatformApp:
    """Routes by path; refuses what our gate has no rule for; keeps CORS to listed origins.

    A page of another site may not change anything, on MLflow's routes or ours (the login
    pages, the compute API): MLflow allows credentialed CORS from any
    ``http://localhost:*`` origin, and browsers send the session cookie along. Such a
    request may only read, with its Origin dropped (no CORS headers), unless the admin
    lists the origin (``cors_allowed_origins``).
    """

    def __init__(
        self, mantik: ASGIApp, mlflow: ASGIApp, cors_origins: frozenset[str] = frozenset()
    ) -> None:
        self.mantik = mantik
        self.mlflow = mlflow
        self.cors_origins = cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.mlflow(scope, receive, send)
            return
        path = route_rules.collapse_slashes(scope["path"])
        if path != scope["path"]:
            raw = route_rules.collapse_slashes(scope.get("raw_path", b"").decode("latin-1"))
            scope = {**scope, "path": path, "raw_path": raw.encode("latin-1")}
        if _cross_site(scope, self.cors_origins):
            # The session cookie rides along on such requests (CSRF): none may change state.
            if scope.get("method") not in _SAFE_METHODS:
                await _refuse(send, 403, "Cross-origin request refused.")
                return
            headers = [(n, v) for n, v in scope["headers"] if n != b"origin"]
            scope = {**scope, "headers": headers}
        if route_rules.is_mantik(path):
            await self.mantik(scope, receive, send)
            return
        if route_rules.refused(path):
            await _refuse(send, 403, route_rules.refusal_message(path))
            return
        if ui_sign_out.is_ui_page(scope):
            await ui_sign_out.with_sign_out(self.mlflow, scope, receive, send)
            return
        await self.mlflow(scope, receive, send)


def _gate(platform: Platform) -> authorization.AuthGate:
    def ensure_mlflow_user(username: str) -> None:
        mlflow_app.ensure_user(
            mlflow_internals.permission_store(),
            username,
            is_admin=platform.identity.is_admin(username),
        )

    return authorization.AuthGate(
        platform.tokens,
        platform.identity.account_state,
        platform.identity.changes,
        platform.identity.is_revoked,
        ensure_mlflow_user,
        platform.settings.auth_cache_seconds,
    )


def create_app(settings: ServerSettings | None = None) -> Any:
    """The ASGI app of one worker (uvicorn ``--factory`` target)."""
    end_with_supervisor()
    logs.install()
    settings = settings or ServerSettings()
    platform = build(settings)
    mlflow = mlflow_app.create_mlflow_app(settings)
    authorization.install(_gate(platform))
    auth_cache.install(
        settings.auth_cache_seconds,
        change_stamp.for_engine(platform.db.engine, "auth-cache", settings.auth_cache_stamp),
    )
    service = ComputeService(settings, platform.db, platform.tokens, platform.identity)
    start_poller(service, service.locks, settings.poll_seconds, settings.sweep_seconds)
    api = create_mantik_api(platform, service)
    # Images are streamed to disk under their own limit (max_image_bytes, see api/images.py).
    uploads = errors.BodyLimit(api, settings.max_upload_bytes, exempt=(images.PREFIX,))
    mantik = errors.BodyLimit(uploads, IDENTITY_BODY_LIMIT, exempt=(SUBMIT_PREFIX, images.PREFIX))
    return PlatformApp(mantik, mlflow, frozenset(settings.cors_allowed_origins_list))
