"""mantik in the MLflow UI: its page (``GET /``) gets a small corner with a link to the jobs
page and a Sign out form posting to ``/logout`` (same-origin checked there, as every page
form). Nothing else is touched."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUTTON = (
    b"padding:6px 12px;border:1px solid #0b6bcb;border-radius:4px;background:#fff;"
    b"color:#0b6bcb;font:14px system-ui,sans-serif;cursor:pointer;text-decoration:none"
)
SIGN_OUT = (
    b"<div id=mantik-corner style='position:fixed;right:16px;bottom:16px;z-index:2147483647;"
    b"display:flex;gap:8px;align-items:center'><a href=/jobs style='" + _BUTTON + b"'>Jobs</a>"
    b"<form method=post action=/logout id=mantik-sign-out style='margin:0'>"
    b"<button type=submit style='" + _BUTTON + b"'>Sign out</button></form></div>"
)


def is_ui_page(scope: Scope) -> bool:
    return scope["type"] == "http" and scope.get("method") == "GET" and scope["path"] == "/"


async def with_sign_out(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve ``scope`` through ``app``, adding :data:`SIGN_OUT` to a plain HTML page."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def send_edited(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = MutableHeaders(raw=message["headers"])
            plain_html = (
                message["status"] == 200
                and headers.get("content-type", "").startswith("text/html")
                and "content-encoding" not in headers
            )
            if not plain_html:
                await send(message)
                return
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        page = b"".join(chunks)
        at = page.rfind(b"</body>")
        page = page[:at] + SIGN_OUT + page[at:] if at >= 0 else page + SIGN_OUT
        headers = MutableHeaders(raw=list(start["headers"]))
        headers["content-length"] = str(len(page))
        await send({**start, "headers": headers.raw})
        await send({"type": "http.response.body", "body": page})

    await app(scope, receive, send_edited)
