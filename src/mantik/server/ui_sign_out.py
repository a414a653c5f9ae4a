"""A visible Sign out in the MLflow UI: its page (``GET /``) gets a small form that posts
to ``/logout`` (same-origin checked there, as every page form). Nothing else is touched."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SIGN_OUT = (
    b"<form method=post action=/logout id=mantik-sign-out style='position:fixed;right:16px;"
    b"bottom:16px;z-index:2147483647;margin:0'><button type=submit style='padding:6px 12px;"
    b"border:1px solid #0b6bcb;border-radius:4px;background:#fff;color:#0b6bcb;"
    b"font:14px system-ui,sans-serif;cursor:pointer'>Sign out</button></form>"
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
