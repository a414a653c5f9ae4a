"""The small HTML pages a browser needs: sign in, set a new password, sign out."""

from __future__ import annotations

from html import escape
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mantik.server.api import page_shell
from mantik.server.api.deps import client_address
from mantik.server.api.errors import status_of
from mantik.server.identity import errors
from mantik.server.identity.service import IdentityService
from mantik.server.identity.tokens import InvalidToken
from mantik.server.tracking import authorization
from mantik.server.tracking.authorization import SESSION_COOKIE


def same_origin(request: Request) -> None:
    """Refuse form posts from other sites (login CSRF); browsers send Origin on POST."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "Cross-site form posts are not accepted.")


router = APIRouter(include_in_schema=False, dependencies=[Depends(same_origin)])

# The fragment of a deep link (the MLflow UI's route: #/experiments/2/runs/…) never reaches
# the server; the page carries it into the form, so that sign-in lands where the link led.
_CARRY_FRAGMENT = (
    "(function(){var next=document.querySelector('input[name=next]');"
    "if(next&&location.hash&&next.value.indexOf('#')<0){next.value+=location.hash;}})();"
)


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """A sign-in page: every one carries a deep link's fragment into its form."""
    return page_shell.page(
        title, f"<h1>{escape(title)}</h1>{body}", status_code, script=_CARRY_FRAGMENT
    )


def safe_next(target: str | None) -> str:
    """Only same-site paths: ``//evil.example`` or ``https://…`` would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _field(label: str, name: str, kind: str = "text", value: str = "", auto: str = "") -> str:
    return (
        f"<label for={name}>{label}</label><input id={name} name={name} type={kind} "
        f"value='{escape(value, quote=True)}' autocomplete='{auto}' required>"
    )


def _login_form(next_url: str, username: str = "", error: str = "") -> str:
    return (
        (f"<p class=error role=alert>{escape(error)}</p>" if error else "")
        + "<form method=post action=/login>"
        + f"<input type=hidden name=next value='{escape(next_url, quote=True)}'>"
        + _field("Username", "username", value=username, auto="username")
        + _field("Password", "password", "password", auto="current-password")
        + "<button type=submit>Sign in</button></form>"
    )


def _identity(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity
    return service


@router.get("/login")
def login_page(next: str | None = None) -> HTMLResponse:
    return _page("Sign in to mantik", _login_form(safe_next(next)))


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    target = safe_next(next)
    try:
        token, _ = _identity(request).session_token(username, password, client_address(request))
    except errors.NewPasswordRequired:
        query = f"username={quote(username)}&next={quote(target)}"
        return RedirectResponse(f"/new-password?{query}", status_code=303)
    except errors.IdentityError as exc:
        return _page(
            "Sign in to mantik", _login_form(target, username, exc.message), status_of(exc)
        )
    response = RedirectResponse(target, status_code=303)
    settings = request.app.state.settings
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https://"),
        path="/",
    )
    return response


def _new_password_form(username: str, next_url: str, error: str = "") -> str:
    return (
        "<p class=hint>Your account has a temporary password. Choose your own: at least 8 "
        "characters with a number, a special character, a lowercase and an uppercase "
        "letter.</p>"
        + (f"<p class=error role=alert>{escape(error)}</p>" if error else "")
        + "<form method=post action=/new-password>"
        + f"<input type=hidden name=next value='{escape(next_url, quote=True)}'>"
        + _field("Username", "username", value=username, auto="username")
        + _field("Current (temporary) password", "password", "password", auto="current-password")
        + _field("New password", "new_password", "password", auto="new-password")
        + _field("Repeat new password", "new_password2", "password", auto="new-password")
        + "<button type=submit>Set password</button></form>"
    )


@router.get("/new-password")
def new_password_page(username: str = "", next: str | None = None) -> HTMLResponse:
    return _page("Set a new password", _new_password_form(username[:64], safe_next(next)))


@router.post("/new-password")
def new_password(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    new_password2: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    target = safe_next(next)
    if new_password != new_password2:
        form = _new_password_form(username, target, "The two new passwords differ.")
        return _page("Set a new password", form, 400)
    try:
        _identity(request).change_password(
            username, password, new_password, client_address(request)
        )
    except errors.IdentityError as exc:
        form = _new_password_form(username, target, exc.message)
        return _page("Set a new password", form, status_of(exc))
    # Sign in with the new password straight away.
    return login(request, username, new_password, target)


@router.get("/logout")
def logout_page(request: Request) -> Response:
    # Signing out changes state, so it is a POST; a GET (e.g. from a link) only asks.
    if SESSION_COOKIE not in request.cookies:
        return RedirectResponse("/login", status_code=303)
    form = "<form method=post action=/logout><button type=submit>Sign out</button></form>"
    return _page("Sign out of mantik", form)


@router.post("/logout")
def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            principal = request.app.state.tokens.verify(token)
        except InvalidToken:
            pass  # nothing to end
        else:
            _identity(request).end_token(principal.token_id, principal.expires_at)
            authorization.forget(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
