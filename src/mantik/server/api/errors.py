"""Error responses: a clear JSON message for every user mistake, never a traceback.

The HTTP status of each :class:`~mantik.server.errors.ServerError` is chosen here, and only
here; the services and drivers that raise them know nothing of HTTP.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mantik.server.api.deps import SignInFirst
from mantik.server.compute import errors as compute
from mantik.server.errors import ServerError
from mantik.server.identity import errors as identity

# The most specific class listed decides (a subclass inherits its parent's status).
STATUS: dict[type[ServerError], int] = {
    ServerError: 400,
    identity.IdentityError: 400,
    identity.BadRequest: 400,
    identity.InvalidCredentials: 401,
    identity.InvalidRefreshToken: 401,
    identity.NewPasswordRequired: 403,
    identity.NotFound: 404,
    identity.Conflict: 409,
    identity.SignInThrottled: 429,
    compute.ComputeError: 400,
    compute.InvalidSubmission: 400,
    compute.InvalidLogRequest: 400,
    compute.SubmissionInProgress: 409,
    compute.IdempotencyKeyReused: 422,
    compute.Forbidden: 403,
    compute.NotAJobAccount: 403,
    compute.ExperimentNotFound: 404,
    compute.RunNotFound: 404,
    compute.LogRemoved: 410,
    compute.ImageTooLarge: 413,
    compute.CacheFull: 507,
    compute.SiteError: 502,
    compute.SiteRefused: 400,
    compute.CredentialsRefused: 401,
    compute.SiteFailed: 502,
    compute.SiteUnavailable: 503,
}


log = logging.getLogger("mantik.api")

_MAX_MESSAGE = 2000  # characters of a message; quoted user values are cut shorter still
_DISK_FULL = (
    "The platform has no disk space left for this request, and kept nothing of it. "
    "Try again later, or tell the platform admin."
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def public_message(request: Request, message: str) -> str:
    """``message`` as users may read it: the platform's own folders named, not shown, and
    the whole cut short (a last line of defence; messages quote users' values briefly)."""
    settings = getattr(request.app.state, "settings", None)
    if settings is not None:
        for folder in (settings.resolved_jobs_dir, settings.data_dir):
            for form in {str(Path(folder).resolve()), str(folder)}:
                message = message.replace(form, "<platform folder>")
    return message if len(message) <= _MAX_MESSAGE else f"{message[: _MAX_MESSAGE - 3]}..."


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal error; the platform's log has the details."}, 500)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))


def status_of(exc: ServerError) -> int:
    """The HTTP status the user gets for ``exc``."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServerError)
    async def _server(request: Request, exc: ServerError) -> JSONResponse:
        body: dict[str, Any] = {"detail": public_message(request, exc.message)}
        headers: dict[str, str] = {}
        if isinstance(exc, identity.IdentityError):
            if exc.code:
                body["code"] = exc.code
            headers = exc.headers
        return JSONResponse(body, status_code=status_of(exc), headers=headers)

    @app.exception_handler(SignInFirst)
    async def _sign_in(_: Request, exc: SignInFirst) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.back_to)}", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe(e) for e in exc.errors()]
        message = public_message(request, "Invalid request: " + "; ".join(problems))
        return JSONResponse({"detail": message}, status_code=422)

    install_safety_nets(app)


def install_safety_nets(app: FastAPI) -> None:
    """Answers for what should have been refused earlier, so that it is never a 500."""

    @app.exception_handler(RecursionError)
    async def _recursion(_: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse({"detail": "The request is nested too deeply to read."}, 400)

    @app.exception_handler(UnicodeError)
    async def _unicode(_: Request, exc: UnicodeError) -> JSONResponse:
        return JSONResponse({"detail": "The request holds text that is not valid UTF-8."}, 400)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        log.warning("%s %s: the database refused a value: %s", request.method, request.url, exc)
        detail = "A value in the request cannot be stored: text with a NUL character, or a "
        return JSONResponse({"detail": detail + "number out of range."}, 400)

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        if "disk is full" in str(exc.orig) or "No space left" in str(exc.orig):
            log.error("the database's disk is full: %s", exc.orig)
            return JSONResponse({"detail": _DISK_FULL}, 507)
        return _internal(request, exc)

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        if "NUL (0x00)" in str(exc):  # psycopg2 refuses to send such a string at all
            detail = "A value in the request holds a NUL character, which cannot be stored."
            return JSONResponse({"detail": detail}, 400)
        return _internal(request, exc)

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in _NO_SPACE:
            log.error("%s %s: no disk space left: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": _DISK_FULL}, 507)
        return _internal(request, exc)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"Request body too large (limit {self.max_bytes} bytes)."},
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTPExceptions from body parsing as they are."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body too large (limit {limit} bytes).")


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}
